"""The seam between the comparison core and whatever generates: stream events and the Streamer protocol.

Imports nothing heavy (no torch, no transformers), so the core and its tests load without them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence

from models.specs import ContenderSpec, GenerationParams

FinishReason = str  # "stop" | "length" | "stopped" | "error"


class StreamFailure(RuntimeError):
    """A stream ended with an error whose message is written for the person reading the pane."""


@dataclass(frozen=True)
class RemoteRequest:
    """What was sent to a remote contender's server, for the record; never a credential."""

    endpoint: str  # scheme, host, port and path of the base URL
    api: str  # "chat/completions" (the server's chat template) or "completions" (this app's prompt)
    body: Mapping[str, Any]  # the request as sent, less the messages or prompt, which are stored apart

    @property
    def template(self) -> str:
        """Who rendered the prompt: "server" (its chat template) or "app" (this app, as for local weights)."""
        return "server" if self.api == "chat/completions" else "app"


@dataclass(frozen=True)
class PromptReady:
    """First event of a stream: the exact prompt the contender receives.

    For a remote contender whose server applies its own chat template the text is unknown here: it
    is empty, `tokens` is 0 until the server's usage says, and `remote` records what was sent.
    """

    text: str
    tokens: int
    remote: RemoteRequest | None = None
    # The oldest user/assistant exchanges left out so that the prompt and an answer fit the context.
    dropped_exchanges: int = 0


@dataclass(frozen=True)
class ServedBy:
    """What a server says about itself in its answer: the model name it reports, its fingerprint."""

    model: str
    system_fingerprint: str | None = None


@dataclass(frozen=True)
class GenerationResult:
    """Last event of a stream."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float | None
    duration_s: float
    seed: int
    usage: Mapping[str, Any] | None = None  # a server's own token counts, as it sent them

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed after the first token (the prefill is in time to first token)."""
        if self.completion_tokens < 2 or self.time_to_first_token_s is None:
            return None
        decode_s = self.duration_s - self.time_to_first_token_s
        return (self.completion_tokens - 1) / decode_s if decode_s > 0 else None


StreamEvent = PromptReady | ServedBy | str | GenerationResult


def drop_oldest_exchanges(messages: Sequence[Mapping[str, str]], exchanges: int) -> list[Mapping[str, str]]:
    """`messages` less the `exchanges` oldest user/assistant pairs after the system prompt (if any)."""
    head = list(messages[:1]) if messages and messages[0].get("role") == "system" else []
    return head + list(messages[len(head) + 2 * exchanges :])


class Streamer(Protocol):
    """The seam the comparison core calls: text deltas between a PromptReady and a GenerationResult."""

    def __call__(
        self,
        contender: ContenderSpec,
        messages: Sequence[Mapping[str, str]],
        params: GenerationParams,
        *,
        stop: threading.Event,
        seed: int,
    ) -> Iterator[StreamEvent]: ...


class RoutedStreamer:
    """Local contenders to the local streamer, remote ones to the remote streamer: one lineup, mixed."""

    def __init__(self, local: Streamer | None, remote: Streamer | None) -> None:
        self.local, self.remote = local, remote
        self.engines = getattr(local, "engines", {})  # what the page sizes its concurrency by

    def __call__(
        self,
        contender: ContenderSpec,
        messages: Sequence[Mapping[str, str]],
        params: GenerationParams,
        *,
        stop: threading.Event,
        seed: int,
    ) -> Iterator[StreamEvent]:
        streamer = self.remote if contender.remote else self.local
        if streamer is None:
            raise StreamFailure(
                f"{contender.name} has no streamer: it is {'remote' if contender.remote else 'local'} "
                "and none was started for it"
            )
        return streamer(contender, messages, params, stop=stop, seed=seed)

    def step_gaps(self, contender: ContenderSpec, streams: int, tokens: int = 16) -> list[float]:
        """The local streamer's measure of its engine's step (models/local.py); empty where it has none."""
        probe = getattr(self.local, "step_gaps", None)
        return probe(contender, streams, tokens) if probe is not None and not contender.remote else []

    def close(self) -> None:
        for streamer in (self.local, self.remote):
            close = getattr(streamer, "close", None)
            if close is not None:
                close()
