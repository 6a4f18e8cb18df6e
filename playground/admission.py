"""Which comparisons generate now: admitted in arrival order while every running answer stays readable.

On a CPU every stream slows when one more joins the batch. Admitting whoever asks would make every
pane slower than anyone reads (16 visitors on 2 cores: a first word after 4-11 s, then 2-3 tok/s).
So a comparison is admitted only while the slowest answer now streaming from local weights would keep
at least `min_tokens_per_s` with the new streams added, judged by live measurement: each pane's rate
over its last tokens, scaled by the share of the batch it would keep (streams / (streams + new)). The
batching gain the engine gets from a larger batch is then measured, not assumed, on the next
admission. Until the newest admitted panes have streamed a few tokens there is nothing to measure,
and nobody else is admitted. `max_running` caps comparisons whatever the measurement says (the
engines' batch or cache); remote contenders' panes are not measured (their servers are not ours).

A waiting comparison knows its place and an estimated wait: each running comparison is expected to
last as long as recent ones did (an average of the last finished), the line is served in order as
they end, each one that ends letting the next in.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

RATE_WINDOW = 16  # a pane's live rate: over its last this many tokens
MEASURED_AFTER = 4  # tokens a new pane streams before its rate counts (its first comes after prefill)
DURATION_MEMORY = 0.3  # weight of the newest finished comparison in the expected duration


@dataclass(frozen=True)
class Place:
    """Where a waiting comparison stands: 1 is next, and the estimated seconds until it starts."""

    position: int
    estimate_s: float | None  # None until a comparison has finished to estimate from


@dataclass(eq=False)
class Ticket:
    """One comparison's place in the line, then its running panes' token times."""

    local: tuple[int, ...]  # positions of the panes local weights answer
    number: int
    joined: float
    admitted_at: float | None = None
    ticks: dict[int, deque[float]] = field(default_factory=dict)  # local pane position -> last token times
    finished: set[int] = field(default_factory=set)  # local panes whose stream ended
    admitted: threading.Event = field(default_factory=threading.Event)


class Admission:
    """The line of comparisons waiting, the ones running, and the rule between them."""

    def __init__(
        self, max_running: int, min_tokens_per_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_running, self.min_tokens_per_s, self.clock = max(1, max_running), min_tokens_per_s, clock
        self._lock = threading.Lock()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._numbers = itertools.count()
        self.expected_s: float | None = None  # how long a comparison runs, from the last ones that ended

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    def join(self, local: tuple[int, ...]) -> Ticket:
        """Take a place at the end of the line (`local`: the positions of panes that local weights
        answer); admitted at once when the rule allows."""
        ticket = Ticket(tuple(local), next(self._numbers), self.clock())
        with self._lock:
            self._waiting.append(ticket)
            self._admit_locked()
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
                if ticket.admitted_at is not None:
                    took = now - ticket.admitted_at
                    previous = self.expected_s
                    self.expected_s = took if previous is None else previous + DURATION_MEMORY * (took - previous)
            self._admit_locked()

    def tick(self, ticket: Ticket, position: int) -> None:
        """A local pane of a running comparison streamed a token (or a piece of text)."""
        times = ticket.ticks.setdefault(position, deque(maxlen=RATE_WINDOW))
        times.append(self.clock())

    def finish(self, ticket: Ticket, position: int) -> None:
        """A pane's stream ended: it no longer counts, and it may let the next comparison in."""
        with self._lock:
            ticket.finished.add(position)
            self._admit_locked()

    def slowest_rate(self) -> float | None:
        """Tokens/s of the slowest local pane streaming now; None while a new pane is still unmeasured."""
        with self._lock:
            return self._slowest_locked()[0]

    def _slowest_locked(self) -> tuple[float | None, int, bool]:
        """(slowest rate, local panes streaming, whether every one of them has streamed enough to measure)."""
        now, rates, streams, measured = self.clock(), [], 0, True
        for ticket in self._running:
            for position in ticket.local:
                if position in ticket.finished:
                    continue
                streams += 1
                times = ticket.ticks.get(position)
                if not times or len(times) < MEASURED_AFTER:
                    measured = False
                    continue
                # Over the window, up to now: a pane that stalls slows its own rate as it stalls.
                rates.append((len(times) - 1) / max(now - times[0], 1e-6))
        return (min(rates) if rates else None), streams, measured

    def _may_admit_locked(self, ticket: Ticket) -> bool:
        if not self._running:
            return True
        if len(self._running) >= self.max_running:
            return False
        if not ticket.local or not self.min_tokens_per_s:
            return True
        slowest, streams, measured = self._slowest_locked()
        if not measured:
            return False  # the newest admitted have not shown their speed yet
        if slowest is None:
            return True  # no local pane streams now
        return slowest * streams / (streams + len(ticket.local)) >= self.min_tokens_per_s

    def _admit_locked(self) -> None:
        while self._waiting and self._may_admit_locked(self._waiting[0]):
            ticket = self._waiting.pop(0)
            ticket.admitted_at = self.clock()
            self._running.append(ticket)
            ticket.admitted.set()

    def _estimate_locked(self, position: int) -> float | None:
        """Seconds until the waiter at `position` starts: running ones end at their expected time, and
        each end lets the next waiter in, who then runs as long as expected."""
        if self.expected_s is None:
            return None
        now = self.clock()
        ends = [max(0.0, (t.admitted_at or now) + self.expected_s - now) for t in self._running]
        heapq.heapify(ends)
        start = 0.0
        for _ in range(position):
            start = heapq.heappop(ends) if ends else start
            heapq.heappush(ends, start + self.expected_s)
        return start
