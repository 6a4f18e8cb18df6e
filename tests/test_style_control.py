"""Style control: the fit against scikit-learn, and ratings that stop rewarding length once it is held fixed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feedback_db.leaderboard import _battle, build_leaderboard, confidence_ranks
from feedback_db.style import POINTS, Duel, StyleCounts, design, fit_style, style_of


def test_style_counts_words_headers_list_items_and_bold_outside_code() -> None:
    text = "# Title\n\nSome **bold** words.\n\n- one\n- two\n1. three\n```\n# not a header\n- nor a list\n```"
    assert style_of(text) == StyleCounts(length=len(text.split()), headers=1, lists=3, bold=1)


def random_duels(rng: np.random.Generator, names: list[str], count: int, length_effect: float) -> list[Duel]:
    """Battles where a longer answer wins more often by `length_effect` log-odds per unit of (a-b)/(a+b)."""
    duels = []
    for i in range(count):
        first, second = rng.choice(names, 2, replace=False)
        # m0 writes long answers, the last contender short ones: only length tells them apart.
        long_a, long_b = (int(rng.integers(20, 60)) * (3 if name == "m0" else 1) for name in (first, second))
        a = StyleCounts(long_a, int(rng.integers(0, 3)), int(rng.integers(0, 5)), int(rng.integers(0, 3)))
        b = StyleCounts(long_b, int(rng.integers(0, 3)), int(rng.integers(0, 5)), int(rng.integers(0, 3)))
        p = 1 / (1 + math.exp(-length_effect * (long_a - long_b) / (long_a + long_b) - 0.2))
        roll = rng.random()
        score = 0.5 if roll < 0.1 else 1.0 if roll < 0.1 + 0.9 * p else 0.0
        duels.append(Duel(f"r{i:05d}", str(first), str(second), score, a, b))
    return duels


def test_the_style_fit_agrees_with_scikit_learns_logistic_regression() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model", reason="scikit-learn is in requirements-dev.txt")
    names = ["m0", "m1", "m2", "m3"]
    duels = random_duels(np.random.default_rng(3), names, 2000, length_effect=1.0)
    fit = fit_style(duels, names, rounds=0, prior_ties=0)
    x = design(duels, names)[:, :-1]  # scikit-learn fits its own intercept
    score = np.array([d.score for d in duels])
    model = sklearn.LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000)
    model.fit(np.vstack([x, x]), np.r_[np.ones(len(x)), np.zeros(len(x))], sample_weight=np.r_[score, 1 - score])
    strengths = model.coef_[0][: len(names)]
    expected = 1000 + POINTS * (strengths - strengths.mean())
    assert [e.value for e in fit.ratings] == pytest.approx(expected, abs=0.05)
    assert [e.value for e in fit.coefficients] == pytest.approx(POINTS * model.coef_[0][len(names) :], abs=0.05)
    assert fit.first_shown.value == pytest.approx(1 / (1 + math.exp(-model.intercept_[0])), abs=1e-4)


def test_when_only_length_wins_style_control_levels_the_ratings_and_the_plain_fit_does_not() -> None:
    names = ["m0", "m1", "m2"]
    duels = random_duels(np.random.default_rng(11), names, 3000, length_effect=2.0)
    # The plain fit sees the same battles, without their style.
    board = build_leaderboard([_battle(d) for d in duels], rounds=200, seed=1, duels=duels)
    plain = {row.contender: row for row in board.rows}
    assert plain["m0"].lower > max(plain["m1"].upper, plain["m2"].upper)  # length passes for quality
    assert plain["m0"].rank == 1
    styled = board.style.ratings
    assert all(e.lower < 1000 < e.upper for e in styled)  # with length held fixed: all level
    assert set(board.style_ranks.values()) == {1}
    length = board.style.coefficients[0]
    assert length.name == "length" and length.lower > 0  # and the fit says why
    assert 0.5 < board.style.first_shown.lower < board.style.first_shown.value  # a first-shown edge of 0.2


def test_rank_counts_the_contenders_wholly_above() -> None:
    assert confidence_ranks([1100, 1050, 900], [1060, 980, 850], [1140, 1090, 950]) == [1, 1, 3]
    assert confidence_ranks([3.0, 2.0, 2.0], [None] * 3, [None] * 3) == [1, 2, 2]
