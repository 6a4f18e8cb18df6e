"""Reading rated comparisons back as plain data, streamed, for the exports and the leaderboard.

Ratings are read a page at a time in (created_at, id) order, by keyset: each page continues after the
last rating of the one before, a range scan of the index ix_ratings_created_at_id, with a LIMIT. A
second query fetches the answers of that page's ratings by primary key. So memory holds one page, and
neither SQLite nor PostgreSQL sorts the whole table before the first row, whatever its size. Run it
in `Database.snapshot()`, so that every page sees the same data.

Ratings set aside (rules.py: a non-empty list of reasons) are left out unless the filter includes
them; a `SetAsideTally` passed in counts them, by reason, as the pages go by, so every consumer can
say how many it left out and why. `iter_rated_by_comparison` reads the same ratings grouped by
comparison (pages of comparisons by keyset on ix_comparisons_created_at), for second opinions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, select, tuple_
from sqlalchemy.orm import Session

from .pairs import Decomposition, decompose
from .records import SET_ASIDE_REASONS, SetAsideReason, Strength
from .schema import AnswerJudgement, Comparison, Rater, Rating, Response

BATCH_RATINGS = 1_000
BATCH_COMPARISONS = 500
# How a person reads each reason in a summary line ("3 ratings set aside: 2 too fast, 1 revoked").
REASON_WORDS: dict[str, str] = {
    "identity_leak": "identity leak",
    "errored": "errored",
    "too_fast": "too fast",
    "gold": "below gold accuracy",
    "revoked": "revoked",
}


@dataclass(frozen=True)
class RatingFilter:
    """Which ratings to read: a time range (half open, [since, until)), a lineup, blind ones only.

    Set-aside ratings are left out unless `include_set_aside`; `overlooked` names reasons that do not
    leave a rating out (the exports' include_errors overlooks "errored").
    """

    since: datetime | None = None
    until: datetime | None = None
    lineup: str | None = None
    blind_only: bool = False
    include_set_aside: bool = False
    overlooked: frozenset[SetAsideReason] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.overlooked) - set(SET_ASIDE_REASONS))
        if unknown:
            raise ValueError(f"unknown set-aside reasons {unknown}; the reasons are {', '.join(SET_ASIDE_REASONS)}")
        object.__setattr__(self, "overlooked", frozenset(self.overlooked))

    def reasons_against(self, stored: Iterable[str] | None) -> tuple[str, ...]:
        """The stored reasons that set a rating aside under this filter (empty: it counts)."""
        return tuple(reason for reason in stored or () if reason not in self.overlooked)


@dataclass(frozen=True)
class SetAside:
    """Set-aside ratings a read met: how many, and per reason (a rating with two reasons counts under both).

    `included`: they were read anyway (--include-set-aside); otherwise they were left out.
    """

    ratings: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    included: bool = False

    def line(self) -> str:
        """ "12 ratings set aside: 7 too fast, 5 identity leak"; empty when there were none."""
        if not self.ratings:
            return ""
        ordered = sorted(self.reasons.items(), key=lambda item: (-item[1], SET_ASIDE_REASONS.index(item[0])))
        why = ", ".join(f"{count} {REASON_WORDS[reason]}" for reason, count in ordered)
        plural = "" if self.ratings == 1 else "s"
        if self.included:
            return f"{self.ratings} set-aside rating{plural} included: {why}"
        return f"{self.ratings} rating{plural} set aside: {why}"


@dataclass
class SetAsideTally:
    """Filled while ratings stream: the set-aside ones met; `frozen()` gives the SetAside."""

    ratings: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, reasons: Sequence[str]) -> None:
        self.ratings += 1
        self.reasons.update(set(reasons))

    def frozen(self, included: bool = False) -> SetAside:
        return SetAside(self.ratings, dict(self.reasons), included)


@dataclass(frozen=True)
class RatedAnswer:
    """One answer of a rated comparison with what the rating said about it."""

    response_id: str
    position: int
    contender: str
    errored: bool
    score: int | None
    rank: int | None
    unsafe: bool
    unsafe_reason: str | None
    text: str = ""  # empty unless read with_text
    messages: tuple[dict[str, str], ...] = ()  # the conversation this answer replied to


@dataclass(frozen=True)
class RatedComparison:
    """A rating with its comparison's answers, by pane position.

    `rater` is the rater's pseudonym (raters.id), or None: no rater, or a string stored before revision
    0006 that names no rater (it may be a person's name, so it is never read back).
    `set_aside` holds the stored reasons it does not count (empty: it counts).
    """

    comparison_id: str
    rating_id: str
    rated_at: datetime
    lineup: str
    mode: str
    blind: bool
    kind: str
    choice: str | None
    strength: Strength | None
    rater: str | None
    answers: tuple[RatedAnswer, ...]
    visitor: str | None = None  # the asker's salted address hash; exported only when asked for
    set_aside: tuple[str, ...] = ()

    def answer(self, position: int) -> RatedAnswer:
        """The answer shown at pane `position`."""
        for answer in self.answers:
            if answer.position == position:
                return answer
        raise KeyError(f"comparison {self.comparison_id} has no answer at position {position}")

    def decomposition(self) -> Decomposition:
        """The pairwise outcomes this rating says (pairs.py)."""
        return decompose(
            self.kind,
            self.choice,
            self.strength,
            scores={a.position: a.score for a in self.answers if a.score is not None},
            ranks={a.position: a.rank for a in self.answers if a.rank is not None},
        )


def iter_rated(
    session: Session,
    where: RatingFilter = RatingFilter(),
    *,
    with_text: bool = True,
    batch_ratings: int = BATCH_RATINGS,
    set_aside: SetAsideTally | None = None,
) -> Iterator[RatedComparison]:
    """Every rated comparison that `where` selects, oldest rating first, `batch_ratings` at a time.

    with_text=False leaves out answer texts and conversations (the leaderboard needs neither).
    `set_aside` (if given) counts the set-aside ratings met, left out or (include_set_aside) not.
    """
    after: tuple[datetime, str] | None = None
    while True:
        # Core, not ORM, execution: plain rows; the ORM layer would only cost time here.
        page = session.connection().execute(_ratings_page(where, after, batch_ratings)).all()
        if not page:
            return
        # The page's bound is its last rating read, kept or not, so set-aside ratings never stall it.
        after = (page[-1].created_at, page[-1].rating_id)
        kept = _counted(page, where, set_aside)
        answers = _answers_of(session, [rating.rating_id for rating in kept], with_text)
        for rating in kept:
            yield _rated(rating, answers[rating.rating_id])


def iter_rated_by_comparison(
    session: Session,
    where: RatingFilter = RatingFilter(),
    *,
    with_text: bool = True,
    batch_comparisons: int = BATCH_COMPARISONS,
    set_aside: SetAsideTally | None = None,
) -> Iterator[tuple[RatedComparison, ...]]:
    """The ratings `where` selects, grouped by comparison: oldest comparison first, its ratings oldest first.

    Pages of `batch_comparisons` rated comparisons by keyset on (created_at, id); each page's ratings and
    answers come by comparison id. Comparisons whose every rating is filtered out give no group.
    """
    after: tuple[datetime, str] | None = None
    while True:
        comparisons = session.connection().execute(_comparisons_page(where, after, batch_comparisons)).all()
        if not comparisons:
            return
        after = (comparisons[-1].created_at, comparisons[-1].id)
        ids = [comparison.id for comparison in comparisons]
        ratings = session.connection().execute(_ratings_of(where, ids)).all()
        kept = _counted(ratings, where, set_aside)
        answers = _answers_of(session, [rating.rating_id for rating in kept], with_text)
        groups: dict[str, list[RatedComparison]] = defaultdict(list)
        for rating in kept:
            groups[rating.comparison_id].append(_rated(rating, answers[rating.rating_id]))
        for comparison_id in ids:
            if groups[comparison_id]:
                yield tuple(groups[comparison_id])


def set_aside_counts(session: Session, batch: int = BATCH_RATINGS) -> tuple[int, SetAside]:
    """Every stored rating's reasons: (how many ratings are stored, the set-aside ones by reason)."""
    tally, total = SetAsideTally(), 0
    for reasons in session.execute(select(Rating.set_aside).execution_options(yield_per=batch)).scalars():
        total += 1
        if reasons:
            tally.add(reasons)
    return total, tally.frozen()


def _counted(rows: Sequence[Any], where: RatingFilter, tally: SetAsideTally | None) -> list[Any]:
    """The rows that count under `where`; the set-aside ones are added to `tally` (kept if included)."""
    kept = []
    for row in rows:
        reasons = where.reasons_against(row.set_aside)
        if reasons and tally is not None:
            tally.add(reasons)
        if not reasons or where.include_set_aside:
            kept.append(row)
    return kept


def _rating_columns() -> Select[Any]:
    """A rating with its comparison, and its rater's pseudonym when the stored rater names one."""
    return (
        select(
            Rating.id.label("rating_id"),
            Rating.comparison_id,
            Rating.created_at,
            Rating.kind,
            Rating.choice,
            Rating.strength,
            Rating.blind,
            Rater.id.label("rater"),
            Rating.set_aside,
            Comparison.lineup,
            Comparison.mode,
            Comparison.visitor,
        )
        .join(Comparison, Comparison.id == Rating.comparison_id)
        .outerjoin(Rater, Rater.id == Rating.rater)
    )


def _filtered(query: Select[Any], where: RatingFilter) -> Select[Any]:
    if where.since is not None:
        query = query.where(Rating.created_at >= where.since)
    if where.until is not None:
        query = query.where(Rating.created_at < where.until)
    if where.lineup is not None:
        query = query.where(Comparison.lineup == where.lineup)
    if where.blind_only:
        query = query.where(Rating.blind.is_(True))
    return query


def _ratings_page(where: RatingFilter, after: tuple[datetime, str] | None, limit: int) -> Select[Any]:
    """The next `limit` ratings after `after` in (created_at, id) order: a range scan of one index."""
    query = _rating_columns().order_by(Rating.created_at, Rating.id).limit(limit)  # the id breaks ties
    if after is not None:
        query = query.where(tuple_(Rating.created_at, Rating.id) > tuple_(*after))
    return _filtered(query, where)


def _comparisons_page(where: RatingFilter, after: tuple[datetime, str] | None, limit: int) -> Select[Any]:
    """The next `limit` comparisons holding a rating, after `after` in (created_at, id) order."""
    query = (
        select(Comparison.id, Comparison.created_at)
        # EXISTS probes the unique (comparison_id, rater) index; unrated comparisons never fill a page.
        .where(exists().where(Rating.comparison_id == Comparison.id))
        .order_by(Comparison.created_at, Comparison.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Comparison.created_at, Comparison.id) > tuple_(*after))
    if where.lineup is not None:
        query = query.where(Comparison.lineup == where.lineup)
    return query


def _ratings_of(where: RatingFilter, comparison_ids: Sequence[str]) -> Select[Any]:
    """The ratings of one page of comparisons that `where` selects, oldest first within each."""
    query = _rating_columns().where(Rating.comparison_id.in_(comparison_ids))
    return _filtered(query, where).order_by(Rating.comparison_id, Rating.created_at, Rating.id)


def _answers_of(session: Session, rating_ids: Sequence[str], with_text: bool) -> dict[str, list[RatedAnswer]]:
    """Rating id -> its answers by position, for one page of ratings."""
    answers: dict[str, list[RatedAnswer]] = {rating_id: [] for rating_id in rating_ids}
    if not rating_ids:
        return answers
    columns: list[Any] = [
        AnswerJudgement.rating_id,
        Response.id.label("response_id"),
        Response.position,
        Response.contender,
        Response.finish_reason,
        AnswerJudgement.score,
        AnswerJudgement.rank,
        AnswerJudgement.unsafe,
        AnswerJudgement.unsafe_reason,
    ]
    if with_text:
        columns += [Response.text, Response.messages]
    query = (
        select(*columns)
        .join(Response, Response.id == AnswerJudgement.response_id)
        .where(AnswerJudgement.rating_id.in_(rating_ids))
        .order_by(AnswerJudgement.rating_id, Response.position)
    )
    for row in session.connection().execute(query):
        answers[row.rating_id].append(
            RatedAnswer(
                response_id=row.response_id,
                position=row.position,
                contender=row.contender,
                errored=row.finish_reason == "error",
                score=row.score,
                rank=row.rank,
                unsafe=row.unsafe,
                unsafe_reason=row.unsafe_reason,
                text=row.text if with_text else "",
                messages=tuple({"role": m["role"], "content": m["content"]} for m in row.messages) if with_text else (),
            )
        )
    return answers


def _rated(rating: Any, answers: list[RatedAnswer]) -> RatedComparison:
    return RatedComparison(
        comparison_id=rating.comparison_id,
        rating_id=rating.rating_id,
        rated_at=rating.created_at,
        lineup=rating.lineup,
        mode=rating.mode,
        blind=rating.blind,
        kind=rating.kind,
        choice=rating.choice,
        strength=rating.strength,
        rater=rating.rater,
        answers=tuple(answers),
        visitor=rating.visitor,
        set_aside=tuple(rating.set_aside or ()),
    )
