"""The seam between the comparison core and whatever generates: stream events and the Streamer protocol.

Imports nothing heavy (no torch, no transformers), so the core and its tests load without them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Mapping, Protocol, Sequence

from models.specs import ContenderSpec, GenerationParams

FinishReason = str  # "stop" | "length" | "stopped" | "error"


class StreamFailure(RuntimeError):
    """A stream ended with an error whose message is written for the person reading the pane."""


@dataclass(frozen=True)
class PromptReady:
    """First event of a stream: the exact prompt the contender receives."""

    text: str
    tokens: int


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

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed after the first token (the prefill is in time to first token)."""
        if self.completion_tokens < 2 or self.time_to_first_token_s is None:
            return None
        decode_s = self.duration_s - self.time_to_first_token_s
        return (self.completion_tokens - 1) / decode_s if decode_s > 0 else None


StreamEvent = PromptReady | str | GenerationResult


class Streamer(Protocol):
    """The seam the comparison core calls: text deltas between a PromptReady and a GenerationResult."""

    def __call__(self, contender: ContenderSpec, messages: Sequence[Mapping[str, str]],
                 params: GenerationParams, *, stop: threading.Event, seed: int) -> Iterator[StreamEvent]: ...
