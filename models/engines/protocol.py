"""One decoding engine per loaded weights: what a stream asks of it and what comes back.

Every stream on the same weights, from every pane of every visitor, goes through that weights'
engine, which decodes the streams running at the same time together. Which engine a placement gets:
`models.engines.choice.build_engines`.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

from models.specs import GenerationParams


@dataclass(frozen=True)
class StreamRequest:
    """One stream: its prompt, sampling settings, seed, stop event, token limit and stop tokens."""

    prompt_ids: Sequence[int]
    params: GenerationParams
    seed: int
    stop: threading.Event
    max_new_tokens: int
    eos: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Finished:
    """The last event of a stream: why it ended ("stop", "length", "stopped", "error") and the error."""

    reason: str
    error: str | None = None


EngineEvent = int | Finished  # token ids as chosen (the stop token too), then Finished


@dataclass(frozen=True)
class EngineStats:
    """What an engine holds now, for the operator's metrics: read from another thread, so approximate."""

    streams: int  # streams decoding, or waiting in the engine for room
    cache_used_tokens: int  # KV cache the streams take (whole pages; the batched loop counts its padding)
    cache_tokens: int | None  # the most its cache holds; None: it grows as streams come (the batched loop)


class Engine(Protocol):
    """Decodes many streams on one model at once."""

    def generate(self, request: StreamRequest) -> Iterator[EngineEvent]: ...

    def stats(self) -> EngineStats:
        """Streams and cache in use now; cheap, and safe to call from any thread."""
        ...

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop decoding: streams still running end as stopped, later ones at once; the engine's threads
        are joined, waiting at most about `timeout_s`. Safe to call twice."""
        ...


def close_at_exit(engine: Engine) -> None:
    """Close `engine` when the interpreter exits, before it joins non-daemon threads and long before it
    stops daemon ones: a daemon thread stopped inside a torch op aborts the process with "terminate
    called without an active exception" (issue 15). Holds the engine weakly, so a dropped one is freed."""
    ref = weakref.ref(engine)

    def close() -> None:
        alive = ref()
        if alive is not None:
            alive.close()

    threading._register_atexit(close)  # threading's hook: runs before the interpreter joins any thread


def failure_message(error: BaseException) -> str:
    """The plain sentence a pane shows when the engine fails on its stream (the traceback goes to the log)."""
    if type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower():
        return (
            "the model ran out of memory on this answer; the other answers went on. "
            "Try a shorter conversation or fewer tokens"
        )
    return "the model failed on this answer; the other answers went on. Try again"
