"""Each local engine's step time at a few batch sizes, measured right after start.

Admission (playground/admission.py) predicts how much a new comparison slows the answers running, from
the seconds between tokens it has seen at each batch size. Learned only from what runs, it never sees
a batch larger than the ones it already allowed, so it never finds out that a second comparison would
cost little: on two CPU cores, with admission off, three comparisons at once (nine streams) kept the
slowest pane at 8 tok/s, yet a line through the sizes one comparison shows (1 - 3 streams) predicted
that two would take every pane below 5. So, once the
page serves and while nobody's comparison runs, each engine decodes one, two, four... comparisons'
worth of streams on a short question, until a stream would fall below the floor or the engine is full;
live measurements then replace these as comparisons run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

from models.specs import ContenderSpec
from playground.admission import Admission

log = logging.getLogger(__name__)

TOKENS = 16  # tokens each probing stream decodes
BUDGET_S = 120.0  # the whole calibration, waits for a quiet moment included


@dataclass(frozen=True)
class EngineProbe:
    """What to probe on one engine: a contender it serves, and the sizes to try."""

    engine: Hashable
    contender: ContenderSpec
    sizes: tuple[int, ...]  # streams decoding together: one comparison's, two comparisons'...


def probes_for(
    contenders: Sequence[ContenderSpec], panes: int, max_running: int, max_batch: Mapping[Hashable, int | None]
) -> list[EngineProbe]:
    """One probe per local weights: streams of 1, 2, 4, ... comparisons (each with as many panes on those
    weights as one comparison can hold) up to `max_running` comparisons and the engine's batch."""
    probes = []
    for weights in dict.fromkeys(c.weights for c in contenders if not c.remote):
        on_it = [c for c in contenders if c.weights == weights and not c.remote]
        per_comparison = max(1, min(panes, len(on_it)))
        most = per_comparison * max_running
        if max_batch.get(weights):
            most = min(most, max_batch[weights])
        sizes, comparisons = [], 1
        while per_comparison * comparisons <= most:
            sizes.append(per_comparison * comparisons)
            comparisons *= 2
        probes.append(EngineProbe(weights, on_it[0], tuple(sizes)))
    return probes


def calibrate(
    admission: Admission,
    measure: Callable[[ContenderSpec, int, int], list[float]],
    probes: Sequence[EngineProbe],
    *,
    tokens: int = TOKENS,
    budget_s: float = BUDGET_S,
    stop: threading.Event | None = None,
    quiet_poll_s: float = 0.25,
) -> dict[Hashable, dict[int, float]]:
    """Measure each probe's sizes with `measure(contender, streams, tokens)` (seconds between a stream's
    tokens) while no comparison runs, and give admission what was measured. Stops an engine's sizes once a
    stream falls below admission's floor, and everything at `budget_s` or when `stop` is set. Returns the
    mean seconds between tokens per engine and size, as measured."""
    stop = stop or threading.Event()
    deadline, found = time.monotonic() + budget_s, {}
    floor = admission.min_tokens_per_s
    for probe in probes:
        for streams in probe.sizes:
            while admission.running and not stop.is_set() and time.monotonic() < deadline:
                stop.wait(quiet_poll_s)  # a visitor's comparison runs: measure once it is alone again
            if stop.is_set() or time.monotonic() >= deadline:
                return found
            gaps = measure(probe.contender, streams, tokens)
            if not gaps:
                break  # the engine ended a probing stream (closed, failed): nothing to learn from it
            if admission.running:
                continue  # someone was admitted meanwhile: their streams made the batch larger than counted
            admission.observe(probe.engine, streams, gaps)
            mean = sum(gaps) / len(gaps)
            found.setdefault(probe.engine, {})[streams] = mean
            if floor and 1 / mean < floor:
                break  # admission never lets the batch grow this far: larger ones need no measure
    return found


def describe(found: Mapping[Hashable, Mapping[int, float]]) -> str:
    """The measures for the log: per engine, tokens/s of each stream at each size."""
    return "; ".join(
        f"{getattr(engine, 'id', engine)}: "
        + ", ".join(f"{n} streams {1 / s:.1f} tok/s each" for n, s in sorted(sizes.items()))
        for engine, sizes in found.items()
    )


def start_calibration(
    admission: Admission,
    measure: Callable[[ContenderSpec, int, int], list[float]],
    probes: Sequence[EngineProbe],
    report: Callable[[str], None],
) -> threading.Event:
    """Run `calibrate` in a daemon thread; `report` gets one line when it ends. Set the event returned
    to stop it."""
    stop = threading.Event()

    def run() -> None:
        started = time.monotonic()
        try:
            found = calibrate(admission, measure, probes, stop=stop)
        except Exception:  # admission then learns from what runs, as without calibration
            log.exception("measuring the engines' step times failed")
            return
        if found:
            report(f"admission measured in {time.monotonic() - started:.0f} s: {describe(found)}")

    threading.Thread(target=run, daemon=True, name="calibration").start()
    return stop
