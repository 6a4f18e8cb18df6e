"""Second opinions: stored comparisons shown blind to raters who did not ask them, in a fresh order each.

No generation: the answers come from the database, so reviewing is quick even while the models are
busy. The order a rater saw is stored with the rating; the vote, given by screen position, is stored by
the answers' stored positions like every other rating. Known-answer (gold) items come at the policy's
gold rate, looking like any other item.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

from feedback_db import Database, RatingRecord, add_rating
from feedback_db.review import ReviewAnswer, answers_to_review, next_to_review
from feedback_db.store import RatingRefused
from playground.conversation import Conversation
from playground.errors import PlaygroundError
from playground.raters import Raters
from playground.voting import Vote

NOTHING_TO_REVIEW = "There is nothing for you to review right now: every stored comparison has your opinion."
STALE_ITEM = "this form belongs to an item that is no longer on your screen; press Next for the item to rate"


@dataclass(frozen=True)
class ReviewItem:
    """What one rater is shown: the answers in screen order, and which stored position each is."""

    comparison_id: str
    answers: tuple[ReviewAnswer, ...]  # in the order shown
    token: str  # a rating must carry it: a form left from an earlier item is refused
    shown_at: float  # time.monotonic(): the seconds to vote count from here

    @property
    def shown_order(self) -> tuple[int, ...]:
        return tuple(answer.position for answer in self.answers)


class Reviewer:
    """Hands out review items and stores the ratings given to them."""

    def __init__(self, database: Database, raters: Raters, rng: random.Random | None = None) -> None:
        self.database, self.raters, self.rng = database, raters, rng or random.SystemRandom()

    def next(self, conversation: Conversation, visitor: str | None = None) -> ReviewItem | None:
        """The next item for this session's rater (None: nothing left), now on its review screen."""
        self.raters.check_terms(conversation.seat)
        seat = conversation.seat = self.raters.seat_for(conversation.seat, visitor)
        if not self.raters.may_rate(seat):
            raise PlaygroundError(self.raters.not_a_rater())
        overlap, gold_rate = self.raters.policy.overlap, self.raters.policy.gold_rate
        with self.database.snapshot() as db:
            found = None
            if gold_rate and self.rng.random() < gold_rate:
                found = next_to_review(db, seat.id, overlap=overlap, gold=True)
            found = found or next_to_review(db, seat.id, overlap=overlap)
            answers = list(answers_to_review(db, found)) if found else []
        if not found:
            conversation.review = None
            return None
        self.rng.shuffle(answers)  # a fresh order for each rater: position bias averages out
        conversation.review = ReviewItem(found, tuple(answers), uuid.uuid4().hex, time.monotonic())
        return conversation.review

    def rate(self, conversation: Conversation, vote: Vote, token: str | None) -> str:
        """Store the rating of the item on screen (`vote` by screen position); a thank-you."""
        item = conversation.review
        if item is None or token != item.token:
            raise PlaygroundError(STALE_ITEM)
        fields = self.raters.rating_fields(conversation.seat)
        n = len(item.answers)
        if (n == 2) != (vote.kind == "pairwise"):
            raise PlaygroundError(
                "two answers take a verdict" if n == 2 else "more answers take a score or a rank each"
            )
        stored = item.shown_order  # screen position -> stored position
        choice = vote.choice
        if choice in ("a", "b"):
            choice = "ab"[stored["ab".index(choice)]]
        try:
            record = RatingRecord(
                comparison_id=item.comparison_id,
                kind=vote.kind,
                choice=choice,
                strength=vote.strength,
                scores={stored[p]: s for p, s in vote.scores.items()},
                ranks={stored[p]: r for p, r in vote.ranks.items()},
                unsafe={stored[p]: reason for p, reason in vote.unsafe.items()},
                comment=(vote.comment or "").strip() or None,
                blind=True,
                source="review",
                shown_order=stored,
                seconds_to_vote=max(0.0, time.monotonic() - item.shown_at),
                **fields,
            )
            with self.database.session() as db:
                add_rating(db, record)
        except (ValueError, RatingRefused) as error:
            raise PlaygroundError(str(error)) from None
        conversation.review = None
        return "Thank you: your rating is stored. Press Next for another."
