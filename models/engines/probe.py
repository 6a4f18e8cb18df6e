"""How fast an engine decodes with a given number of streams: measured by running them.

A batched step costs a fixed part plus a part per stream, and on a CPU the per-stream part shrinks as
matrix products grow, so no formula predicts the step at 12 streams from the step at 3. Admission
(playground/admission.py) needs that curve before a crowd arrives; `step_gaps` measures one point.
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

from models.engines.protocol import Engine, Finished, StreamRequest
from models.specs import GenerationParams

GREEDY = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0)


def step_gaps(
    engine: Engine, prompt_ids: Sequence[int], streams: int, tokens: int = 16, timeout_s: float = 120.0
) -> list[float]:
    """Seconds between consecutive tokens of each of `streams` greedy streams decoded together.

    Every stream gets the same prompt and runs `tokens` tokens (no stop token ends it early). Only the
    gaps while all of them decode are kept: from the moment the last one has its first two tokens (the
    streams join the batch one step apart at most, each with its prefill) until the first one ends.
    Empty when the engine ended a stream early (closed, failed) or it took over `timeout_s`.
    """
    streams, tokens = max(1, streams), max(4, tokens)
    stop = threading.Event()
    times: list[list[float]] = [[] for _ in range(streams)]
    ended: list[str | None] = [None] * streams
    together = threading.Barrier(streams)

    def run(n: int) -> None:
        request = StreamRequest(prompt_ids, GREEDY, seed=n, stop=stop, max_new_tokens=tokens)
        together.wait(timeout_s)  # submitted as close together as threads allow: most join one step
        for event in engine.generate(request):
            if isinstance(event, Finished):
                ended[n] = event.reason
                return
            times[n].append(time.perf_counter())

    threads = [threading.Thread(target=run, args=(n,), daemon=True, name=f"step-probe-{n}") for n in range(streams)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        stop.set()  # the engine ends them as stopped after its current step
        for thread in threads:
            thread.join(10.0)
        return []
    if any(reason != "length" or len(t) != tokens for reason, t in zip(ended, times)):
        return []
    start = max(t[1] for t in times)
    end = min(t[-1] for t in times)
    return [b - a for t in times for a, b in zip(t, t[1:]) if a >= start and b <= end]
