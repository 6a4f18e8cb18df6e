"""Fakes at the seams the project owns: a lineup of made-up contenders, and a Streamer that answers with
words instead of a model, as plain functions."""

from __future__ import annotations

import threading
import time

from models.lineups import weights_from_reference
from models.specs import ContenderSpec, GenerationParams, LineupSpec
from models.streaming import GenerationResult, PromptReady

WEIGHTS = weights_from_reference("org/model")


def lineup(n: int = 2) -> LineupSpec:
    return LineupSpec(
        name="fake",
        contenders=tuple(
            ContenderSpec(name=f"c{i}", weights=WEIGHTS, params=GenerationParams(temperature=0.1 * i)) for i in range(n)
        ),
    )


def words_streamer(
    log: list | None = None,
    delay: float = 0.0,
    fail: str | None = None,
    failure: Exception = RuntimeError("CUDA out of memory"),
):
    """A Streamer that answers '<name> says: <last user message>' word by word."""

    def stream(contender, messages, params, *, stop, seed):
        if log is not None:
            log.append((contender.name, list(messages), params, seed))
        yield PromptReady(text=f"PROMPT[{messages[-1]['content']}]", tokens=3)
        if contender.name == fail:
            raise failure
        words = f"{contender.name} says: {messages[-1]['content']}".split()
        for n, word in enumerate(words, start=1):
            if stop.is_set():
                yield GenerationResult(" ".join(words[: n - 1]), "stopped", 3, n - 1, 0.01, 0.01 * n, seed)
                return
            time.sleep(delay)
            yield word if n == 1 else " " + word
        yield GenerationResult(" ".join(words), "stop", 3, len(words), 0.01, 0.01 * (len(words) + 1), seed)

    return stream


def shared_engine_streamer(per_stream_s: float):
    """A words Streamer whose panes share one engine that gains nothing from batching: each word takes
    `per_stream_s` for every stream running, as a CPU's would with no spare cores."""
    running, lock = [0], threading.Lock()
    words = words_streamer()

    def stream(contender, messages, params, *, stop, seed):
        with lock:
            running[0] += 1
        try:
            for event in words(contender, messages, params, stop=stop, seed=seed):
                if isinstance(event, str):
                    time.sleep(per_stream_s * running[0])
                yield event
        finally:
            with lock:
                running[0] -= 1

    return stream


def run(core, session, prompt, system=None):
    snapshots = 0
    for _ in core.ask(session, prompt, system):
        snapshots += 1
    return snapshots
