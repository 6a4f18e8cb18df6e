"""Ratings as pairwise outcomes: the mapping of every kind of rating, strengths and margins."""

from __future__ import annotations

import pytest

from feedback_db import STRENGTH_MARGIN, Decomposition, Pair, decompose
from feedback_db.pairs import at_least


@pytest.mark.parametrize(
    ("rating", "expected"),
    [
        ({"kind": "pairwise", "choice": "a", "strength": "better"}, (Pair(0, 1, strength="better"),)),
        (
            {"kind": "pairwise", "choice": "b", "strength": "significantly_better"},
            (Pair(1, 0, strength="significantly_better"),),
        ),
        ({"kind": "pairwise", "choice": "b"}, (Pair(1, 0),)),  # a quick vote: no strength
        ({"kind": "pairwise", "choice": "tie"}, (Pair(0, 1, tie=True),)),
        ({"kind": "pairwise", "choice": "both_bad"}, ()),
        # Scores: every pair, the gap as a strength (1 slightly, 2 better, 3-4 significantly), equal ties.
        (
            {"kind": "scores", "scores": {0: 2, 1: 3, 2: 5, 3: 5, 4: 1}},
            (
                Pair(1, 0, strength="slightly_better"),
                Pair(2, 0, strength="significantly_better"),
                Pair(3, 0, strength="significantly_better"),
                Pair(0, 4, strength="slightly_better"),
                Pair(2, 1, strength="better"),
                Pair(3, 1, strength="better"),
                Pair(1, 4, strength="better"),
                Pair(2, 3, tie=True),
                Pair(2, 4, strength="significantly_better"),
                Pair(3, 4, strength="significantly_better"),
            ),
        ),
        # Ranking: lower rank wins, equal ranks tie, no strength.
        ({"kind": "ranking", "ranks": {2: 1, 0: 2, 1: 2}}, (Pair(0, 1, tie=True), Pair(2, 0), Pair(2, 1))),
        # A failed answer has no score: it takes part in no pair.
        ({"kind": "scores", "scores": {0: 4, 2: 4}}, (Pair(0, 2, tie=True),)),
    ],
)
def test_each_kind_of_rating_decomposes_into_the_documented_pairs(rating: dict, expected: tuple) -> None:
    decomposition = decompose(**rating)
    assert decomposition == Decomposition(expected, both_bad=rating.get("choice") == "both_bad")


def test_margins_follow_the_llama2_scale() -> None:
    assert STRENGTH_MARGIN == {
        "significantly_better": 1.0,
        "better": 2 / 3,
        "slightly_better": 1 / 3,
        "negligibly_better": 0.0,
    }
    assert [Pair(0, 1, strength=s).margin for s in STRENGTH_MARGIN] == [1.0, 2 / 3, 1 / 3, 0.0]
    assert Pair(0, 1).margin == 0.0 and Pair(0, 1, tie=True).margin == 0.0


def test_at_least_orders_strengths_and_never_passes_an_unknown_one() -> None:
    assert at_least("significantly_better", "better") and at_least("better", "better")
    assert not at_least("slightly_better", "better") and not at_least(None, "negligibly_better")


def test_unknown_kinds_and_choices_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown rating kind 'stars'"):
        decompose("stars")
    with pytest.raises(ValueError, match="unknown pairwise choice 'left'"):
        decompose("pairwise", "left")
