"""Lineups as TOML files a person writes without touching code (`--lineup-file`).

    name = "mixed"
    description = "The 7B here, the 70B on a vLLM server"

    [[contenders]]
    name = "Llama-2-7B-chat"
    weights = "llama-2-7b-chat"        # named weights, a Hub id (org/name@revision), a folder or a .gguf
    prompt_format = "llama2"
    preset = "llama2-chat"             # precise, balanced, creative, llama2-chat
    params = { max_new_tokens = 256 }  # single fields over the preset

    [[contenders]]
    name = "Llama-2-70B-chat"
    prompt_format = "llama2"
    preset = "llama2-chat"
    [contenders.endpoint]              # instead of weights: an OpenAI-compatible server
    base_url = "http://gpu-box:8000/v1"
    model = "meta-llama/Llama-2-70b-chat-hf"
    api_key_env = "VLLM_API_KEY"       # the variable's name; the key itself never goes in a file
    max_concurrent = 16                # requests this contender has open at once
    extra_params = ["top_k", "repetition_penalty"]  # preset fields vLLM takes beyond OpenAI's
    prompt = "local"                   # this app renders the Llama 2 prompt; /v1/completions
    context_length = 4096              # else what /v1/models says (vLLM's max_model_len)
    tokenizer = "llama-2-70b-chat"     # counts its tokens: long conversations are trimmed to fit

Every mistake is reported as one message that names the file, the contender and the field.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from models.specs import ContenderSpec, EndpointSpec, GenerationParams, LineupSpec, WeightsSpec

TOP_KEYS = {"name", "description", "contenders"}
CONTENDER_KEYS = {"name", "weights", "context_length", "endpoint", "prompt_format", "preset", "params",
                  "system_prompt"}
ENDPOINT_KEYS = {f.name for f in fields(EndpointSpec)}
PARAM_KEYS = {f.name for f in fields(GenerationParams)}
PROMPT_FORMATS = ("llama2", "chat_template")
DEFAULT_PRESET = "balanced"
MAX_CONTENDERS = 8


class LineupFileError(ValueError):
    """A lineup file that cannot be used; the message names the file, the contender and the field."""


def load_lineup_file(path: str | Path, *, weights: Mapping[str, WeightsSpec], presets: Mapping[str, GenerationParams],
                     resolve: Callable[[str], WeightsSpec]) -> LineupSpec:
    """Read and check one lineup file.

    `weights` are the named weights a file may use by name, `presets` the generation presets, and
    `resolve` turns any other weights reference (Hub id, folder, .gguf) into a WeightsSpec.
    """
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LineupFileError(f"{where}: no such lineup file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LineupFileError(f"{where}: cannot be read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise LineupFileError(f"{where}: not valid TOML: {error}") from None
    except RecursionError:  # tomllib recurses once per level of [ ] or { } (issue 15: 100k deep)
        raise LineupFileError(f"{where}: lists or tables nested too deeply to read ([[[…]]] or {{a = {{a = …}}}}); "
                              "a lineup file needs only a few levels (contenders, endpoint, params): remove the "
                              "extra nesting") from None
    _unknown(where, "", data, TOP_KEYS)
    name = _string(where, "", "name", data.get("name", path.stem), required=True).strip()
    description = _string(where, "", "description", data.get("description", ""))
    entries = data.get("contenders")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise LineupFileError(f"{where}: field 'contenders' must be a list of [[contenders]] tables, "
                              f"got {type(entries).__name__ if entries is not None else 'nothing'}")
    reader = _ContenderReader(where, path.parent, weights, presets, resolve)
    contenders = tuple(reader(index, entry) for index, entry in enumerate(entries, start=1))
    _check_count(where, contenders)
    try:
        return LineupSpec(name=name, contenders=contenders, description=description)
    except ValueError as error:
        raise LineupFileError(f"{where}: field 'contenders': {error}") from None


def _check_count(where: str, contenders: tuple[ContenderSpec, ...]) -> None:
    """Two to eight contenders with distinct names; the message names the contender at fault."""
    seen: set[str] = set()
    for index, contender in enumerate(contenders, start=1):
        if contender.name in seen:
            raise LineupFileError(f"{where}: contender #{index} {contender.name!r}: field 'name' repeats an earlier "
                                  "contender's name; every contender needs its own")
        seen.add(contender.name)
        if index > MAX_CONTENDERS:
            raise LineupFileError(f"{where}: contender #{index} {contender.name!r}: field 'contenders' holds at most "
                                  f"{MAX_CONTENDERS} contenders, this file has {len(contenders)}")
    if len(contenders) < 2:
        only = f"only contender {contenders[0].name!r}" if contenders else "no contenders"
        raise LineupFileError(f"{where}: field 'contenders' has {only}; a lineup compares 2 to "
                              f"{MAX_CONTENDERS}: add another [[contenders]] table")


class _ContenderReader:
    def __init__(self, where: str, folder: Path, weights: Mapping[str, WeightsSpec],
                 presets: Mapping[str, GenerationParams], resolve: Callable[[str], WeightsSpec]) -> None:
        self.where, self.folder, self.weights, self.presets, self.resolve = where, folder, weights, presets, resolve

    def __call__(self, index: int, entry: dict[str, Any]) -> ContenderSpec:
        label = f"contender #{index}"
        if isinstance(entry.get("name"), str) and entry["name"].strip():
            label = f"contender {entry['name'].strip()!r}"
        where = f"{self.where}: {label}"
        _unknown(where, "", entry, CONTENDER_KEYS)
        name = _string(where, "", "name", entry.get("name"), required=True).strip()
        prompt_format = entry.get("prompt_format", "chat_template")
        if prompt_format not in PROMPT_FORMATS:
            raise LineupFileError(f"{where}: field 'prompt_format' must be one of {', '.join(PROMPT_FORMATS)}, "
                                  f"got {prompt_format!r}")
        system = entry.get("system_prompt")
        if system is not None:
            system = _string(where, "", "system_prompt", system).strip() or None
        has_weights, has_endpoint = "weights" in entry, "endpoint" in entry
        if has_weights == has_endpoint:
            raise LineupFileError(f"{where}: field 'weights' or 'endpoint': give exactly one (local weights, or "
                                  f"an [contenders.endpoint] table for a server), not "
                                  f"{'both' if has_weights else 'neither'}")
        if has_endpoint and "context_length" in entry:
            raise LineupFileError(f"{where}: field 'context_length' applies to local weights; for a server, "
                                  "set endpoint.context_length to the context it was started with")
        weights = self._weights(where, entry) if has_weights else None
        endpoint = self._endpoint(where, entry["endpoint"]) if has_endpoint else None
        params = self._params(where, entry)
        try:
            return ContenderSpec(name=name, weights=weights, endpoint=endpoint, prompt_format=prompt_format,
                                 params=params, system_prompt=system)
        except ValueError as error:
            field = "endpoint.prompt" if endpoint and endpoint.prompt == "local" else "prompt_format"
            raise LineupFileError(f"{where}: field '{field}': {error}") from None

    def _weights(self, where: str, entry: dict[str, Any]) -> WeightsSpec:
        spec = self._reference(where, "weights", entry["weights"])
        if "context_length" in entry:
            length = entry["context_length"]
            if isinstance(length, bool) or not isinstance(length, int) or length < 16:
                raise LineupFileError(f"{where}: field 'context_length' must be a whole number of tokens, "
                                      f"got {length!r}")
            spec = replace(spec, context_length=length)
        return spec

    def _reference(self, where: str, field: str, value: Any) -> WeightsSpec:
        """Named weights, a Hub id (org/name@revision), a folder or a .gguf, relative to the file."""
        reference = _string(where, "", field, value, required=True).strip()
        if reference in self.weights:
            return self.weights[reference]
        try:
            return self.resolve(self._relative_to_file(reference))
        except (ValueError, RuntimeError, OSError) as error:  # RuntimeError: ~nobody/x has no home folder
            raise LineupFileError(f"{where}: field '{field}': {error}; named weights: "
                                  f"{', '.join(sorted(self.weights))}") from None

    def _relative_to_file(self, reference: str) -> str:
        """A relative path resolved against the lineup file's folder, not where the app starts."""
        path = Path(reference)
        if path.is_absolute() or reference.startswith("~"):
            return reference
        local = self.folder / path
        if reference.startswith(".") or reference.lower().endswith(".gguf") or local.exists():
            return str(local.resolve())
        return reference  # a Hub id such as org/name@revision

    def _endpoint(self, where: str, table: Any) -> EndpointSpec:
        if not isinstance(table, dict):
            raise LineupFileError(f"{where}: field 'endpoint' must be a table with base_url and model")
        _unknown(where, "endpoint.", table, ENDPOINT_KEYS)
        for key in ("base_url", "model"):
            _string(where, "endpoint.", key, table.get(key), required=True)
        table = dict(table)
        if "tokenizer" in table:
            table["tokenizer"] = self._reference(where, "endpoint.tokenizer", table["tokenizer"])
        if isinstance(table.get("extra_params"), list):
            table["extra_params"] = tuple(table["extra_params"])
        if isinstance(table.get("extra_body"), dict):
            try:
                table["extra_body"] = json.dumps(table["extra_body"], sort_keys=True)
            except (TypeError, ValueError) as error:  # TOML dates and times have no JSON form
                raise LineupFileError(f"{where}: field 'endpoint.extra_body' must hold only JSON values "
                                      f"(text, numbers, booleans, lists, tables): {error}") from None
        spec = object.__new__(EndpointSpec)  # checked field by field below, to name the bad one
        defaults = {f.name: f.default for f in fields(EndpointSpec)}
        for key, value in {**defaults, **table}.items():
            object.__setattr__(spec, key, value)
        problems = spec.problems()
        if problems:
            field, message = problems[0]
            raise LineupFileError(f"{where}: field 'endpoint.{field}': {message}")
        return EndpointSpec(**table)

    def _params(self, where: str, entry: dict[str, Any]) -> GenerationParams:
        preset = entry.get("preset", DEFAULT_PRESET)
        if not isinstance(preset, str) or preset not in self.presets:
            raise LineupFileError(f"{where}: field 'preset' must be one of {', '.join(self.presets)}, got {preset!r}")
        params, overrides = self.presets[preset], entry.get("params", {})
        if not isinstance(overrides, dict):
            raise LineupFileError(f"{where}: field 'params' must be a table such as {{ temperature = 0.2 }}")
        _unknown(where, "params.", overrides, PARAM_KEYS)
        for key, value in overrides.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LineupFileError(f"{where}: field 'params.{key}' must be a number, got {value!r}")
            try:
                params = params.with_overrides(**{key: value})
            except (ValueError, TypeError) as error:
                raise LineupFileError(f"{where}: field 'params.{key}': {error}") from None
        return params


def _string(where: str, prefix: str, key: str, value: Any, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise LineupFileError(f"{where}: field '{prefix}{key}' must be {'non-empty ' if required else ''}text, "
                              f"got {value!r}")
    return value


def _unknown(where: str, prefix: str, table: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
        raise LineupFileError(f"{where}: field '{prefix}{unknown[0]}' is not a lineup field; {hint}the fields here "
                              f"are {', '.join(prefix + k for k in sorted(known))}")
