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
import reprlib
import tomllib
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError
from pydantic_core import ErrorDetails

from models.specs import (
    EXTRA_PARAMS,
    MAX_CONTEXT,
    MIN_CONTEXT,
    ContenderSpec,
    EndpointSpec,
    GenerationParams,
    LineupSpec,
    WeightsSpec,
)

MAX_CONTENDERS = 8
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class LineupFileError(ValueError):
    """A lineup file that cannot be used; the message names the file, the contender and the field."""


# The file's tables check names and types (strictly: true is no number, 7 no text); the specs check values.
# A field left out (None) takes the spec's default; a description is what a value of the wrong type must be.
class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Endpoint(_Table):
    base_url: str
    model: str
    api_key_env: str | None = None
    max_concurrent: int | None = Field(None, description="a whole number of at least 1")
    prompt: str | None = None
    connect_timeout_s: float | None = Field(None, description="a number of seconds in (0, 3600]")
    chunk_timeout_s: float | None = Field(None, description="a number of seconds in (0, 3600]")
    extra_params: Annotated[list[str], AfterValidator(tuple)] | None = Field(
        None, description=f"a list of {' and '.join(EXTRA_PARAMS)}"
    )
    # A TOML table sent as JSON text (EndpointSpec.extra_body): no TOML dates.
    extra_body: Annotated[dict[str, JsonValue], AfterValidator(partial(json.dumps, sort_keys=True))] | None = None
    context_length: int | None = Field(
        None, description=f"a whole number of tokens from {MIN_CONTEXT} to {MAX_CONTEXT}"
    )
    tokenizer: Text | None = None


class _Params(_Table):
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None


class _Contender(_Table):
    name: Text
    weights: Text | None = None
    context_length: Annotated[int, Field(ge=MIN_CONTEXT)] | None = Field(
        None, description=f"a whole number of tokens, at least {MIN_CONTEXT}"
    )
    endpoint: _Endpoint | None = Field(None, description="a table with base_url and model")
    prompt_format: Literal["llama2", "chat_template"] = "chat_template"
    preset: str = Field("balanced", description="the name of a preset")
    params: _Params = Field(_Params(), description="a table such as { temperature = 0.2 }")
    system_prompt: str | None = None
    identity_words: list[Text] = Field([], description="a list of words naming the model or its maker")


class _Lineup(_Table):
    name: Text
    description: str = ""
    contenders: list[_Contender] = Field([], description="a list of [[contenders]] tables")


_MUST = {
    "string_type": "text",
    "string_too_short": "non-empty text",
    "int_type": "a whole number",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "invalid-json-value": "a JSON value (text, a number, a boolean, a list or a table)",
}


def load_lineup_file(
    path: str | Path,
    *,
    weights: Mapping[str, WeightsSpec],
    presets: Mapping[str, GenerationParams],
    resolve: Callable[[str], WeightsSpec],
) -> LineupSpec:
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
        raise LineupFileError(
            f"{where}: lists or tables nested too deeply to read ([[[…]]] or {{a = {{a = …}}}}); "
            "a lineup file needs only a few levels (contenders, endpoint, params): remove the "
            "extra nesting"
        ) from None
    try:
        lineup = _Lineup.model_validate({"name": path.stem, **data})
    except ValidationError as error:
        raise _file_error(where, data, error.errors()[0]) from None
    reference = partial(_reference, path.parent, weights, resolve)
    contenders = tuple(
        _contender(f"{where}: contender {entry.name!r}", entry, presets, reference) for entry in lineup.contenders
    )
    names = [contender.name for contender in contenders]
    for index, name in enumerate(names, start=1):
        label = f"{where}: contender #{index} {name!r}"
        if name in names[: index - 1]:
            raise _fail(label, "name", "repeats an earlier contender's name; every contender needs its own")
        if index > MAX_CONTENDERS:
            raise _fail(label, "contenders", f"holds at most {MAX_CONTENDERS} contenders, this file has {len(names)}")
    if len(names) < 2:
        raise _fail(
            where,
            "contenders",
            f"has {f'only contender {names[0]!r}' if names else 'no contenders'}; a "
            f"lineup compares 2 to {MAX_CONTENDERS}: add another [[contenders]] table",
        )
    return LineupSpec(name=lineup.name, contenders=contenders, description=lineup.description)


def _fail(where: str, field: str, problem: str) -> LineupFileError:
    return LineupFileError(f"{where}: field '{field}': {problem}")


def _file_error(where: str, data: dict[str, Any], error: ErrorDetails) -> LineupFileError:
    """Pydantic's first error as: the file, the contender, the field, what is wrong (and what to do)."""
    loc, table, prefix = error["loc"], _Lineup, ""
    if len(loc) > 1 and loc[0] == "contenders":  # ("contenders", 1, "endpoint", "base_url")
        entry, table = data["contenders"][loc[1]], _Contender
        name = entry.get("name") if isinstance(entry, dict) else None
        label = repr(name.strip()) if isinstance(name, str) and name.strip() else f"#{loc[1] + 1}"
        where, loc = f"{where}: contender {label}", loc[2:]
    key, *inner = [part for part in loc if isinstance(part, str)] or ["contenders"]
    if key in ("endpoint", "params") and inner:  # the field the person wrote, not extra_body's own keys
        table, prefix, key = {"endpoint": _Endpoint, "params": _Params}[key], f"{key}.", inner[0]
    kind, got, field = error["type"], reprlib.repr(error.get("input")), table.model_fields.get(key)
    if kind == "extra_forbidden":  # its value is not repeated: `api_key = "sk-…"` is a key
        known = sorted(table.model_fields)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
        problem = f"not a lineup field; {hint}the fields here are {', '.join(prefix + k for k in known)}"
    elif kind == "missing":
        problem = "missing; add it to this table"
    elif kind in _MUST:
        problem = f"must be {field and field.description or _MUST[kind]}, got {got}"
    else:  # pydantic's words: "must be 'llama2' or 'chat_template'", "must be greater than or equal to 16"
        problem = f"{error['msg'].replace('Input should be', 'must be')}, got {got}"
    return _fail(where, prefix + key, problem)


def _contender(
    where: str,
    entry: _Contender,
    presets: Mapping[str, GenerationParams],
    reference: Callable[[str, str, str], WeightsSpec],
) -> ContenderSpec:
    """A checked [[contenders]] table as a ContenderSpec: the preset and the weights looked up."""
    if (entry.weights is None) == (entry.endpoint is None):
        raise _fail(
            where,
            "weights' or 'endpoint",
            "give exactly one (local weights, or an [contenders.endpoint] "
            f"table for a server), not {'both' if entry.weights else 'neither'}",
        )
    if entry.endpoint and entry.context_length is not None:
        raise _fail(
            where,
            "context_length",
            "applies to local weights; for a server, set endpoint.context_length to the context it was started with",
        )
    if entry.preset not in presets:
        raise _fail(where, "preset", f"must be one of {', '.join(presets)}, got {entry.preset!r}")
    params = presets[entry.preset]
    for key, value in entry.params:  # one at a time, to name the field a refusal is about
        try:
            params = params.with_overrides(**{key: value})  # None keeps the preset's
        except ValueError as error:
            raise _fail(where, f"params.{key}", str(error)) from None
    weights = reference(where, "weights", entry.weights) if entry.weights else None
    if weights and entry.context_length:
        weights = replace(weights, context_length=entry.context_length)
    endpoint = _endpoint(where, entry.endpoint, reference) if entry.endpoint else None
    try:
        return ContenderSpec(
            name=entry.name,
            weights=weights,
            endpoint=endpoint,
            prompt_format=entry.prompt_format,
            params=params,
            system_prompt=(entry.system_prompt or "").strip() or None,
            identity_words=tuple(entry.identity_words),
        )
    except ValueError as error:  # the check left to it: prompt = 'local' needs prompt_format = 'llama2'
        raise _fail(where, "endpoint.prompt", str(error)) from None


def _endpoint(where: str, table: _Endpoint, reference: Callable[[str, str, str], WeightsSpec]) -> EndpointSpec:
    values = {key: value for key, value in table if value is not None}
    if table.tokenizer:
        values["tokenizer"] = reference(where, "endpoint.tokenizer", table.tokenizer)
    spec = object.__new__(EndpointSpec)  # unchecked, to name the field of its first problem
    spec.__dict__.update({f.name: f.default for f in fields(EndpointSpec)} | values)
    for field, message in spec.problems()[:1]:
        raise _fail(where, f"endpoint.{field}", message)
    return EndpointSpec(**values)


def _reference(
    folder: Path,
    weights: Mapping[str, WeightsSpec],
    resolve: Callable[[str], WeightsSpec],
    where: str,
    field: str,
    reference: str,
) -> WeightsSpec:
    """Named weights, a Hub id (org/name@revision), a folder or a .gguf, relative to the file."""
    if reference in weights:
        return weights[reference]
    path = folder / reference  # relative to the lineup file's folder, not where the app starts
    if (
        not Path(reference).is_absolute()
        and not reference.startswith("~")
        and (reference.startswith(".") or reference.lower().endswith(".gguf") or path.exists())
    ):
        reference = str(path.resolve())  # else a Hub id such as org/name@revision
    try:
        return resolve(reference)
    except (ValueError, RuntimeError, OSError) as error:  # RuntimeError: ~nobody/x has no home folder
        raise _fail(where, field, f"{error}; named weights: {', '.join(sorted(weights))}") from None
