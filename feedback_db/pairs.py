"""Any rating as pairwise outcomes: the common ground of the exports and the leaderboard.

Answers are named by pane position. The mapping, per kind of rating:
- pairwise "a" / "b": one pair, the chosen position wins, with the person's strength (None for a quick
  vote, which says who won but not by how much); "tie": one tie; "both_bad": no pairs, flagged.
- scores (1-5 per answer): every pair of scored answers; the higher score wins, equal scores tie. The
  score gap becomes a strength on the Llama 2 scale: 1 point slightly better, 2 better, 3 or 4
  significantly better.
- ranking (1 = best): every pair of ranked answers; the lower rank wins, equal ranks tie. A rank says
  which answer is better but not how much, so the strength is None.
Answers that failed carry no score or rank and so take part in no pair of those two kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

from .records import STRENGTHS, Strength

# Llama 2 paper, section 3.2.2: the margin m(r) in the reward model's ranking loss,
# -log(sigmoid(r_chosen - r_rejected - m(r))), one step per level of the four-level scale.
STRENGTH_MARGIN: dict[str, float] = {
    "significantly_better": 1.0,
    "better": 2 / 3,
    "slightly_better": 1 / 3,
    "negligibly_better": 0.0,
}
SCORE_GAP_STRENGTH: dict[int, Strength] = {
    1: "slightly_better",
    2: "better",
    3: "significantly_better",
    4: "significantly_better",
}


@dataclass(frozen=True)
class Pair:
    """One outcome between two answers; for a tie, `winner` is just the lower position."""

    winner: int
    loser: int
    tie: bool = False
    strength: Strength | None = None

    @property
    def margin(self) -> float:
        """The reward-model margin; 0.0 (no margin term) when the strength is unknown or for a tie."""
        return STRENGTH_MARGIN[self.strength] if self.strength is not None else 0.0


@dataclass(frozen=True)
class Decomposition:
    """The pairs a rating says, and whether it said "both bad" (which gives no pair)."""

    pairs: tuple[Pair, ...]
    both_bad: bool = False


def decompose(
    kind: str,
    choice: str | None = None,
    strength: Strength | None = None,
    scores: Mapping[int, int] | None = None,
    ranks: Mapping[int, int] | None = None,
) -> Decomposition:
    """The pairwise outcomes of one rating (see the module docstring for the mapping)."""
    if kind == "pairwise":
        return _pairwise(choice, strength)
    if kind == "scores":
        return Decomposition(tuple(_by_score(i, j, scores or {}) for i, j in _pairs_of(scores or {})))
    if kind == "ranking":
        return Decomposition(tuple(_by_rank(i, j, ranks or {}) for i, j in _pairs_of(ranks or {})))
    raise ValueError(f"unknown rating kind {kind!r}; expected 'pairwise', 'scores' or 'ranking'")


def at_least(strength: Strength | None, minimum: Strength) -> bool:
    """Whether a known `strength` is `minimum` or stronger; an unknown strength never is."""
    # STRENGTHS runs from strongest to weakest.
    return strength is not None and STRENGTHS.index(strength) <= STRENGTHS.index(minimum)


def _pairwise(choice: str | None, strength: Strength | None) -> Decomposition:
    if choice == "a":
        return Decomposition((Pair(winner=0, loser=1, strength=strength),))
    if choice == "b":
        return Decomposition((Pair(winner=1, loser=0, strength=strength),))
    if choice == "tie":
        return Decomposition((Pair(winner=0, loser=1, tie=True),))
    if choice == "both_bad":
        return Decomposition((), both_bad=True)
    raise ValueError(f"unknown pairwise choice {choice!r}; expected 'a', 'b', 'tie' or 'both_bad'")


def _pairs_of(values: Mapping[int, int]) -> list[tuple[int, int]]:
    return list(combinations(sorted(values), 2))


def _by_score(i: int, j: int, scores: Mapping[int, int]) -> Pair:
    gap = scores[i] - scores[j]
    if gap == 0:
        return Pair(winner=i, loser=j, tie=True)
    winner, loser = (i, j) if gap > 0 else (j, i)
    return Pair(winner=winner, loser=loser, strength=SCORE_GAP_STRENGTH[abs(gap)])


def _by_rank(i: int, j: int, ranks: Mapping[int, int]) -> Pair:
    if ranks[i] == ranks[j]:
        return Pair(winner=i, loser=j, tie=True)
    winner, loser = (i, j) if ranks[i] < ranks[j] else (j, i)
    return Pair(winner=winner, loser=loser)
