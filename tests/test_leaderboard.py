"""The leaderboard: Bradley-Terry checked by hand and against scikit-learn, bootstrap, win rates, CLI."""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from feedback_db import Battle, build_leaderboard, format_leaderboard, leaderboard_of, open_database, sqlite_url
from feedback_db.cli import main
from tests.databases import seed_golden, stored_rating


def battles(*spec: tuple[str, str, int], ties: tuple[tuple[str, str, int], ...] = ()) -> list[Battle]:
    """(winner, loser, how many times) ..., and (a, b, how many ties)."""
    wins = [Battle(winner, loser) for winner, loser, n in spec for _ in range(n)]
    return wins + [Battle(a, b, tie=True) for a, b, n in ties for _ in range(n)]


def ratings(board) -> dict[str, float]:  # noqa: ANN001
    return {row.contender: row.rating for row in board.rows}


def test_two_contenders_by_hand() -> None:
    # A won 3 of 4: the fit gives P(A beats B) = 3/4, so R_A - R_B = 400 log10(3), around a mean of 1000.
    # prior_ties=0: the plain maximum-likelihood fit, as FastChat computes it.
    board = build_leaderboard(battles(("A", "B", 3), ("B", "A", 1)), rounds=0, prior_ties=0)
    gap = 400 * math.log10(3)
    assert ratings(board) == pytest.approx({"A": 1000 + gap / 2, "B": 1000 - gap / 2}, abs=1e-3)
    assert [(r.contender, r.battles, r.wins, r.losses, r.ties, r.lower) for r in board.rows] == [
        ("A", 4, 3, 1, 0, None),
        ("B", 4, 1, 3, 0, None),
    ]
    assert board.win_rate == {"A": {"B": 0.75}, "B": {"A": 0.25}}


def test_ties_count_as_half_a_win_each_way() -> None:
    # 2 wins, 1 loss, 2 ties: A has 3 of 5 "wins", so R_A - R_B = 400 log10(3 / 2).
    board = build_leaderboard(battles(("A", "B", 2), ("B", "A", 1), ties=(("A", "B", 2),)), rounds=0, prior_ties=0)
    assert ratings(board)["A"] - ratings(board)["B"] == pytest.approx(400 * math.log10(1.5), abs=1e-3)
    assert board.win_rate["A"]["B"] == 0.6 and board.rows[0].ties == 2 and board.battles_total == 5


def test_three_contenders_whose_odds_agree_fit_exactly() -> None:
    # A:B won 2:1, B:C 2:1, A:C 4:1 -- strengths 4:2:1 fit every pair exactly.
    board = build_leaderboard(
        battles(("A", "B", 2), ("B", "A", 1), ("B", "C", 2), ("C", "B", 1), ("A", "C", 4), ("C", "A", 1)),
        rounds=0,
        prior_ties=0,
    )
    step = 400 * math.log10(2)
    assert ratings(board) == pytest.approx({"A": 1000 + step, "B": 1000, "C": 1000 - step}, abs=1e-3)
    assert [row.contender for row in board.rows] == ["A", "B", "C"]


def sklearn_ratings(fights: list[Battle], prior_ties: float = 0.0) -> dict[str, float]:
    """FastChat's compute_mle_elo: weighted logistic regression, ties as half a win each way.

    prior_ties: the prior written out as data, rows of each contender's virtual ties against one of
    strength 0, still unpenalised (C=inf).
    """
    from sklearn.linear_model import LogisticRegression

    names = sorted({b.winner for b in fights} | {b.loser for b in fights})
    index = {n: i for i, n in enumerate(names)}
    twice = np.zeros((len(names), len(names)))  # twice the wins, so a tie adds 1 to each side
    for b in fights:
        i, j = index[b.winner], index[b.loser]
        if b.tie:
            twice[i, j] += 1
            twice[j, i] += 1
        else:
            twice[i, j] += 2
    rows, labels, weights = [], [], []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            x = np.zeros(len(names))
            x[i], x[j] = math.log(10), -math.log(10)
            rows += [x, x]
            labels += [1, 0]
            weights += [twice[i, j], twice[j, i]]
    for i in range(len(names) if prior_ties else 0):
        x = np.zeros(len(names))
        x[i] = math.log(10)  # against the average contender: no column of its own
        rows += [x, x]
        labels += [1, 0]
        weights += [prior_ties, prior_ties]  # prior_ties ties: half a win and half a loss each, doubled
    model = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12, max_iter=10_000)
    model.fit(np.array(rows), np.array(labels), sample_weight=np.array(weights))
    elo = 400 * model.coef_[0]
    return dict(zip(names, elo - elo.mean() + 1000))


def test_the_fit_agrees_with_scikit_learns_logistic_regression() -> None:
    pytest.importorskip("sklearn", reason="scikit-learn is in requirements-dev.txt")
    rng = np.random.default_rng(7)
    names = [f"m{i}" for i in range(6)]
    strength = dict(zip(names, rng.normal(0, 1, len(names))))
    fights = []
    for _ in range(3000):
        a, b = rng.choice(names, 2, replace=False)
        p = 1 / (1 + math.exp(strength[b] - strength[a]))
        roll = rng.random()
        fights.append(
            Battle(a, b, tie=True) if roll < 0.15 else Battle(a, b) if roll < 0.15 + 0.85 * p else Battle(b, a)
        )
    ours = ratings(build_leaderboard(fights, rounds=0, prior_ties=0))
    assert ours == pytest.approx(sklearn_ratings(fights), abs=0.05)
    assert np.mean(list(ours.values())) == pytest.approx(1000)


@pytest.mark.parametrize(
    "fights",
    [
        battles(("A", "B", 1), ("A", "C", 1), ("B", "C", 1)),  # three votes: the prior does most of the work
        battles(("A", "B", 7), ("B", "A", 2), ("B", "C", 4), ("C", "A", 1), ties=(("A", "C", 3),)),
    ],
)
def test_the_prior_agrees_with_scikit_learn_given_the_virtual_ties_as_data(fights: list[Battle]) -> None:
    pytest.importorskip("sklearn", reason="scikit-learn is in requirements-dev.txt")
    ours = ratings(build_leaderboard(fights, rounds=0, prior_ties=2))
    assert ours == pytest.approx(sklearn_ratings(fights, prior_ties=2), abs=0.05)
    assert ours != pytest.approx(sklearn_ratings(fights), abs=1)  # and the prior did move them


def test_bootstrap_intervals_hold_the_estimate_narrow_with_data_and_repeat_with_the_seed() -> None:
    few = battles(("A", "B", 6), ("B", "A", 4), ("B", "C", 5), ("C", "B", 5), ("C", "A", 3), ("A", "C", 7))
    many = few * 20
    small, large = build_leaderboard(few, rounds=300, seed=1), build_leaderboard(many, rounds=300, seed=1)
    for board in (small, large):
        assert all(row.lower <= row.rating <= row.upper for row in board.rows)
    assert all(s.upper - s.lower > 3 * (m.upper - m.lower) for s, m in zip(small.rows, large.rows, strict=True))
    assert build_leaderboard(few, rounds=300, seed=1) == small
    assert build_leaderboard(few, rounds=300, seed=2) != small


def test_a_contender_that_won_every_battle_still_gets_a_finite_rating() -> None:
    board = build_leaderboard(battles(("A", "B", 3), ("B", "C", 2), ("C", "B", 1)), rounds=100)
    assert [row.contender for row in board.rows] == ["A", "B", "C"]
    assert all(math.isfinite(v) for row in board.rows for v in (row.rating, row.lower, row.upper))


def test_leaderboard_from_the_database_is_blind_only_by_default(tmp_path: Path) -> None:
    database = open_database(sqlite_url(tmp_path / "feedback.sqlite3"))
    seed_golden(database)
    stored_rating(database, ["w", "x"], choice="a", comparison={"mode": "named"})  # named: only with --all
    with database.snapshot() as session:
        blind = leaderboard_of(session, rounds=50)
        everything = leaderboard_of(session, blind_only=False, rounds=50)
    # Blind battles: shuffled x>y, tie x=y, both-bad x=y (a tie, as FastChat counts it), scores x>y x>z y>z,
    # ranking z>x z>y x=y, unsafe x>y; errored (x>y) is set aside by the default rules, and counted.
    assert (blind.ratings_used, blind.battles_total) == (6, 10)
    assert {r.contender: (r.battles, r.wins, r.losses, r.ties) for r in blind.rows} == {
        "x": (8, 4, 1, 3),
        "y": (8, 1, 4, 3),
        "z": (4, 2, 2, 0),
    }
    assert blind.win_rate["x"]["y"] == pytest.approx((3 + 1.5) / 6)
    assert (blind.set_aside.ratings, blind.set_aside.reasons) == (1, {"errored": 1})
    assert (everything.ratings_used, everything.battles_total) == (8, 12) and "w" in ratings(everything)
    assert "w" not in ratings(blind)
    assert blind.a_share == pytest.approx(1 / 2)  # decisive blind votes: "shuffled" for B, "unsafe" for A
    database.dispose()


def test_format_and_cli_show_the_table_and_the_json(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "feedback.sqlite3")
    database = open_database(url)
    seed_golden(database)
    database.dispose()
    out = io.StringIO()
    assert main(["leaderboard", "--db-url", url, "--rounds", "20", "--seed", "3"], out, io.StringIO()) == 0
    table = out.getvalue()
    assert "Bradley-Terry ratings from 10 battles in 6 blind (arena) ratings" in table
    assert "1 rating set aside: 1 errored (--include-set-aside counts them)" in table
    assert [line.split()[1] for line in table.splitlines()[3:6]] == ["x", "z", "y"]
    assert "with style held fixed (rank, rating, 95% interval):" in table and "position effect:" in table
    assert "bootstrap seed 3" in table and "votes sha256 " in table
    out = io.StringIO()
    assert main(["leaderboard", "--db-url", url, "--rounds", "20", "--all", "--json"], out, io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert data["blind_only"] is False and data["battles_total"] == 11
    assert data["set_aside"] == {"ratings": 1, "reasons": {"errored": 1}, "included": False}
    assert {row["contender"] for row in data["rows"]} == {"x", "y", "z"}
    assert [e["name"] for e in data["style"]["coefficients"]] == ["length", "headers", "lists", "bold"]
    assert len(data["digest"]) == 64 and data["seed"] == 0
    assert "nothing rated yet" in format_leaderboard(build_leaderboard([], rounds=10))


# --- preliminary boards ----------------------------------------------------------------------------


def test_two_votes_make_a_preliminary_board_until_every_contender_has_min_battles() -> None:
    board = build_leaderboard(battles(("A", "B", 2)), rounds=50, ratings_used=2)
    assert (board.min_battles, board.preliminary, board.fewest_battles) == (20, True, 2)
    assert [(row.contender, row.preliminary) for row in board.rows] == [("A", True), ("B", True)]
    text = format_leaderboard(board)
    assert (
        "Preliminary: 2 votes so far; ratings settle once every contender has 20 battles (the fewest now: 2); "
        "2 virtual ties of each contender against an average one keep early ratings near 1000."
    ) in text
    assert all(line.endswith("preliminary") for line in text.splitlines()[3:5])
    # One contender past the minimum, one not: the board stays preliminary, the rows say which.
    mixed = build_leaderboard(battles(("A", "B", 3), ("A", "C", 1), ("C", "A", 1)), rounds=0, min_battles=4)
    assert {row.contender: row.preliminary for row in mixed.rows} == {"A": False, "B": True, "C": True}
    settled = build_leaderboard(battles(("A", "B", 2)), rounds=0, min_battles=2)
    assert not settled.preliminary and "Preliminary" not in format_leaderboard(settled)
    assert not build_leaderboard([], rounds=0).preliminary  # nothing rated: empty, not preliminary


@pytest.mark.parametrize("min_battles", [-1, 2.5, True])
def test_min_battles_must_be_a_whole_number(min_battles: object) -> None:
    with pytest.raises(ValueError, match="min_battles must be a whole number >= 0"):
        build_leaderboard(battles(("A", "B", 1)), rounds=0, min_battles=min_battles)


def test_the_page_marks_preliminary_ratings_in_the_summary_the_table_and_the_plot() -> None:
    from playground.leaderboard_view import leaderboard_rows, ratings_svg, summary

    board = build_leaderboard(battles(("A", "B", 2)), rounds=50, ratings_used=2)
    assert summary(board).startswith(
        "**Preliminary: 2 votes so far; ratings settle once every contender has 20 "
        "battles (the fewest now: 2); 2 virtual ties of each contender against an average one keep early "
        "ratings near 1000.** 2 battles from 2 ratings"
    )
    rows = leaderboard_rows(board)
    assert [row[3] for row in rows] == ["preliminary (2 battles)"] * 2  # not a zero-width interval
    assert rows[0][2] > 1000 > rows[1][2]  # the rating stays a number, so the column sorts
    assert ratings_svg(board).count('fill="white"') == 2 and "preliminary: 2 battles" in ratings_svg(board)
    settled = build_leaderboard(battles(("A", "B", 2)), rounds=50, ratings_used=2, min_battles=1)
    assert "Preliminary" not in summary(settled) and "preliminary" not in str(leaderboard_rows(settled))


def test_cli_min_battles_decides_when_the_board_is_settled(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "feedback.sqlite3")
    database = open_database(url)
    seed_golden(database)  # blind battles: x 8, y 8, z 4 (the errored rating is set aside)
    database.dispose()
    argv = ["leaderboard", "--db-url", url, "--rounds", "0"]
    out = io.StringIO()
    assert main(argv, out, io.StringIO()) == 0
    assert "Preliminary: 6 votes so far; ratings settle once every contender has 20 battles" in out.getvalue()
    out = io.StringIO()
    assert main([*argv, "--min-battles", "5", "--json"], out, io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert (data["preliminary"], data["min_battles"]) == (True, 5)
    assert {row["contender"]: row["preliminary"] for row in data["rows"]} == {"x": False, "y": False, "z": True}
    out = io.StringIO()
    assert main([*argv, "--min-battles", "4"], out, io.StringIO()) == 0
    assert "reliminary" not in out.getvalue()


# --- the page's chart ------------------------------------------------------------------------------


def svg_numbers(svg: str) -> tuple[float, list[float], list[float]]:
    """The viewBox width, the dots' x, and every other x the chart draws (bars, grid lines, tick labels)."""
    width = float(re.search(r'viewBox="0 0 ([\d.]+) [\d.]+"', svg).group(1))
    dots = [float(v) for v in re.findall(r'cx="([-\d.]+)"', svg)]
    drawn = [float(v) for v in re.findall(r' x[12]?="([-\d.]+)"', svg)]
    return width, dots, drawn


def test_the_chart_keeps_every_rating_and_interval_on_its_axis() -> None:
    from playground.leaderboard_view import plot_range, ratings_svg

    three_votes = build_leaderboard(battles(("A", "B", 1), ("A", "C", 1), ("B", "C", 1)), rounds=100, ratings_used=3)
    # Percentile intervals that miss their own estimates, as three votes once gave without the prior:
    # the leader's 1840 beyond every interval end (1720 the highest), the last's -560 below all of them.
    lopsided = replace(
        three_votes,
        rows=(
            replace(three_votes.rows[0], rating=1840.0, lower=1000.0, upper=1720.0),
            replace(three_votes.rows[1], rating=1720.0, lower=900.0, upper=1500.0),
            replace(three_votes.rows[2], rating=-560.0, lower=-400.0, upper=1000.0),
        ),
    )
    for board in (three_votes, lopsided):
        lo, hi = plot_range(board)
        ends = [v for r in board.rows for v in (r.rating, r.lower, r.upper)]
        assert lo < min(ends) and max(ends) < hi  # with a margin on either side
        svg = ratings_svg(board)
        width, dots, drawn = svg_numbers(svg)
        assert len(dots) == 3 and all(0 < x < width for x in dots + drawn)
        # Read the leader's rating back off the drawn axis, from its first and last tick labels.
        ticks = [(float(x), float(v)) for x, v in re.findall(r'<text x="([\d.]+)" y="\d+" [^>]*>(-?\d+)</text>', svg)]
        (x0, v0), (x1, v1) = ticks[0], ticks[-1]
        assert v0 + (dots[0] - x0) * (v1 - v0) / (x1 - x0) == pytest.approx(board.rows[0].rating, abs=1)


def test_the_chart_scales_to_its_container_instead_of_a_fixed_width() -> None:
    from playground.leaderboard_view import ratings_svg

    board = build_leaderboard(battles(("A", "B", 3), ("B", "C", 2)), rounds=50)
    svg = ratings_svg(board)
    head = svg[: svg.index(">")]
    # No pixel width or height on the element: the viewBox keeps the drawing's proportions at 420 px.
    assert 'width="100%"' in head and "height=" not in head.replace("height: auto", "")
    assert re.search(r'viewBox="0 0 720 \d+"', head) and "max-width: 720px" in head
    long_names = build_leaderboard(battles(("a-very-long-contender-name-" * 3, "B", 2)), rounds=0)
    width, dots, drawn = svg_numbers(ratings_svg(long_names))
    assert all(0 < x < width for x in dots + drawn) and "…" in ratings_svg(long_names)


@pytest.mark.browser
def test_chromium_draws_the_chart_within_a_phone_screen(browser) -> None:  # noqa: ANN001
    from playground.leaderboard_view import ratings_svg

    board = build_leaderboard(battles(("A", "B", 1), ("A", "C", 1), ("B", "C", 1)), rounds=100, ratings_used=3)
    page = browser.new_page(viewport={"width": 420, "height": 900})
    try:
        page.set_content(f"<body style='margin:8px'><div id=plot>{ratings_svg(board)}</div></body>")
        chart, leader = page.locator("svg").bounding_box(), page.locator("circle").first.bounding_box()
        assert page.evaluate("document.documentElement.scrollWidth") <= 420  # nothing to scroll sideways
        assert 8 <= chart["x"] and chart["x"] + chart["width"] <= 420 - 8
        assert chart["x"] <= leader["x"] and leader["x"] + leader["width"] <= chart["x"] + chart["width"]
    finally:
        page.close()


# --- the same votes on each backend ----------------------------------------------------------------


def store_votes(database) -> None:  # noqa: ANN001
    """Twenty blind votes between three contenders whose answers differ in length and markdown."""
    from tests.databases import rate, store_comparison

    rng = np.random.default_rng(5)
    texts = {"x": "# Plan\n\n- **one**\n- two\n" + "word " * 40, "y": "A short answer.", "z": "1. a\n2. b\n" + "w " * 9}
    for n in range(20):
        pair = [str(c) for c in rng.choice(["x", "y", "z"], 2, replace=False)]
        comparison = store_comparison(database, pair, comparison_id=f"{n:032x}", texts=texts)
        rate(database, comparison, choice=str(rng.choice(["a", "b", "tie"])), blind=True)


def copy_votes(source, target) -> None:  # noqa: ANN001
    """Every row of every table, ids included: the same votes, as a move between databases keeps them."""
    from feedback_db.schema import Base

    with source.engine.connect() as reading, target.engine.begin() as writing:
        for table in reversed(Base.metadata.sorted_tables):
            writing.execute(table.delete())
        for table in Base.metadata.sorted_tables:
            rows = [dict(row._mapping) for row in reading.execute(table.select())]
            if rows:
                writing.execute(table.insert(), rows)


def test_the_same_votes_and_seed_give_the_same_board_on_each_backend(any_db, tmp_path: Path) -> None:  # noqa: ANN001
    reference = open_database(sqlite_url(tmp_path / "reference.sqlite3"))
    store_votes(reference)
    copy_votes(reference, any_db)
    with reference.snapshot() as session:
        expected = leaderboard_of(session, rounds=50, seed=4)
    with any_db.snapshot() as session:
        board = leaderboard_of(session, rounds=50, seed=4)
        other_seed = leaderboard_of(session, rounds=50, seed=5)
    reference.dispose()
    assert board.ratings_used == 20 and board.style is not None and len(board.digest) == 64
    assert board == expected  # every number, the style fit, the ranks and the digest
    assert other_seed.digest == board.digest and other_seed.rows != board.rows  # the seed moves the intervals
