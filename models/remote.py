"""Contenders on OpenAI-compatible servers (vLLM, TGI, llama.cpp, `transformers serve`), through `openai`.

`RemoteStreamer` is the Streamer for remote contenders: it streams `/v1/chat/completions` (the
server's chat template) or, for `prompt = "local"`, `/v1/completions` with the Llama 2 prompt this app
renders itself. Every failure ends one stream with a sentence for its pane (`failure_message`).
`check` asks each server for `/v1/models` at start: which are unreachable, which lack the model.
A contender whose tokenizer and context length are known is fitted as local weights are
(models/context.py): the oldest exchanges left out with a notice, the answer limit capped to fit.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import httpx2 as httpx  # the HTTP client the openai package is built on
import openai

from models.context import ContextTooLong, answer_reserve, answer_tokens, fit_messages
from models.prompt_format import BOS_TEXT, PromptError, RenderedPrompt, llama2_prompt_text, render_prompt
from models.specs import MIN_CONTEXT, ContenderSpec, EndpointSpec, GenerationParams, WeightsSpec
from models.streaming import GenerationResult, PromptReady, RemoteRequest, ServedBy, StreamEvent, StreamFailure

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 10.0  # start-up check: how long one server may take to list its models
RECHECK_S = 10.0  # an unavailable contender is asked again at most this often
# How servers say a prompt and its answer do not fit: vLLM ("maximum context length is 4096 tokens"),
# TGI ("must have less than 4096 tokens"), llama.cpp ("exceeds the available context size").
CONTEXT_ERROR = re.compile(
    r"context (length|size|window)|less than \d+ tokens|too many tokens|prompt is too long", re.IGNORECASE
)


def _server_text(error: openai.APIStatusError) -> str:
    """The server's own error text, short: the `message` of an OpenAI error body, else the body."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        text = inner.get("message") or inner.get("detail") or json.dumps(body)
    else:
        try:
            text = error.response.text
        except Exception:  # a stream whose body was never read
            text = str(body or error.message)
    text = " ".join(str(text).split()).rstrip(".")
    return text[:300] + ("…" if len(text) > 300 else "")


def failure_message(
    error: BaseException, endpoint: EndpointSpec, *, partial: bool = False, env: Mapping[str, str] | None = None
) -> str:
    """What went wrong with a request to `endpoint`, in plain words for the pane."""
    env = os.environ if env is None else env
    url = endpoint.url
    kept = " The answer so far is kept." if partial else ""
    if isinstance(error, openai.APIStatusError):
        status, text = error.status_code, _server_text(error)
        if status in (401, 403):
            key = (
                f"check the key in {endpoint.api_key_env}"
                if endpoint.api_key_env and env.get(endpoint.api_key_env)
                else f"set {endpoint.api_key_env} to a key it accepts"
                if endpoint.api_key_env
                else "name the variable holding its key with api_key_env in the lineup file"
            )
            return f"The server at {url} refused the API key (HTTP {status}: {text}): {key}."
        if status == 404:
            return (
                f"The server at {url} has no model {endpoint.model!r} or no such endpoint (HTTP 404: {text}). "
                "Check the model name against its /v1/models and that base_url ends in /v1."
            )
        if status == 429:
            after = error.response.headers.get("retry-after")
            wait = f"; it asks to wait {after} s before trying again" if after else ""
            return f"The server at {url} is limiting requests (HTTP 429: {text}){wait}.{kept}"
        if status >= 500:
            return f"The server at {url} failed (HTTP {status}): {text}.{kept}"
        if CONTEXT_ERROR.search(text):
            return (
                f"The conversation and the answer's token limit do not fit the context of the server at {url} "
                f"(HTTP {status}: {text}): shorten the message or press Clear to start a new conversation; if "
                "a new one fails too, lower max_new_tokens."
            )
        return f"The server at {url} refused the request (HTTP {status}): {text}."
    if isinstance(error, openai.APITimeoutError):
        cause = error.__cause__
        if isinstance(cause, httpx.ConnectTimeout) or isinstance(cause, httpx.PoolTimeout):
            return (
                f"The server at {url} did not accept the connection within {endpoint.connect_timeout_s:g} s "
                "(connect_timeout_s): is the address right, and is it up?"
            )
        return (
            f"The server at {url} sent nothing for {endpoint.chunk_timeout_s:g} s (chunk_timeout_s), so the "
            f"answer was ended.{kept}"
        )
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        if isinstance(cause, httpx.ConnectError):
            why = str(cause).split("] ")[-1] or "refused"
            return f"Could not connect to the server at {url} ({why}): is it running?"
        if partial or isinstance(cause, (httpx.RemoteProtocolError, httpx.ReadError)):
            return (
                f"The connection to the server at {url} broke in the middle of the answer (the server may "
                f"have stopped or restarted).{kept}"
            )
        return f"Could not reach the server at {url} ({cause or error})."
    if isinstance(
        error,
        (json.JSONDecodeError, openai.APIResponseValidationError, ValueError, KeyError, AttributeError, TypeError),
    ):
        detail = " ".join(str(error).split())[:120]
        return f"The server at {url} sent a malformed chunk ({type(error).__name__}: {detail}).{kept}"
    if isinstance(error, openai.APIError):
        return f"The server at {url} reported an error: {error.message}.{kept}"
    return f"The request to {url} failed ({type(error).__name__}: {error}).{kept}"


def count_margin(context: int) -> int:
    """Tokens left free beyond this app's count: a server may count the same prompt a few tokens apart
    (another tokenizer version; Llama 2's segments encoded apart here and joined there), and it refuses
    a request whose prompt plus max_tokens exceed its context by even one."""
    return max(4, context // 128)


@dataclass(frozen=True)
class Fitted:
    """One answer's messages after fitting, their count (0: not counted), and the answer limit
    (None: the preset's), or the ContextTooLong to raise once the prompt is recorded."""

    messages: list[Mapping[str, str]]
    dropped: int = 0
    tokens: int = 0
    max_tokens: int | None = None
    too_long: ContextTooLong | None = None


@dataclass
class _State:
    """What the app knows of one contender's server: a problem, and whether it adds Llama's BOS itself."""

    problem: str | None = None
    checked_at: float = 0.0
    server_adds_bos: bool | None = None  # prompt = "local" only; None: not asked yet
    listed_context: int | None = None  # the context length the server's /v1/models gives, if any
    lock: threading.Lock = field(default_factory=threading.Lock)  # one recheck at a time


class RemoteStreamer:
    """The Streamer for remote contenders; each stream is one HTTP request, closed at once on Stop."""

    def __init__(
        self,
        contenders: Sequence[ContenderSpec],
        env: Mapping[str, str] | None = None,
        *,
        recheck_s: float = RECHECK_S,
        tokenizers: Mapping[WeightsSpec, Any] | None = None,
    ) -> None:
        """`tokenizers` holds the loaded tokenizer of each endpoint's `tokenizer` (models.loading.load_tokenizer)."""
        self.contenders = {c.name: c for c in contenders if c.endpoint is not None}
        self.tokenizers = dict(tokenizers or {})
        self.env = os.environ if env is None else env
        self.recheck_s = recheck_s
        self._clients: dict[tuple[str, str, float, float], openai.OpenAI] = {}
        self._clients_lock = threading.Lock()
        self._states = {name: _State() for name in self.contenders}
        self._limits = {
            name: threading.BoundedSemaphore(c.endpoint.max_concurrent)
            for name, c in self.contenders.items()
            if c.endpoint.max_concurrent
        }

    # --- start-up check -------------------------------------------------------------------------------

    def check(self) -> dict[str, str]:
        """Ask every contender's server for /v1/models; {contender name: problem} for those not ready.

        Contenders that share a server and key share one request.
        """
        listings: dict[tuple[str, str | None], Listing] = {}
        problems = {}
        for name, contender in self.contenders.items():
            endpoint = contender.endpoint
            key = (endpoint.base_url, endpoint.api_key_env)
            if key not in listings:
                listings[key] = self._list_models(endpoint)
            problem = self._update(contender, listings[key])
            if problem:
                problems[name] = problem
        return problems

    def _update(self, contender: ContenderSpec, listing: Listing) -> str | None:
        """Keep what the listing says of this contender: its problem, and its server's context length."""
        state, (models, _) = self._states[contender.name], listing
        state.problem, state.checked_at = self._problem(contender, listing), time.monotonic()
        if models is not None and contender.endpoint.model in models:  # what the server says now, even none
            state.listed_context = models[contender.endpoint.model]
        return state.problem

    def context_length(self, contender: ContenderSpec) -> int | None:
        """The contender's context in tokens: the smaller of its lineup's `context_length` and what its
        server lists, where either is known (a larger lineup value would only earn the server's refusal)."""
        known = [n for n in (contender.endpoint.context_length, self._states[contender.name].listed_context) if n]
        return min(known) if known else None

    def tokenizer(self, contender: ContenderSpec) -> Any | None:
        """The tokenizer that counts the contender's tokens, if its endpoint names one."""
        return self.tokenizers.get(contender.endpoint.tokenizer) if contender.endpoint.tokenizer else None

    def _problem(self, contender: ContenderSpec, listing: Listing) -> str | None:
        """What stops this contender, given its server's model listing (or why there is none)."""
        endpoint, (models, problem) = contender.endpoint, listing
        if problem is None and endpoint.model not in models:
            shown = ", ".join(repr(m) for m in list(models)[:10]) or "none"
            problem = (
                f"the server at {endpoint.url} has no model {endpoint.model!r}; it serves {shown}. "
                "Fix `model` in the lineup file"
            )
        if problem is None and endpoint.prompt == "local":
            problem = self._ask_bos(contender)
        return problem

    def _missing_key(self, endpoint: EndpointSpec) -> str | None:
        if endpoint.api_key_env and not self.env.get(endpoint.api_key_env):
            return f"the environment variable {endpoint.api_key_env} (the API key for {endpoint.url}) is not set"
        return None

    def unavailable(self) -> dict[str, str]:
        """{contender name: problem} as last checked."""
        return {name: s.problem for name, s in self._states.items() if s.problem}

    def _list_models(self, endpoint: EndpointSpec) -> Listing:
        missing = self._missing_key(endpoint)
        if missing:
            return None, missing
        try:
            client = self._client(endpoint).with_options(
                timeout=httpx.Timeout(CHECK_TIMEOUT_S, connect=endpoint.connect_timeout_s)
            )
            return {m.id: _listed_context(m) for m in client.models.list().data}, None
        except Exception as error:  # any failure is a reason to name this server, never a traceback
            return None, failure_message(error, endpoint, env=self.env).rstrip(".")

    def _ask_bos(self, contender: ContenderSpec) -> str | None:
        """prompt = "local": does the server add Llama's BOS itself, and does it read "<s>" as BOS?

        The text "<s>" is 1 prompt token if the server reads it as BOS and adds none, 2 if it adds one
        too; anything else means multi-turn Llama 2 prompts would reach the model garbled.
        """
        endpoint = contender.endpoint
        try:
            answer = (
                self._client(endpoint)
                .with_options(timeout=CHECK_TIMEOUT_S)
                .completions.create(model=endpoint.model, prompt=BOS_TEXT, max_tokens=1, temperature=0.0)
            )
        except Exception as error:
            return failure_message(error, endpoint, env=self.env).rstrip(".")
        tokens = answer.usage.prompt_tokens if answer.usage else None
        if tokens not in (1, 2, None):
            return (
                f"the server at {endpoint.url} reads {BOS_TEXT!r} as {tokens} tokens, not as Llama's BOS token, so "
                'it cannot take this app\'s Llama 2 prompt: use prompt = "server" for this contender'
            )
        self._states[contender.name].server_adds_bos = tokens != 1  # unknown (no usage): as vLLM and TGI do
        return None

    def _recheck(self, contender: ContenderSpec) -> str | None:
        """The contender's problem now; a server that was down is asked again at most every recheck_s."""
        state = self._states[contender.name]
        if not state.problem:
            return None
        with state.lock:  # the streams that arrive meanwhile wait for this answer instead of asking too
            if state.problem and time.monotonic() - state.checked_at >= self.recheck_s:
                self._update(contender, self._list_models(contender.endpoint))
            return state.problem

    # --- streaming ------------------------------------------------------------------------------------

    def _client(self, endpoint: EndpointSpec) -> openai.OpenAI:
        """One client per server, key and timeouts, made once: its connections are kept and reused."""
        key = self.env.get(endpoint.api_key_env, "") if endpoint.api_key_env else ""
        slot = (endpoint.base_url, key, endpoint.connect_timeout_s, endpoint.chunk_timeout_s)
        with self._clients_lock:
            client = self._clients.get(slot)
            if client is None:
                # max_retries=0: a retry would hide the failure and double the wait; the person retries.
                # The read timeout is the longest silence allowed between two chunks.
                timeout = httpx.Timeout(
                    endpoint.chunk_timeout_s, connect=endpoint.connect_timeout_s, pool=endpoint.connect_timeout_s
                )
                client = openai.OpenAI(
                    base_url=endpoint.base_url, api_key=key or "none", max_retries=0, timeout=timeout
                )
                self._clients[slot] = client
        return client

    def fit(self, contender: ContenderSpec, messages: Sequence[Mapping[str, str]], params: GenerationParams) -> Fitted:
        """The messages to send for one answer, their count and the answer limit.

        Without a tokenizer and a context length nothing is counted: every message is sent with the
        preset's limit, and a server that finds them too long says so.
        """
        context, tokenizer = self.context_length(contender), self.tokenizer(contender)
        if context is None or tokenizer is None:
            return Fitted(list(messages))
        margin = count_margin(context)
        sent, dropped, prompt = fit_messages(
            messages,
            lambda candidate: self.render(contender, candidate),
            context,
            answer_reserve(params, context) + margin,
        )
        tokens = len(prompt.input_ids)
        try:
            limit = answer_tokens(tokens, params, context)
        except ContextTooLong as too_long:
            return Fitted(sent, dropped, tokens, too_long=too_long)
        return Fitted(sent, dropped, tokens, max(1, min(limit, context - tokens - margin)))

    def render(self, contender: ContenderSpec, messages: Sequence[Mapping[str, str]]) -> RenderedPrompt:
        """The prompt as the contender's tokenizer and prompt format render it: what fitting counts."""
        try:
            return render_prompt(contender.prompt_format, messages, self.tokenizer(contender))
        except PromptError as error:
            raise StreamFailure(f"{contender.name}: {error}") from None

    def request(
        self,
        contender: ContenderSpec,
        messages: Sequence[Mapping[str, str]],
        params: GenerationParams,
        seed: int,
        *,
        max_tokens: int | None = None,
    ) -> tuple[str, dict[str, Any], str]:
        """(api, request body, prompt text) for one answer; the body holds the messages or the prompt.

        `max_tokens`: the answer limit fitting found (at most the preset's); None: the preset's.
        """
        endpoint = contender.endpoint
        body: dict[str, Any] = {
            "model": endpoint.model,
            "max_tokens": params.max_new_tokens if max_tokens is None else max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body.update({name: getattr(params, name) for name in endpoint.extra_params})
        body.update(endpoint.extra_body_dict)
        if endpoint.prompt == "local":
            text = llama2_prompt_text(messages)
            if self._states[contender.name].server_adds_bos is not False:  # the server writes the first BOS
                text = text.removeprefix(BOS_TEXT)
            return "completions", {**body, "prompt": text}, text
        return "chat/completions", {**body, "messages": [dict(m) for m in messages]}, ""

    def __call__(
        self,
        contender: ContenderSpec,
        messages: Sequence[Mapping[str, str]],
        params: GenerationParams,
        *,
        stop: threading.Event,
        seed: int,
    ) -> Iterator[StreamEvent]:
        endpoint, started = contender.endpoint, time.perf_counter()
        problem = self._recheck(contender) or self._missing_key(endpoint)
        if problem:
            raise StreamFailure(f"{contender.name} is unavailable: {_sentence(problem)}")
        fitted = self.fit(contender, messages, params)
        api, body, text = self.request(contender, fitted.messages, params, seed, max_tokens=fitted.max_tokens)
        sent = {k: v for k, v in body.items() if k not in ("messages", "prompt")}
        yield PromptReady(
            text=text,
            tokens=fitted.tokens,
            dropped_exchanges=fitted.dropped,
            remote=RemoteRequest(endpoint=endpoint.url, api=api, body=sent),
        )
        if fitted.too_long is not None:  # the record has the prompt; nothing is sent, the server would refuse it
            raise fitted.too_long
        limit = self._limits.get(contender.name)
        while limit is not None and not limit.acquire(timeout=0.05):  # this contender's open requests are capped
            if stop.is_set():
                yield GenerationResult(
                    text="",
                    finish_reason="stopped",
                    prompt_tokens=0,
                    completion_tokens=0,
                    time_to_first_token_s=None,
                    duration_s=time.perf_counter() - started,
                    seed=seed,
                )
                return
        try:
            yield from self._stream(contender, api, body, stop, seed, started, fitted.tokens)
        finally:
            if limit is not None:
                limit.release()

    def _stream(
        self,
        contender: ContenderSpec,
        api: str,
        body: dict[str, Any],
        stop: threading.Event,
        seed: int,
        started: float,
        counted: int,
    ) -> Iterator[StreamEvent]:
        """One request's events; `counted` is the prompt's length counted here (0: not counted), kept when
        the server sends no usage (llama.cpp).

        An answer cut by a failure after some text (a server that died, went silent or sent a broken
        chunk) yields what it streamed as a GenerationResult (finish_reason "error") before its
        StreamFailure: the record keeps its tokens, first-token time and speed, as a stopped one does.
        """
        endpoint = contender.endpoint
        client = self._client(endpoint)
        known = {k: v for k, v in body.items() if k in _KNOWN[api]}
        extra = {k: v for k, v in body.items() if k not in _KNOWN[api]}
        got = _Streamed(started)
        stream, closer, failure = None, None, None
        try:
            create = client.chat.completions.create if api == "chat/completions" else client.completions.create
            stream = create(**known, extra_body=extra or None)
            closer = _close_on_stop(stream, stop)
            for chunk in stream:
                if not got.served and chunk.model:
                    got.served = True
                    yield ServedBy(
                        model=chunk.model, system_fingerprint=getattr(chunk, "system_fingerprint", None) or None
                    )
                if chunk.usage is not None:
                    got.usage = chunk.usage.model_dump(exclude_none=True)
                for choice in chunk.choices:
                    delta = choice.delta.content if api == "chat/completions" else choice.text
                    if delta:
                        got.add(delta)
                        yield delta
                    got.finish = choice.finish_reason or got.finish
        except Exception as error:
            if not stop.is_set():  # Stop closed the connection: the answer ends as stopped, not failed
                log.info("%s: %s failed: %r", contender.name, endpoint.url, error)
                if isinstance(error, openai.APIStatusError) and CONTEXT_ERROR.search(_server_text(error)):
                    self._update(contender, self._list_models(endpoint))  # restarted with another context?
                failure = error
        finally:
            if closer is not None:
                closer.set()
            if stream is not None:
                stream.close()
        if stop.is_set():
            yield got.result("stopped", counted, seed)
            return
        if failure is not None or got.finish is None:
            message = (
                failure_message(failure, endpoint, partial=bool(got.text), env=self.env)
                if failure is not None
                else f"The server at {endpoint.url} closed the stream without finishing the answer "
                f"(no finish_reason).{' The answer so far is kept.' if got.text else ''}"
            )
            if got.text:
                yield got.result("error", counted, seed)
            raise StreamFailure(message) from failure
        yield got.result(got.finish if got.finish in ("stop", "length") else "stop", counted, seed)

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


Listing = tuple[dict[str, int | None] | None, str | None]  # {model: listed context} or None, and a problem


@dataclass
class _Streamed:
    """What one request has streamed so far: its text pieces, when the first came and the last, the
    server's usage (sent last, or with every chunk by vLLM's continuous usage stats), its finish reason."""

    started: float
    text: list[str] = field(default_factory=list)
    first_s: float | None = None
    last_s: float | None = None
    usage: dict[str, Any] | None = None
    finish: str | None = None
    served: bool = False

    def add(self, delta: str) -> None:
        self.last_s = time.perf_counter() - self.started
        if self.first_s is None:
            self.first_s = self.last_s
        self.text.append(delta)

    def result(self, finish: str, counted: int, seed: int) -> GenerationResult:
        """The answer as it stands, `finish` being "stop", "length", "stopped" or "error" (cut).

        Its tokens are the server's count when it sent one, else the text pieces counted (a server sends
        one token a chunk); a stopped answer counts the pieces it showed. A cut answer lasts until its
        last piece, so that the silence before a timeout does not lower its speed; any other until now.
        """
        usage = self.usage or {}
        pieces = len(self.text)
        tokens = pieces if finish == "stopped" else int(usage.get("completion_tokens", pieces))
        lasted = self.last_s if finish == "error" and self.last_s is not None else time.perf_counter() - self.started
        return GenerationResult(
            text="".join(self.text),
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens", counted)),
            completion_tokens=tokens,
            time_to_first_token_s=self.first_s,
            duration_s=lasted,
            seed=seed,
            usage=usage or None,
        )


def _listed_context(model: Any) -> int | None:
    """The context length a server lists with a model: vLLM's `max_model_len`; others list none."""
    value = (model.model_extra or {}).get("max_model_len")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= MIN_CONTEXT else None


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


# Fields the openai client takes as arguments; the rest of a body goes in extra_body.
_KNOWN = {
    "chat/completions": {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "stream",
        "stream_options",
        "stop",
        "frequency_penalty",
        "presence_penalty",
    },
    "completions": {
        "model",
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "stream",
        "stream_options",
        "stop",
        "frequency_penalty",
        "presence_penalty",
    },
}


def _close_on_stop(stream: Any, stop: threading.Event) -> threading.Event:
    """Close `stream` from a watcher thread as soon as `stop` is set, even while no chunk arrives.

    Returns the event that ends the watcher once the stream is over.
    """
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if stop.wait(0.05):
                if not done.is_set():
                    stream.close()  # the reading thread gets a connection error at once
                return

    threading.Thread(target=watch, daemon=True, name="remote-stop").start()
    return done
