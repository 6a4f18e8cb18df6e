"""The review queue: stored comparisons a rater did not ask and has not rated, for a second opinion.

The next item is the comparison nearest to `overlap` ratings (most ratings below it, oldest first), so
each comparison is brought up to the overlap before any goes beyond it; once every comparison has it,
the least rated come first. Known-answer (gold) items are asked for apart (`gold=True`). The query is a
scan of ix_comparisons_review in its order, stopping at the first comparison this rater may review.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from .schema import Comparison, Rating, Response


@dataclass(frozen=True)
class ReviewAnswer:
    """One stored answer as a reviewer sees it: the conversation it replied to, and its text."""

    position: int
    messages: tuple[dict[str, str], ...]
    text: str
    errored: bool


def next_to_review(session: Session, rater: str, *, overlap: int, gold: bool = False) -> str | None:
    """The id of the comparison `rater` should review next, or None when there is none."""
    reviewable = (
        select(Comparison.id)
        .where(
            Comparison.complete_at.is_not(None),
            Comparison.interrupted_at.is_(None),
            Comparison.gold_position.is_not(None) if gold else Comparison.gold_position.is_(None),
            (Comparison.asked_by.is_(None)) | (Comparison.asked_by != rater),
            ~exists().where(Rating.comparison_id == Comparison.id, Rating.rater == rater),
            exists().where(Response.comparison_id == Comparison.id, Response.finish_reason != "error"),
        )
        .limit(1)
    )
    below = session.scalar(
        reviewable.where(Comparison.n_ratings < overlap).order_by(Comparison.n_ratings.desc(), Comparison.created_at)
    )
    if below is not None:
        return below
    # Every comparison has its overlap: the least rated next (the index read backwards: newest first).
    return session.scalar(reviewable.order_by(Comparison.n_ratings, Comparison.created_at.desc()))


def answers_to_review(session: Session, comparison_id: str) -> list[ReviewAnswer]:
    """A comparison's answers by stored position, with the conversation each replied to."""
    query = (
        select(Response.position, Response.messages, Response.text, Response.finish_reason)
        .where(Response.comparison_id == comparison_id)
        .order_by(Response.position)
    )
    return [
        ReviewAnswer(
            row.position,
            tuple({"role": m["role"], "content": m["content"]} for m in row.messages),
            row.text,
            row.finish_reason == "error",
        )
        for row in session.execute(query)
    ]
