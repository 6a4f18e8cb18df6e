"""Frozen specs: what weights are, how a contender samples, which contenders form a lineup."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

PromptFormat = Literal["llama2", "chat_template"]
# Who turns the messages into the prompt text of a remote contender: the server's chat template
# (/v1/chat/completions), or this app, exactly as for local weights (/v1/completions).
PromptSource = Literal["server", "local"]
MIN_CONTEXT, MAX_CONTEXT = 16, 10_000_000  # tokens: sound bounds for a context length anyone sets
# Preset fields with no OpenAI parameter: sent only when an endpoint lists them in `extra_params`.
EXTRA_PARAMS = ("top_k", "repetition_penalty")
# Request fields models/remote.py sets in every request (RemoteStreamer.request), with the contender
# field each comes from, or why the app sets it. extra_body may not override them (issue 15): another
# "model" goes to a model the start-up check never saw, and "stream = false" breaks the stream reader.
REQUEST_FIELDS_FROM = {
    "model": "endpoint.model",
    "messages": "the conversation and system_prompt",
    "prompt": "the conversation, prompt_format and endpoint.prompt",
    "max_tokens": "params.max_new_tokens",
    "temperature": "params.temperature",
    "top_p": "params.top_p",
    **{name: f'params.{name} with endpoint.extra_params = ["{name}"]' for name in EXTRA_PARAMS},
}
REQUEST_FIELDS_ALWAYS = {
    "stream": "every answer is streamed",
    "stream_options": "every answer asks for its token usage",
    "seed": "each answer's seed is drawn and recorded",
}
# Environment variables api_key_env may not name: their values would be sent to a server as its key.
OWN_VARIABLE_PREFIXES = ("PLAYGROUND_", "GRADIO_")  # this app's own settings and secrets (admin token, salt)
SYSTEM_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "USERNAME",
        "LOGNAME",
        "SHELL",
        "PWD",
        "OLDPWD",
        "TERM",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TMP",
        "TEMP",
        "HOSTNAME",
        "DISPLAY",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "MAIL",
        "SHLVL",
        "PORT",
        "VIRTUAL_ENV",
        "CUDA_VISIBLE_DEVICES",
        "HF_HOME",
        "USERPROFILE",
        "APPDATA",
        "LOCALAPPDATA",
        "SYSTEMROOT",
        "COMSPEC",
        "PATHEXT",
        "PROGRAMFILES",
        "WINDIR",
    }
)
SYSTEM_VARIABLE_PREFIXES = ("LC_", "XDG_", "SSH_", "LD_", "PYTHON", "CONDA_", "DBUS_")


class SpecError(ValueError):
    """A lineup, contender, endpoint or weights described wrongly; the message names the field and the fix."""


@dataclass(frozen=True)
class WeightsSpec:
    """What `from_pretrained` loads: a Hub id (with revision), a local folder, or a GGUF file."""

    id: str  # Hub id, local folder path, or the embedded model's name
    revision: str | None = None  # Hub revision (branch, tag or commit); None for local weights
    gguf_file: str | None = None  # file name inside `id` when the weights are a GGUF file
    context_length: int = 4096
    # Shown when the weights cannot be found: how a person gets them.
    how_to_get: str = ""
    gated: bool = False  # Hub repo that needs a token and an accepted licence

    def describe(self) -> str:
        """Id plus revision, as stored with every response."""
        return f"{self.id}@{self.revision}" if self.revision else self.id


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; temperature 0 means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be a whole number, got {getattr(self, name)!r}"
            for name in ("top_k", "max_new_tokens")
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int)
        ]
        # A raw request can send true, "0.7", NaN or an infinity where a slider sends a number: each
        # would pass a range check or break every later request of the session.
        problems += [
            f"{name} must be a finite number, got {getattr(self, name)!r}"
            for name in ("temperature", "top_p", "repetition_penalty")
            if isinstance(getattr(self, name), bool)
            or not isinstance(getattr(self, name), (int, float))
            or not math.isfinite(getattr(self, name))
        ]
        if problems:  # the browser can send 50.5 where a slider meant 50
            raise SpecError("; ".join(problems))
        if not 0.0 <= self.temperature <= 5.0:
            problems.append(f"temperature must be between 0 and 5, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be 0 (off) or more, got {self.top_k}")
        if not 0.5 <= self.repetition_penalty <= 3.0:
            problems.append(f"repetition_penalty must be between 0.5 and 3, got {self.repetition_penalty}")
        if not 1 <= self.max_new_tokens <= 32768:
            problems.append(f"max_new_tokens must be between 1 and 32768, got {self.max_new_tokens}")
        if problems:
            raise SpecError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def with_overrides(self, **overrides: Any) -> GenerationParams:
        """A copy with the given fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _not_a_key(name: str) -> str:
    """Why the variable `name` holds no server's API key ("" when it may): the app's own, or the system's."""
    upper = name.upper()  # Windows reads Path as PATH
    own = next((prefix for prefix in OWN_VARIABLE_PREFIXES if upper.startswith(prefix)), None)
    if own:
        return f"one of this app's own settings and secrets ({own}*)"
    if upper in SYSTEM_VARIABLES or upper.startswith(SYSTEM_VARIABLE_PREFIXES):
        return "a system variable, not an API key"
    return ""


def _overridden(key: str) -> str:
    """Why extra_body may not set `key`, a field the app sets in every request, and what to do instead."""
    if key in REQUEST_FIELDS_FROM:
        return (
            f"must not set {key!r}: the app sets it in every request from the contender's own fields; use "
            f"{REQUEST_FIELDS_FROM[key]} instead"
        )
    return f"must not set {key!r}: the app sets it in every request ({REQUEST_FIELDS_ALWAYS[key]}); remove it"


def public_url(url: str) -> str:
    """`url` as stored and shown: scheme, host, port and path; no credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class EndpointSpec:
    """An OpenAI-compatible server (vLLM, TGI, llama.cpp, `transformers serve`) and a model on it.

    The API key is read from the environment variable `api_key_env` when a request is sent: it is
    never part of a spec, a record or a page.
    """

    base_url: str  # up to and including /v1, e.g. http://gpu-box:8000/v1
    model: str  # the model name on that server
    api_key_env: str | None = None
    max_concurrent: int | None = None  # requests this contender has open at once; None: no limit
    prompt: PromptSource = "server"
    connect_timeout_s: float = 5.0
    # The longest silence allowed between two chunks (and before the first) before the answer fails.
    chunk_timeout_s: float = 60.0
    # Preset fields without an OpenAI parameter to send anyway, for servers that take them (vLLM,
    # llama.cpp): "top_k", "repetition_penalty". Unlisted ones are not sent, and the record says so.
    extra_params: tuple[str, ...] = ()
    # More request fields, as JSON text (a TOML table in a lineup file), e.g. transformers serve's
    # {"generation_config": "{\"do_sample\": true}"}. Sent with every request and stored with it.
    extra_body: str | None = None
    # The server's context in tokens; None: what its /v1/models says (vLLM's max_model_len), if anything.
    context_length: int | None = None
    # Weights whose tokenizer counts this contender's tokens (only the tokenizer is loaded), so that a
    # long conversation is trimmed and the answer limit capped to fit, as for local weights.
    tokenizer: WeightsSpec | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SpecError("; ".join(message for _, message in problems))

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong with it) for every bad field; empty when the spec is sound."""
        url = self.base_url if isinstance(self.base_url, str) else ""
        parts, problems = urlsplit(url), []
        # The authority is checked before the scheme so that no message repeats a password: "user:pw@h/v1"
        # (no scheme) and "ftp://user:pw@h" carry one as surely as "http://user:pw@h".
        if "@" in url.partition("//")[2].partition("/")[0] or "@" in url.partition("/")[0]:
            problems.append(
                (
                    "base_url",
                    "must not carry credentials (user:password@); put the key in the "
                    "environment variable named by api_key_env",
                )
            )
        elif parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                (
                    "base_url",
                    f"must be an http:// or https:// URL such as http://gpu-box:8000/v1, got {self.base_url!r}",
                )
            )
        elif parts.query or parts.fragment or url.endswith(("?", "#")):
            # A query may hold a key, and the client appends /chat/completions after it, not before.
            problems.append(
                (
                    "base_url",
                    f"must not have a query or fragment (?… or #…); give the URL up to and "
                    f"including /v1 such as {public_url(url)}, and put a key in the "
                    f"environment variable named by api_key_env",
                )
            )
        if not isinstance(self.model, str) or not self.model.strip():
            problems.append(("model", "must name the model on the server (what its /v1/models lists)"))
        name = self.api_key_env
        if name is not None and not (isinstance(name, str) and name.isascii() and name.isidentifier()):
            # Not repeated in the message: a value that is no variable's name may be the key itself.
            problems.append(
                (
                    "api_key_env",
                    "must be the name of an environment variable (letters, digits and _), "
                    "such as VLLM_API_KEY, never the key itself",
                )
            )
        elif name is not None and _not_a_key(name):
            problems.append(
                (
                    "api_key_env",
                    f"names {name}, {_not_a_key(name)}: its value would be sent to the "
                    "contender's server as its API key; name a variable that holds only "
                    "that server's key, such as OPENAI_API_KEY or VLLM_API_KEY",
                )
            )
        limit = self.max_concurrent
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            problems.append(("max_concurrent", f"must be a whole number of at least 1, got {limit!r}"))
        for name in ("connect_timeout_s", "chunk_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                problems.append((name, f"must be a number of seconds in (0, 3600], got {value!r}"))
        extra = self.extra_params
        if not isinstance(extra, tuple) or not all(e in EXTRA_PARAMS for e in extra):
            problems.append(("extra_params", f"may list only {' and '.join(EXTRA_PARAMS)}, got {extra!r}"))
        if self.extra_body is not None:
            try:
                body = json.loads(self.extra_body)
                if not isinstance(body, dict):
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(("extra_body", f"must be a JSON object (a TOML table), got {self.extra_body!r}"))
            else:
                problems += [
                    ("extra_body", _overridden(key))
                    for key in sorted(body)
                    if key in REQUEST_FIELDS_FROM or key in REQUEST_FIELDS_ALWAYS
                ]
        length = self.context_length
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, int) or not MIN_CONTEXT <= length <= MAX_CONTEXT
        ):
            problems.append(
                (
                    "context_length",
                    f"must be a whole number of tokens from {MIN_CONTEXT} to {MAX_CONTEXT}, got {length!r}",
                )
            )
        if self.tokenizer is not None and not isinstance(self.tokenizer, WeightsSpec):
            problems.append(
                ("tokenizer", f"must name weights whose tokenizer counts this model's tokens, got {self.tokenizer!r}")
            )
        if self.prompt not in ("server", "local"):
            problems.append(
                (
                    "prompt",
                    f"must be 'server' (the server's chat template) or 'local' (this app's "
                    f"Llama 2 prompt), got {self.prompt!r}",
                )
            )
        return [(name, f"{name} {message}") for name, message in problems]

    @property
    def extra_body_dict(self) -> dict[str, Any]:
        return json.loads(self.extra_body) if self.extra_body else {}

    @property
    def url(self) -> str:
        """The base URL as stored and shown (no credentials)."""
        return public_url(self.base_url)

    def describe(self) -> str:
        return f"{self.model} at {self.url}"


@dataclass(frozen=True)
class ContenderSpec:
    """Local weights or a remote endpoint + prompt format + generation preset + optional system prompt."""

    name: str
    weights: WeightsSpec | None = None
    prompt_format: PromptFormat = "chat_template"
    params: GenerationParams = field(default_factory=GenerationParams)
    system_prompt: str | None = None
    endpoint: EndpointSpec | None = None
    # Words that name this contender's model or maker ("Llama", "Meta"): a blind vote on an answer that
    # says one is set aside as an identity leak (feedback_db.rules).
    identity_words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        words = self.identity_words
        if isinstance(words, str) or not all(isinstance(w, str) and w.strip() for w in words):
            raise SpecError(f"contender {self.name!r}: identity_words must be a list of words, got {words!r}")
        object.__setattr__(self, "identity_words", tuple(w.strip() for w in words))
        if (self.weights is None) == (self.endpoint is None):
            raise SpecError(
                f"contender {self.name!r} needs either local weights or an endpoint, not "
                f"{'both' if self.weights else 'neither'}"
            )
        if self.endpoint and self.endpoint.prompt == "local" and self.prompt_format != "llama2":
            raise SpecError(
                f"contender {self.name!r}: prompt = 'local' needs prompt_format = 'llama2', the one "
                "format this app renders itself; other formats use the server's chat template"
            )

    @property
    def remote(self) -> bool:
        return self.endpoint is not None

    @property
    def source(self) -> str:
        """The weights or the endpoint, as shown to people."""
        return self.endpoint.describe() if self.endpoint else self.weights.describe()


@dataclass(frozen=True)
class LineupSpec:
    """The contenders shown side by side."""

    name: str
    contenders: tuple[ContenderSpec, ...]
    description: str = ""

    def __post_init__(self) -> None:
        names = [c.name for c in self.contenders]
        if len(set(names)) != len(names):
            raise SpecError(f"lineup {self.name!r} has duplicate contender names: {names}")
        if not 2 <= len(self.contenders) <= 8:
            raise SpecError(f"lineup {self.name!r} needs 2 to 8 contenders, has {len(names)}")

    @property
    def weights(self) -> tuple[WeightsSpec, ...]:
        """Distinct local weights in contender order: each is loaded once."""
        seen: dict[WeightsSpec, None] = {}
        for contender in self.contenders:
            if contender.weights is not None:  # remote contenders have none to load
                seen.setdefault(contender.weights, None)
        return tuple(seen)
