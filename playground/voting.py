"""How the page's rating form becomes a vote, and which answer a vote prefers.

Plain Python, so the rules are tested without a browser. Everything here treats the form's values as
untrusted: a raw queue request can send any JSON for any control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from feedback_db.records import Choice, Strength  # one definition, the store's

Method = Literal["scores", "ranking"]

# (label shown, value sent): the page's radios send the value, never the label.
CHOICES: tuple[tuple[str, Choice], ...] = (
    ("A is better", "a"),
    ("B is better", "b"),
    ("Tie", "tie"),
    ("Both are bad", "both_bad"),
)
# Llama 2 paper, section 3.2.1; "negligibly_better" also stands for "unsure".
STRENGTHS: tuple[tuple[str, Strength], ...] = (
    ("Significantly better", "significantly_better"),
    ("Better", "better"),
    ("Slightly better", "slightly_better"),
    ("Negligibly better / unsure", "negligibly_better"),
)
METHODS: tuple[tuple[str, Method], ...] = (("Score each answer 1-5", "scores"), ("Rank the answers", "ranking"))
SCORES = (1, 2, 3, 4, 5)


class FormError(ValueError):
    """A rating form that does not say a vote; the message says what to fill in."""


@dataclass(frozen=True)
class Vote:
    """What the person said about the answers on screen, by pane position (never by model name)."""

    choice: Choice | None = None  # two answers: which is better
    strength: Strength | None = None  # how much better, for "a" or "b" only
    scores: dict[int, int] = field(default_factory=dict)  # more than two answers: 1-5 per position
    ranks: dict[int, int] = field(default_factory=dict)  # or a ranking: 1 is best, equal ranks tie
    unsafe: dict[int, str | None] = field(default_factory=dict)  # flagged positions, optional reason
    comment: str | None = None

    @property
    def kind(self) -> Literal["pairwise", "scores", "ranking"]:
        return "ranking" if self.ranks else "scores" if self.scores else "pairwise"


@dataclass(frozen=True)
class RatingForm:
    """The rating controls' values as the browser sent them, one entry per pane where per answer."""

    choice: Any = None
    strength: Any = None
    method: Any = "scores"
    scores: Sequence[Any] = ()
    ranks: Sequence[Any] = ()
    unsafe: Sequence[Any] = ()
    reasons: Sequence[Any] = ()
    comment: Any = None


def vote_from_form(n: int, form: RatingForm) -> Vote:
    """The vote a form says for `n` answers, or FormError naming what is missing or wrong."""
    unsafe = {
        p: _text(form.reasons[p] if p < len(form.reasons) else None, "reason") or None
        for p in range(n)
        if p < len(form.unsafe) and form.unsafe[p] is True
    }
    comment = _text(form.comment, "comment") or None
    if n == 2:
        choice = _one_of(form.choice, CHOICES, "verdict")
        if choice is None:
            raise FormError("pick a verdict first: A is better, B is better, tie, or both are bad")
        # A strength says how much better A or B is: a tie or "both bad" has none, whatever was ticked.
        strength = _one_of(form.strength, STRENGTHS, "strength") if choice in ("a", "b") else None
        return Vote(choice=choice, strength=strength, unsafe=unsafe, comment=comment)
    method = _one_of(form.method, METHODS, "rating method") or "scores"
    if method == "scores":
        scores = _per_answer(form.scores, n, SCORES, "score")
        return Vote(scores=scores, unsafe=unsafe, comment=comment)
    ranks = _per_answer(form.ranks, n, tuple(range(1, n + 1)), "rank")
    return Vote(ranks=ranks, unsafe=unsafe, comment=comment)


def preferred_position(vote: Vote, n: int, failed: set[int] = frozenset()) -> int | None:
    """The answer a conversation continues from after this vote.

    The winner; on a tie or "both bad", the first answer that did not fail (the person may pick
    another); with scores or ranks, the best one, the leftmost among equals.
    """
    usable = [p for p in range(n) if p not in failed]
    if vote.choice in ("a", "b"):
        winner = 0 if vote.choice == "a" else 1
        return winner if winner in usable else (usable[0] if usable else None)
    if vote.scores:
        return min(usable, key=lambda p: (-vote.scores.get(p, 0), p), default=None)
    if vote.ranks:
        return min(usable, key=lambda p: (vote.ranks.get(p, n + 1), p), default=None)
    return usable[0] if usable else None


def _one_of(value: Any, options: Sequence[tuple[str, str]], what: str) -> Any:
    if value in (None, ""):
        return None
    values = [v for _, v in options]
    if not isinstance(value, str) or value not in values:
        raise FormError(f"{what} {value!r:.40} is not one of {', '.join(values)}")
    return value


def _per_answer(values: Sequence[Any], n: int, allowed: Sequence[int], what: str) -> dict[int, int]:
    """Position -> value for the answers given one; each must be one of `allowed`."""
    given: dict[int, int] = {}
    for position, value in enumerate(list(values)[:n]):
        if value in (None, ""):
            continue
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        if number not in allowed:
            raise FormError(
                f"the {what} of answer {'ABCD'[position]} must be one of "
                f"{', '.join(map(str, allowed))}, got {value!r:.20}"
            )
        given[position] = number
    if not given:
        raise FormError(f"give each answer a {what} first")
    return given


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError(f"the {what} must be text, got {type(value).__name__}")
    return value.strip()
