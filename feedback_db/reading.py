"""Reading rated comparisons back as plain data, streamed, for the exports and the leaderboard.

Ratings are read a page at a time in (created_at, id) order, by keyset: each page continues after the
last rating of the one before, a range scan of the index ix_ratings_created_at_id, with a LIMIT. A
second query fetches the answers of that page's ratings by primary key. So memory holds one page, and
neither SQLite nor PostgreSQL sorts the whole table before the first row, whatever its size. Run it
in `Database.snapshot()`, so that every page sees the same data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import Session

from .pairs import Decomposition, decompose
from .records import Strength
from .schema import AnswerJudgement, Comparison, Rating, Response

BATCH_RATINGS = 1_000


@dataclass(frozen=True)
class RatingFilter:
    """Which ratings to read: a time range (half open, [since, until)), a lineup, blind ones only."""

    since: datetime | None = None
    until: datetime | None = None
    lineup: str | None = None
    blind_only: bool = False


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
    """A rating with its comparison's answers, by pane position."""

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
) -> Iterator[RatedComparison]:
    """Every rated comparison that `where` selects, oldest rating first, `batch_ratings` at a time.

    with_text=False leaves out answer texts and conversations (the leaderboard needs neither).
    """
    after: tuple[datetime, str] | None = None
    while True:
        # Core, not ORM, execution: plain rows; the ORM layer would only cost time here.
        page = session.connection().execute(_ratings_page(where, after, batch_ratings)).all()
        if not page:
            return
        answers = _answers_of(session, [rating.rating_id for rating in page], with_text)
        for rating in page:
            yield _rated(rating, answers[rating.rating_id], with_text)
        after = (page[-1].created_at, page[-1].rating_id)


def _ratings_page(where: RatingFilter, after: tuple[datetime, str] | None, limit: int) -> Select[Any]:
    """The next `limit` ratings after `after` in (created_at, id) order: a range scan of one index."""
    query = (
        select(
            Rating.id.label("rating_id"),
            Rating.comparison_id,
            Rating.created_at,
            Rating.kind,
            Rating.choice,
            Rating.strength,
            Rating.blind,
            Rating.rater,
            Comparison.lineup,
            Comparison.mode,
            Comparison.visitor,
        )
        .join(Comparison, Comparison.id == Rating.comparison_id)
        .order_by(Rating.created_at, Rating.id)  # the id breaks ties between equal timestamps
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Rating.created_at, Rating.id) > tuple_(*after))
    if where.since is not None:
        query = query.where(Rating.created_at >= where.since)
    if where.until is not None:
        query = query.where(Rating.created_at < where.until)
    if where.lineup is not None:
        query = query.where(Comparison.lineup == where.lineup)
    if where.blind_only:
        query = query.where(Rating.blind.is_(True))
    return query


def _answers_of(session: Session, rating_ids: Sequence[str], with_text: bool) -> dict[str, list[RatedAnswer]]:
    """Rating id -> its answers by position, for one page of ratings."""
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
    answers: dict[str, list[RatedAnswer]] = {rating_id: [] for rating_id in rating_ids}
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


def _rated(rating: Any, answers: list[RatedAnswer], with_text: bool) -> RatedComparison:
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
    )
