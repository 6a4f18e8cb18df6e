"""Which comparisons generate now: admitted in arrival order while every running answer stays readable.

On a CPU every stream slows when one more joins the batch. Admitting whoever asks would make every
pane slower than anyone reads (16 visitors on 2 cores: a first word after 4-11 s, then 2-3 tok/s).
So a comparison is admitted only while the slowest answer now streaming from local weights would keep
at least `min_tokens_per_s` with the new streams added: its live rate over its last tokens, times
the slowdown the engine is expected to take from the larger batch. That slowdown is learned per
engine from what runs (`StepTimes`: seconds between a stream's tokens at each batch size, a straight
line through them), since a batched engine's step costs a fixed part plus a part per stream; until
two batch sizes are known, no gain is assumed (the step grows with the streams). Until the newest
admitted panes have streamed a few tokens there is nothing to measure, and nobody else is admitted.
`max_running` caps comparisons whatever the measurement says (the engines' batch or cache); remote
contenders' panes are not measured (their servers are not ours).

A waiting comparison knows its place and an estimated wait: once the line has moved a few times, at
the pace it was measured to move (the mean gap between the last waiters let in), which holds however
many run at once and however long answers run; before that, each running comparison is expected to
last as long as recent ones did, and each one that ends lets the next in.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Callable

RATE_WINDOW = 16  # a pane's live rate: over its last this many tokens
MEASURED_AFTER = 4  # tokens a new pane streams before its rate counts (its first comes after prefill)
DURATION_MEMORY = 0.3  # weight of the newest finished comparison in the expected duration
PACE_GAPS = 8  # the line's pace: the mean of this many last gaps between waiters let in
PACE_AFTER = 3  # gaps measured before the pace estimates (a burst's first admissions come quickly)
STEP_MEMORY = 64  # token gaps kept per batch size
STEP_SAMPLES = 8  # token gaps a batch size needs before it counts
LOCAL = "local"  # the engine of panes given as bare positions


class StepTimes:
    """Seconds between a stream's tokens, by how many streams its engine runs: learned from what runs.

    A batched engine's step costs a fixed part (weights read, Python, threads) plus a part per stream,
    so a straight line through the measured batch sizes predicts the others; a batch size measured
    often enough is taken as measured. With one batch size measured, the step is taken to grow in
    proportion to the streams: no batching gain is assumed."""

    def __init__(self) -> None:
        self._gaps: dict[int, deque[float]] = {}

    def observe(self, streams: int, seconds: float) -> None:
        self._gaps.setdefault(max(1, streams), deque(maxlen=STEP_MEMORY)).append(seconds)

    def measured(self) -> dict[int, float]:
        """Mean seconds between tokens at each batch size seen often enough."""
        return {n: sum(g) / len(g) for n, g in sorted(self._gaps.items()) if len(g) >= STEP_SAMPLES}

    def seconds(self, streams: int) -> float | None:
        """Predicted seconds between a stream's tokens with `streams` running; None before any measure."""
        points = self.measured()
        if not points:
            return None
        if max(1, streams) in points:
            return points[max(1, streams)]
        if len(points) == 1:
            ((n, t),) = points.items()
            return t * max(1, streams) / n
        weights = {n: len(self._gaps[n]) for n in points}
        total = sum(weights.values())
        mean_n = sum(w * n for n, w in weights.items()) / total
        mean_t = sum(w * points[n] for n, w in weights.items()) / total
        spread = sum(w * (n - mean_n) ** 2 for n, w in weights.items())
        slope = max(0.0, sum(w * (n - mean_n) * (points[n] - mean_t) for n, w in weights.items()) / spread)
        fixed = mean_t - slope * mean_n
        if fixed <= 0:  # a line through the origin at most: the step never shrinks as streams join
            fixed, slope = 0.0, mean_t / mean_n
        return fixed + slope * max(1, streams)

    def slowdown(self, streams: int, joining: int) -> float:
        """By what factor each stream's rate falls when `joining` streams join `streams` (1: none)."""
        now, then = self.seconds(streams), self.seconds(streams + joining)
        if now is None or then is None:
            return streams / (streams + joining) if streams else 1.0
        return min(1.0, now / then)


@dataclass(frozen=True)
class Place:
    """Where a waiting comparison stands: 1 is next, and the estimated seconds until it starts."""

    position: int
    estimate_s: float | None  # None until a comparison has finished to estimate from

    def readable(self) -> Place:
        """The place with its estimate as precise as a person reads it (`readable_wait`): equal to the
        last one shown until the words on the page would change."""
        return Place(self.position, readable_wait(self.estimate_s))


def readable_wait(seconds: float | None) -> float | None:
    """Whole seconds under 10 s, 5 s steps under 90 s, whole minutes beyond: a waiting page is sent again
    only when what it shows changes (playground/comparison.py)."""
    if seconds is None:
        return None
    if seconds < 10:
        return float(round(seconds))
    if seconds < 90:
        return 5.0 * round(seconds / 5)
    return 60.0 * round(seconds / 60)


@dataclass(eq=False)
class Ticket:
    """One comparison's place in the line, then its running panes' token times."""

    local: dict[int, Hashable]  # position of each pane local weights answer -> the engine that decodes it
    joined: float
    admitted_at: float | None = None
    ticks: dict[int, deque[float]] = field(default_factory=dict)  # local pane position -> last token times
    finished: set[int] = field(default_factory=set)  # local panes whose stream ended
    admitted: threading.Event = field(default_factory=threading.Event)

    def streaming(self) -> Counter:
        """Local panes still streaming, by engine."""
        return Counter(engine for position, engine in self.local.items() if position not in self.finished)


class Admission:
    """The line of comparisons waiting, the ones running, and the rule between them."""

    def __init__(
        self, max_running: int, min_tokens_per_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_running, self.min_tokens_per_s, self.clock = max(1, max_running), min_tokens_per_s, clock
        self._lock = threading.Lock()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._streams: Counter = Counter()  # local streams running, by engine
        self.steps: dict[Hashable, StepTimes] = {}  # per engine: seconds between tokens by batch size
        self.expected_s: float | None = None  # how long a comparison runs, from the last ones that ended
        self._gaps: deque[float] = deque(maxlen=PACE_GAPS)  # seconds between waiters let in, the line not empty
        self._last_let_in: float | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    def join(self, local: Mapping[int, Hashable] | Iterable[int]) -> Ticket:
        """Take a place at the end of the line (`local`: the positions of panes that local weights
        answer, each with its engine; bare positions share one engine); admitted at once when the rule
        allows."""
        panes = dict(local) if isinstance(local, Mapping) else dict.fromkeys(local, LOCAL)
        ticket = Ticket(panes, self.clock())
        with self._lock:
            self._waiting.append(ticket)
            self._admit_locked(arriving=ticket)
        return ticket

    def place(self, ticket: Ticket) -> Place | None:
        """The ticket's place and estimated wait; None once admitted. Also admits whoever may go now
        (a waiter asks every second, so a rate that rose is noticed without any stream ending)."""
        with self._lock:
            self._admit_locked()
            if ticket.admitted.is_set() or ticket not in self._waiting:
                return None
            position = self._waiting.index(ticket) + 1
            return Place(position, self._estimate_locked(position))

    def leave(self, ticket: Ticket) -> None:
        """A waiter gave up, or a running comparison ended: its place goes to the next."""
        now = self.clock()
        with self._lock:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            elif ticket in self._running:
                self._running.remove(ticket)
                self._streams -= ticket.streaming()
                ticket.finished.update(ticket.local)
                if ticket.admitted_at is not None:
                    took = now - ticket.admitted_at
                    previous = self.expected_s
                    self.expected_s = took if previous is None else previous + DURATION_MEMORY * (took - previous)
            self._admit_locked()

    def tick(self, ticket: Ticket, position: int) -> None:
        """A pane of a running comparison streamed a token (or a piece of text); a remote pane's is not
        measured."""
        engine = ticket.local.get(position)
        if engine is None:
            return
        now = self.clock()
        times = ticket.ticks.setdefault(position, deque(maxlen=RATE_WINDOW))
        if times and position not in ticket.finished:
            with self._lock:
                self.steps.setdefault(engine, StepTimes()).observe(self._streams[engine], now - times[-1])
        times.append(now)

    def finish(self, ticket: Ticket, position: int) -> None:
        """A pane's stream ended: it no longer counts, and it may let the next comparison in."""
        with self._lock:
            if position in ticket.local and position not in ticket.finished and ticket in self._running:
                self._streams[ticket.local[position]] -= 1
            ticket.finished.add(position)
            self._admit_locked()

    def observe(self, engine: Hashable, streams: int, gaps: Iterable[float]) -> None:
        """Seconds between a stream's tokens measured outside the line (playground/calibration.py) with
        `streams` decoding together on `engine`: kept as if a running comparison had shown them."""
        with self._lock:
            steps = self.steps.setdefault(engine, StepTimes())
            for gap in gaps:
                steps.observe(streams, gap)

    def learned(self) -> dict[Hashable, dict[int, float]]:
        """Per engine, the measured seconds between a stream's tokens at each batch size seen."""
        with self._lock:
            return {engine: steps.measured() for engine, steps in self.steps.items()}

    def slowest_rate(self) -> float | None:
        """Tokens/s of the slowest local pane streaming now; None while a new pane is still unmeasured."""
        with self._lock:
            slowest, measured = self._slowest_locked()
            return min(slowest.values()) if slowest and measured else None

    def _slowest_locked(self) -> tuple[dict[Hashable, float], bool]:
        """(the slowest rate of the local panes streaming now, by engine; whether every one of them has
        streamed enough to measure)."""
        now, slowest, measured = self.clock(), {}, True
        for ticket in self._running:
            for position, engine in ticket.local.items():
                if position in ticket.finished:
                    continue
                times = ticket.ticks.get(position)
                if not times or len(times) < MEASURED_AFTER:
                    measured = False
                    continue
                # Over the window, up to now: a pane that stalls slows its own rate as it stalls.
                rate = (len(times) - 1) / max(now - times[0], 1e-6)
                slowest[engine] = min(rate, slowest.get(engine, rate))
        return slowest, measured

    def _may_admit_locked(self, ticket: Ticket) -> bool:
        if not self._running:
            return True
        if len(self._running) >= self.max_running:
            return False
        if not ticket.local or not self.min_tokens_per_s:
            return True
        slowest, measured = self._slowest_locked()
        if not measured:
            return False  # the newest admitted have not shown their speed yet
        for engine, joining in Counter(ticket.local.values()).items():
            if engine not in slowest:
                continue  # no pane of this engine streams now
            steps = self.steps.get(engine) or StepTimes()
            if slowest[engine] * steps.slowdown(self._streams[engine], joining) < self.min_tokens_per_s:
                return False
        return True

    def _admit_locked(self, arriving: Ticket | None = None) -> None:
        while self._waiting and self._may_admit_locked(self._waiting[0]):
            ticket = self._waiting.pop(0)
            now = ticket.admitted_at = self.clock()
            if ticket is not arriving:  # it waited: the gap since the line last moved is the line's pace
                self._gaps.append(now - max(ticket.joined, self._last_let_in or ticket.joined))
            self._last_let_in = now
            self._running.append(ticket)
            self._streams += ticket.streaming()
            ticket.admitted.set()

    @property
    def pace_s(self) -> float | None:
        """Mean seconds between two waiters let in while the line was not empty; None before any."""
        gaps = list(self._gaps)
        return sum(gaps) / len(gaps) if gaps else None

    def _estimate_locked(self, position: int) -> float | None:
        """Seconds until the waiter at `position` starts."""
        now, pace = self.clock(), self.pace_s
        if pace is not None and len(self._gaps) >= PACE_AFTER and self._last_let_in is not None:
            # The line moves one place per gap; the next move is due a gap after the last.
            return max(0.0, self._last_let_in + pace - now) + (position - 1) * pace
        if self.expected_s is None:
            return None
        # Running ones end at their expected time, and each end lets the next waiter in, who then runs
        # as long as expected.
        ends = [max(0.0, (t.admitted_at or now) + self.expected_s - now) for t in self._running]
        heapq.heapify(ends)
        start = 0.0
        for _ in range(position):
            start = heapq.heappop(ends) if ends else start
            heapq.heappush(ends, start + self.expected_s)
        return start
