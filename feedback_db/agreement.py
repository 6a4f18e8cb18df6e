"""How far raters agree: Krippendorff's alpha over second opinions, and each rater's habits.

Alpha (Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011) is computed from the
coincidence matrix: each unit with m >= 2 values adds n_c * (n_k - [c == k]) / (m - 1) to cell (c, k);
alpha = 1 - (n - 1) * sum(o_ck * d_ck) / sum(n_c * n_k * d_ck), with d the nominal (c != k) or the
interval ((c - k)^2) metric. Units with one value are not pairable and add nothing.

- verdict (nominal): a unit is a comparison, its values the raters' pairwise choices. A choice names
  the stored position ("a" = the answer at position 0) whatever order the rater saw, so equal values
  mean the same answer won.
- scores (interval): a unit is one answer of a comparison, its values the raters' 1-5 scores.
Only ratings with a rater count (two ratings without one may be the same person); set-aside ratings
(rules.py) are left out unless asked for. Raters are shown by pseudonym, never by name.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Literal

import numpy as np
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from .rules import gold_accuracy
from .schema import AnswerJudgement, Comparison, Rater, Rating

Level = Literal["nominal", "interval"]
BATCH = 2_000


@dataclass(frozen=True)
class Alpha:
    """Krippendorff's alpha, or None with the reason; items are the pairable units, ratings their values."""

    level: Level
    value: float | None
    items: int
    ratings: int
    why_undefined: str | None = None


@dataclass(frozen=True)
class RaterAgreement:
    """One rater's counted ratings and habits; None where there is nothing to divide by."""

    rater: str  # the pseudonym (raters.id); "legacy-" and a digest for a rater stored before raters existed
    ratings: int
    majority_items: int  # comparisons where the other raters have a strict majority verdict
    majority_agreement: float | None  # the share of those where this rater gave that verdict
    gold_items: int
    gold_accuracy: float | None
    ab_votes: int
    shown_a_share: float | None  # among A/B votes, the share for the answer shown first (position bias)
    tie_share: float | None  # among pairwise votes
    median_seconds_to_vote: float | None


@dataclass(frozen=True)
class AgreementReport:
    """Agreement over the comparisons two or more raters rated, and what was left out."""

    lineup: str | None
    include_set_aside: bool
    ratings: int  # counted: with a rater, and not set aside (unless included)
    comparisons: int  # holding a counted rating
    repeated: int  # holding two or more counted ratings
    without_rater: int
    set_aside: int  # left out, or kept with include_set_aside
    set_aside_reasons: dict[str, int]
    verdict: Alpha
    scores: Alpha
    raters: tuple[RaterAgreement, ...]
    notes: tuple[str, ...]


class Coincidences:
    """Krippendorff's coincidence matrix, filled one unit at a time (only sums are kept)."""

    def __init__(self) -> None:
        self._cells: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
        self.items = 0
        self.values = 0

    def add(self, values: Sequence[Hashable]) -> None:
        """One unit's values (missing ones left out); a unit with fewer than two is not pairable."""
        m = len(values)
        if m < 2:
            return
        counts = Counter(values)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                self._cells[c, k] += n_c * (n_k - (c == k)) / (m - 1)
        self.items += 1
        self.values += m

    def alpha(self, level: Level, what: str = "values") -> Alpha:
        """Alpha at this level of measurement; None when no unit is pairable or nothing varies."""
        if not self.items:
            why = f"no item holds two {what} by different raters, so there is nothing to compare"
            return Alpha(level, None, 0, 0, why)
        domain = sorted({c for c, _ in self._cells})
        index = {value: i for i, value in enumerate(domain)}
        observed = np.zeros((len(domain), len(domain)))
        for (c, k), weight in self._cells.items():
            observed[index[c], index[k]] = weight
        if level == "nominal":
            distance = 1.0 - np.eye(len(domain))
        else:
            points = np.asarray(domain, dtype=float)
            distance = (points[:, None] - points[None, :]) ** 2
        n_c = observed.sum(axis=1)
        n = n_c.sum()
        expected = (np.outer(n_c, n_c) - np.diag(n_c)) / (n - 1)
        disagreement_by_chance = float((expected * distance).sum())
        if disagreement_by_chance == 0:
            why = f"every one of the {self.values} {what} is the same, so agreement cannot be told from chance"
            return Alpha(level, None, self.items, self.values, why)
        value = 1.0 - float((observed * distance).sum()) / disagreement_by_chance
        return Alpha(level, value, self.items, self.values)


def krippendorff_alpha(units: Iterable[Sequence[Hashable]], level: Level) -> Alpha:
    """Alpha over units, each the list of values its raters gave (missing values left out)."""
    coincidences = Coincidences()
    for values in units:
        coincidences.add(values)
    return coincidences.alpha(level)


@dataclass
class _Habits:
    """One rater's running counts while the ratings stream past."""

    ratings: int = 0
    pairwise: int = 0
    ties: int = 0
    ab_votes: int = 0
    shown_a: int = 0
    majority_items: int = 0
    majority_matched: int = 0
    seconds: list[float] = field(default_factory=list)


@dataclass
class _Tally:
    ratings: int = 0
    comparisons: int = 0
    repeated: int = 0
    without_rater: int = 0
    set_aside: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    habits: dict[str, _Habits] = field(default_factory=lambda: defaultdict(_Habits))


def agreement_of(session: Session, *, lineup: str | None = None, include_set_aside: bool = False) -> AgreementReport:
    """The agreement report over every comparison (or one lineup's); run it in `Database.snapshot()`.

    Ratings stream past in comparison order, so memory holds one comparison's ratings and per-rater
    counts. Gold accuracy is rules.gold_accuracy's, over every known-answer item, as the gold rule sees it.
    """
    gold = gold_accuracy(session)  # before the streams: one open cursor at a time
    tally, verdicts = _Tally(), Coincidences()
    for _, rows in groupby(_stream(session, _ratings_query(lineup)), key=lambda row: row.comparison_id):
        _add_comparison(list(rows), include_set_aside, tally, verdicts)
    scores = Coincidences()
    for _, rows in groupby(_stream(session, _scores_query(lineup)), key=lambda row: row.response_id):
        scores.add([row.score for row in rows if row.rater is not None and (include_set_aside or not row.set_aside)])
    return AgreementReport(
        lineup=lineup,
        include_set_aside=include_set_aside,
        ratings=tally.ratings,
        comparisons=tally.comparisons,
        repeated=tally.repeated,
        without_rater=tally.without_rater,
        set_aside=tally.set_aside,
        set_aside_reasons=dict(sorted(tally.reasons.items())),
        verdict=verdicts.alpha("nominal", "pairwise verdicts"),
        scores=scores.alpha("interval", "scores"),
        raters=_raters(tally.habits, gold),
        notes=_notes(tally, include_set_aside),
    )


def _ratings_query(lineup: str | None) -> Select[Any]:
    query = (
        select(
            Rating.comparison_id,
            Rating.kind,
            Rating.choice,
            Rating.rater,
            Rating.shown_order,
            Rating.seconds_to_vote,
            Rating.set_aside,
            Rater.id.label("registered"),
        )
        .join(Comparison, Comparison.id == Rating.comparison_id)
        .outerjoin(Rater, Rater.id == Rating.rater)
        .order_by(Rating.comparison_id, Rating.id)
    )
    return query.where(Comparison.lineup == lineup) if lineup is not None else query


def _scores_query(lineup: str | None) -> Select[Any]:
    query = (
        select(AnswerJudgement.response_id, AnswerJudgement.score, Rating.rater, Rating.set_aside)
        .join(Rating, Rating.id == AnswerJudgement.rating_id)
        .join(Comparison, Comparison.id == Rating.comparison_id)
        .where(Rating.kind == "scores", AnswerJudgement.score.is_not(None))
        .order_by(AnswerJudgement.response_id, Rating.id)
    )
    return query.where(Comparison.lineup == lineup) if lineup is not None else query


def _stream(session: Session, query: Select[Any]) -> Iterator[Any]:
    # yield_per: PostgreSQL reads through a server-side cursor, BATCH rows at a time.
    yield from session.connection().execute(query.execution_options(yield_per=BATCH))


def _add_comparison(rows: list[Any], include_set_aside: bool, tally: _Tally, verdicts: Coincidences) -> None:
    """Count one comparison's ratings; its pairwise verdicts go to alpha and to each rater's majority score."""
    counted = []
    for row in rows:
        if row.set_aside:
            tally.set_aside += 1
            tally.reasons.update(row.set_aside)
            if not include_set_aside:
                continue
        if row.rater is None:
            tally.without_rater += 1
            continue
        counted.append(row)
    if not counted:
        return
    tally.ratings += len(counted)
    tally.comparisons += 1
    tally.repeated += len(counted) >= 2
    pairwise = [row for row in counted if row.kind == "pairwise"]
    verdicts.add([row.choice for row in pairwise])
    for row in counted:
        tally.kinds[row.kind] += 1
        habits = tally.habits[_pseudonym(row)]
        habits.ratings += 1
        if row.seconds_to_vote is not None:
            habits.seconds.append(row.seconds_to_vote)
    for row in pairwise:
        _add_vote(tally.habits[_pseudonym(row)], row, [other.choice for other in pairwise if other is not row])


def _add_vote(habits: _Habits, row: Any, others: list[str]) -> None:
    habits.pairwise += 1
    habits.ties += row.choice == "tie"
    if row.choice in ("a", "b"):
        won = "ab".index(row.choice)  # the stored position that won
        shown = row.shown_order or [0, 1]  # shown_order[0] is the stored position shown as "A"
        habits.ab_votes += 1
        habits.shown_a += shown[0] == won
    if others:
        top, count = Counter(others).most_common(1)[0]
        if 2 * count > len(others):  # a strict majority of the other raters (leave-one-out)
            habits.majority_items += 1
            habits.majority_matched += row.choice == top


def _pseudonym(row: Any) -> str:
    """The rater's raters.id; a rater string stored before revision 0006 may be a name, so it is hashed."""
    if row.registered is not None:
        return row.registered
    return "legacy-" + hashlib.sha256(row.rater.encode("utf-8")).hexdigest()[:12]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _raters(habits: dict[str, _Habits], gold: dict[str, tuple[int, int]]) -> tuple[RaterAgreement, ...]:
    """Every counted rater, most ratings first."""
    rows = []
    for rater, h in sorted(habits.items(), key=lambda item: (-item[1].ratings, item[0])):
        seen, right = gold.get(rater, (0, 0))
        rows.append(
            RaterAgreement(
                rater=rater,
                ratings=h.ratings,
                majority_items=h.majority_items,
                majority_agreement=_share(h.majority_matched, h.majority_items),
                gold_items=seen,
                gold_accuracy=_share(right, seen),
                ab_votes=h.ab_votes,
                shown_a_share=_share(h.shown_a, h.ab_votes),
                tie_share=_share(h.ties, h.pairwise),
                median_seconds_to_vote=statistics.median(h.seconds) if h.seconds else None,
            )
        )
    return tuple(rows)


def _notes(tally: _Tally, include_set_aside: bool) -> tuple[str, ...]:
    notes = []
    if tally.without_rater:
        notes.append(
            f"{tally.without_rater} ratings without a rater are left out: two of them may come from one person."
        )
    if tally.set_aside:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(tally.reasons.items()))
        verb = "are kept (--include-set-aside)" if include_set_aside else "are left out"
        notes.append(f"{tally.set_aside} ratings set aside {verb}; reasons: {reasons}.")
    if tally.kinds["ranking"]:
        notes.append(f"{tally.kinds['ranking']} ranking ratings count for their raters but in neither alpha.")
    return tuple(notes)


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def markdown(report: AgreementReport) -> str:
    """The report as Markdown, for the admin tab and the command line."""
    scope = f" in lineup {report.lineup}" if report.lineup else ""
    lines = [
        f"**Agreement**{scope}: {report.ratings} ratings on {report.comparisons} comparisons, "
        f"{report.repeated} of them rated by two or more raters.",
        "",
        "| | alpha | items | ratings |",
        "|---|---|---|---|",
    ]
    for name, alpha in (("Verdict (nominal)", report.verdict), ("Scores (interval)", report.scores)):
        lines.append(f"| {name} | {_number(alpha.value)} | {alpha.items} | {alpha.ratings} |")
    lines.append("")
    for name, alpha in (("Verdict", report.verdict), ("Scores", report.scores)):
        if alpha.why_undefined:
            lines.append(f"- {name} alpha is undefined: {alpha.why_undefined}.")
    lines += [f"- {note}" for note in report.notes]
    if report.raters:
        lines += [
            "",
            "| Rater | Ratings | Agrees with majority | Gold accuracy | Shown A | Ties | Median s to vote |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in report.raters:
            lines.append(
                f"| `{r.rater}` | {r.ratings} | {_percent(r.majority_agreement)} of {r.majority_items} "
                f"| {_percent(r.gold_accuracy)} of {r.gold_items} | {_percent(r.shown_a_share)} of {r.ab_votes} "
                f"| {_percent(r.tie_share)} | {_number(r.median_seconds_to_vote, 1)} |"
            )
    return "\n".join(lines) + "\n"
