"""How the app has been used, as plain rows for the admin tab's plots and the /metrics endpoint.

Read from the database, so the numbers survive a restart and count every app process that shares it.
Times are bucketed in Python, in UTC: the same on SQLite and PostgreSQL, and a window of a few weeks
is a few timestamps per comparison. Percentiles are computed here too (SQLite has none).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .records import SET_ASIDE_REASONS
from .schema import Comparison, Rating, Response

HOURS, DAYS = 48, 30  # the windows the admin tab shows


@dataclass(frozen=True)
class RatingCounts:
    """Ratings stored, and the set-aside ones by reason (one with two reasons counts under both)."""

    stored: int
    set_aside: int
    reasons: dict[str, int] = field(default_factory=dict)  # every reason, 0 for those not met


def rating_counts(session: Session) -> RatingCounts:
    """One COUNT grouped by the stored reasons: a few groups however many ratings there are."""
    rows = session.execute(select(Rating.set_aside, func.count()).group_by(Rating.set_aside)).all()
    reasons: Counter[str] = Counter(dict.fromkeys(SET_ASIDE_REASONS, 0))
    stored = set_aside = 0
    for listed, count in rows:
        stored += count
        if listed:  # null, JSON null and [] all mean: it counts
            set_aside += count
            for reason in set(listed):
                reasons[reason] += count
    return RatingCounts(stored, set_aside, dict(reasons))


@dataclass(frozen=True)
class HourCount:
    hour: datetime  # the hour's start, UTC
    comparisons: int


@dataclass(frozen=True)
class DayRatings:
    day: date
    counted: int
    set_aside: int


@dataclass(frozen=True)
class DayLatency:
    """One contender's time to first token on one day: median and 95th percentile over its answers."""

    day: date
    contender: str
    p50_s: float
    p95_s: float
    answers: int


@dataclass(frozen=True)
class DayShare:
    """Verdicts with a definite choice on one day, and how many chose the answer shown first (A)."""

    day: date
    first: int
    verdicts: int

    @property
    def share(self) -> float:
        return self.first / self.verdicts


@dataclass(frozen=True)
class Activity:
    """Everything the admin tab plots; each list in time order, empty when nothing happened."""

    now: datetime
    comparisons_per_hour: list[HourCount]  # every hour of the window, 0 included
    ratings_per_day: list[DayRatings]  # every day of the window, 0 included
    first_token: list[DayLatency]  # days and contenders with answers only
    first_choice: list[DayShare]  # days with verdicts only

    @property
    def empty(self) -> bool:
        return not any(h.comparisons for h in self.comparisons_per_hour) and not any(
            d.counted or d.set_aside for d in self.ratings_per_day
        )


def activity_of(session: Session, now: datetime | None = None, hours: int = HOURS, days: int = DAYS) -> Activity:
    """The last `hours` of comparisons and the last `days` of ratings, latencies and choices."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    first_day = now.date() - timedelta(days=days - 1)
    since = datetime.combine(first_day, datetime.min.time(), timezone.utc)
    return Activity(
        now=now,
        comparisons_per_hour=_per_hour(session, first_hour, hours),
        ratings_per_day=_ratings_per_day(session, since, days),
        first_token=_first_token(session, since),
        first_choice=_first_choice(session, since),
    )


def _per_hour(session: Session, first: datetime, hours: int) -> list[HourCount]:
    counts = Counter(
        t.replace(minute=0, second=0, microsecond=0)
        for t in _column(session, select(Comparison.created_at).where(Comparison.created_at >= first))
    )
    return [HourCount(h, counts[h]) for h in (first + timedelta(hours=i) for i in range(hours))]


def _ratings_per_day(session: Session, since: datetime, days: int) -> list[DayRatings]:
    counted: Counter[date] = Counter()
    aside: Counter[date] = Counter()
    query = select(Rating.created_at, Rating.set_aside).where(Rating.created_at >= since)
    for created, reasons in session.execute(query.execution_options(yield_per=2_000)):
        (aside if reasons else counted)[created.date()] += 1
    first = since.date()
    return [DayRatings(d, counted[d], aside[d]) for d in (first + timedelta(days=i) for i in range(days))]


def _first_token(session: Session, since: datetime) -> list[DayLatency]:
    seconds: dict[tuple[date, str], list[float]] = defaultdict(list)
    query = select(Response.created_at, Response.contender, Response.time_to_first_token_s).where(
        Response.created_at >= since, Response.time_to_first_token_s.is_not(None)
    )
    for created, contender, ttft in session.execute(query.execution_options(yield_per=2_000)):
        seconds[(created.date(), contender)].append(ttft)
    rows = []
    for (day, contender), values in sorted(seconds.items()):
        p50, p95 = np.percentile(values, [50, 95])  # linear between the nearest answers
        rows.append(DayLatency(day, contender, float(p50), float(p95), len(values)))
    return rows


def _first_choice(session: Session, since: datetime) -> list[DayShare]:
    """Verdicts for A or B that count (not set aside); "first" is the answer the rater saw on the left,
    which the Review tab may have shown in another order than stored (`shown_order`)."""
    first: Counter[date] = Counter()
    verdicts: Counter[date] = Counter()
    query = select(Rating.created_at, Rating.choice, Rating.shown_order, Rating.set_aside).where(
        Rating.created_at >= since, Rating.kind == "pairwise", Rating.choice.in_(("a", "b"))
    )
    for created, choice, shown, reasons in session.execute(query.execution_options(yield_per=2_000)):
        if reasons:
            continue
        chosen = 0 if choice == "a" else 1  # stored positions
        left = shown[0] if shown else 0
        verdicts[created.date()] += 1
        first[created.date()] += chosen == left
    return [DayShare(d, first[d], verdicts[d]) for d in sorted(verdicts)]


def _column(session: Session, query) -> Iterable[datetime]:
    return session.execute(query.execution_options(yield_per=2_000)).scalars()
