"""Ratings set aside with a reason: nothing is deleted, each rating carries why it does not count.

The reasons (records.SetAsideReason), recomputed from the rules whenever they change:
- identity_leak: a blind rating of a comparison where an answer names a contender's model or maker
  (the lineup's identity words, matched as whole words, any case), as FastChat's battle cleaning does;
- errored: an answer of the comparison failed;
- too_fast: the vote came sooner than `min_seconds_to_vote` after the last answer finished;
- gold: the rater's accuracy on known-answer items is below `min_gold_accuracy`, after at least
  `min_gold_items` of them;
- revoked: the rater's invite was revoked.
The rules in force are stored (one row of rating_rules), so the CLI's exports and leaderboard read the
same reasons as the app that computed them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .schema import AnswerJudgement, Comparison, Rater, Rating, RatingRules, Response, utc_now

MIN_GOLD_ITEMS = 5
BATCH = 2_000


@dataclass(frozen=True)
class Rules:
    """What sets a rating aside; the defaults set aside errored answers and revoked raters only."""

    identity_words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # contender -> words
    min_seconds_to_vote: float | None = None
    min_gold_accuracy: float | None = None
    min_gold_items: int = MIN_GOLD_ITEMS

    def __post_init__(self) -> None:
        words = {
            str(c): tuple(sorted({str(w).strip() for w in ws if str(w).strip()}))
            for c, ws in dict(self.identity_words).items()
        }
        object.__setattr__(self, "identity_words", {c: ws for c, ws in sorted(words.items()) if ws})
        if self.min_seconds_to_vote is not None and not self.min_seconds_to_vote >= 0:
            raise ValueError(f"min_seconds_to_vote must be 0 or more, got {self.min_seconds_to_vote!r}")
        if self.min_gold_accuracy is not None and not 0 <= self.min_gold_accuracy <= 1:
            raise ValueError(f"min_gold_accuracy must be between 0 and 1, got {self.min_gold_accuracy!r}")
        if isinstance(self.min_gold_items, bool) or not isinstance(self.min_gold_items, int) or self.min_gold_items < 1:
            raise ValueError(f"min_gold_items must be a whole number of at least 1, got {self.min_gold_items!r}")

    def as_json(self) -> dict[str, Any]:
        return {
            "identity_words": {c: list(ws) for c, ws in self.identity_words.items()},
            "min_seconds_to_vote": self.min_seconds_to_vote,
            "min_gold_accuracy": self.min_gold_accuracy,
            "min_gold_items": self.min_gold_items,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rules:
        return cls(
            identity_words={c: tuple(ws) for c, ws in (data.get("identity_words") or {}).items()},
            min_seconds_to_vote=data.get("min_seconds_to_vote"),
            min_gold_accuracy=data.get("min_gold_accuracy"),
            min_gold_items=data.get("min_gold_items", MIN_GOLD_ITEMS),
        )

    def leaks(self, texts: Iterable[str]) -> bool:
        """Whether any text names a contender's model or maker."""
        words = sorted({w for ws in self.identity_words.values() for w in ws}, key=len, reverse=True)
        if not words:
            return False
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)", re.IGNORECASE)
        return any(pattern.search(text) for text in texts)


def current_rules(session: Session) -> Rules:
    """The rules the stored reasons were computed by (the defaults until an app or the CLI set some)."""
    row = session.get(RatingRules, 1)
    return Rules.from_json(row.rules) if row is not None else Rules()


def apply_rules(session: Session, rules: Rules) -> int:
    """Make `rules` the rules in force; when they differ from the stored ones, compute every rating's
    reasons again. Returns how many ratings were recomputed (0: the rules were already in force)."""
    row = session.get(RatingRules, 1)
    if row is not None and Rules.from_json(row.rules) == rules:
        return 0
    if row is None:
        session.add(RatingRules(id=1, rules=rules.as_json(), changed_at=utc_now()))
    else:
        row.rules, row.changed_at = rules.as_json(), utc_now()
    session.flush()
    return recompute(session, rules)


def rules_after_rating(session: Session, rating: Rating, comparison: Comparison) -> None:
    """A new rating's reasons; a rating of a known-answer item changes its rater's gold accuracy, so
    that rater's other ratings are computed again too."""
    rules = current_rules(session)
    if comparison.gold_position is not None and rating.rater is not None:
        recompute(session, rules, raters=[rating.rater])
    else:
        recompute(session, rules, rating_ids=[rating.id])


def recompute(
    session: Session,
    rules: Rules,
    *,
    raters: Iterable[str] | None = None,
    rating_ids: Iterable[str] | None = None,
) -> int:
    """Compute the reasons of every rating (or only `raters`' or `rating_ids`) again; returns how many."""
    query = select(
        Rating.id, Rating.comparison_id, Rating.blind, Rating.rater, Rating.seconds_to_vote, Rating.set_aside
    ).order_by(Rating.id)
    if raters is not None:
        query = query.where(Rating.rater.in_(list(raters)))
    if rating_ids is not None:
        query = query.where(Rating.id.in_(list(rating_ids)))
    rows = session.execute(query).all()
    # Gold accuracy of only the raters concerned: a rating stored one at a time must not read them all.
    names = None if raters is None and rating_ids is None else {row.rater for row in rows if row.rater is not None}
    accuracy = gold_accuracy(session, names)
    revoked = set(session.scalars(select(Rater.id).where(Rater.revoked_at.is_not(None))))
    done = 0
    for batch in _batches(rows):
        answers = _answers(session, {row.comparison_id for row in batch})
        for row in batch:
            reasons = reasons_for(rules, row, answers.get(row.comparison_id, []), accuracy.get(row.rater), revoked)
            if reasons != (row.set_aside or []):
                session.execute(update(Rating).where(Rating.id == row.id).values(set_aside=reasons))
        done += len(batch)
    session.flush()
    return done


def reasons_for(
    rules: Rules, rating: Any, answers: list[tuple[str, str]], gold: tuple[int, int] | None, revoked: set[str]
) -> list[str]:
    """The reasons one rating does not count. `answers` are its comparison's (text, finish_reason);
    `gold` the rater's (gold items rated, rated right)."""
    reasons = []
    if rating.blind and rules.leaks(text for text, _ in answers):
        reasons.append("identity_leak")
    if any(reason == "error" for _, reason in answers):
        reasons.append("errored")
    if (
        rules.min_seconds_to_vote is not None
        and rating.seconds_to_vote is not None
        and rating.seconds_to_vote < rules.min_seconds_to_vote
    ):
        reasons.append("too_fast")
    if (
        rules.min_gold_accuracy is not None
        and gold is not None
        and gold[0] >= rules.min_gold_items
        and gold[1] / gold[0] < rules.min_gold_accuracy
    ):
        reasons.append("gold")
    if rating.rater is not None and rating.rater in revoked:
        reasons.append("revoked")
    return reasons


def gold_accuracy(session: Session, raters: set[str] | None = None) -> dict[str, tuple[int, int]]:
    """Per rater: (known-answer items rated, rated right). Right: the known better answer is the one
    chosen, scored strictly highest, or ranked alone in first place."""
    query = (
        select(Rating.id, Rating.rater, Rating.kind, Rating.choice, Comparison.gold_position)
        .join(Comparison, Comparison.id == Rating.comparison_id)
        .where(Comparison.gold_position.is_not(None), Rating.rater.is_not(None))
    )
    if raters is not None:
        query = query.where(Rating.rater.in_(sorted(raters)))
    rows = session.execute(query).all()
    judged: dict[str, dict[int, tuple[int | None, int | None]]] = defaultdict(dict)
    per_answer = [r.id for r in rows if r.kind != "pairwise"]
    for start in range(0, len(per_answer), BATCH):
        found = session.execute(
            select(AnswerJudgement.rating_id, Response.position, AnswerJudgement.score, AnswerJudgement.rank)
            .join(Response, Response.id == AnswerJudgement.response_id)
            .where(AnswerJudgement.rating_id.in_(per_answer[start : start + BATCH]))
        )
        for j in found:
            judged[j.rating_id][j.position] = (j.score, j.rank)
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        tally[row.rater][0] += 1
        tally[row.rater][1] += gold_right(row.kind, row.choice, judged.get(row.id, {}), row.gold_position)
    return {rater: (seen, right) for rater, (seen, right) in tally.items()}


def gold_right(kind: str, choice: str | None, judged: Mapping[int, tuple[int | None, int | None]], gold: int) -> bool:
    """Whether a rating picked the known better answer at position `gold`."""
    if kind == "pairwise":
        return choice == "ab"[gold] if gold < 2 else False
    values = {p: (score if kind == "scores" else rank) for p, (score, rank) in judged.items()}
    mine = values.get(gold)
    if mine is None:
        return False
    others = [v for p, v in values.items() if p != gold and v is not None]
    return all(mine > v for v in others) if kind == "scores" else all(mine < v for v in others)


def _batches(rows: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


def _answers(session: Session, comparison_ids: set[str]) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    query = select(Response.comparison_id, Response.text, Response.finish_reason).where(
        Response.comparison_id.in_(sorted(comparison_ids))
    )
    for row in session.execute(query):
        found[row.comparison_id].append((row.text, row.finish_reason))
    return found
