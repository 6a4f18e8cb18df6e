"""Agreement: our Krippendorff's alpha against the krippendorff package, and the report over real databases."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import krippendorff
import numpy as np
import pytest

from feedback_db import ComparisonRecord, Database, ResponseRecord, add_comparison, add_response, open_database
from feedback_db.agreement import agreement_of, krippendorff_alpha, markdown
from feedback_db.cli import main
from feedback_db.raters import invite
from tests.databases import rate

NAMES = ("Name-Ann-Q7", "Name-Bob-Q7", "Name-Cat-Q7")
CODES = {"a": 0, "b": 1, "tie": 2, "both_bad": 3}


def units_of(matrix: np.ndarray) -> list[list[float]]:
    """Reliability data (raters x units, NaN missing) as each unit's values."""
    return [[float(v) for v in column if not math.isnan(v)] for column in matrix.T]


@pytest.mark.parametrize("level", ["nominal", "interval"])
@pytest.mark.parametrize("seed", range(8))
def test_alpha_equals_the_krippendorff_package_on_random_data_with_missing_values(level: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    raters, units = rng.integers(2, 7), rng.integers(5, 60)
    matrix = rng.integers(1, 6, size=(raters, units)).astype(float)
    # Agreement above chance on some units, so the values are not all near 0.
    matrix[:, : units // 2] = np.clip(matrix[0, : units // 2] + rng.integers(-1, 2, size=(raters, units // 2)), 1, 5)
    matrix[rng.random(matrix.shape) < 0.35] = np.nan
    ours = krippendorff_alpha(units_of(matrix), level)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    assert ours.value == pytest.approx(expected, abs=1e-9)
    pairable = [len(u) for u in units_of(matrix) if len(u) >= 2]
    assert (ours.items, ours.ratings) == (len(pairable), sum(pairable))


def test_alpha_on_krippendorffs_worked_example() -> None:
    # The package's docstring example (Krippendorff 2011, 3 coders, 15 units).
    nan = np.nan
    data = np.array(
        [
            [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
            [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
            [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
        ]
    )
    assert krippendorff_alpha(units_of(data), "nominal").value == pytest.approx(0.691358, abs=1e-6)
    assert krippendorff_alpha(units_of(data), "interval").value == pytest.approx(0.810845, abs=1e-6)


def test_alpha_is_undefined_without_pairs_or_without_variation() -> None:
    alone = krippendorff_alpha([["a"], ["b"], []], "nominal")
    assert (alone.value, alone.items, alone.ratings) == (None, 0, 0) and "nothing to compare" in alone.why_undefined
    same = krippendorff_alpha([["a", "a"], ["a", "a", "a"]], "nominal")
    assert (same.value, same.items, same.ratings) == (None, 2, 5) and "cannot be told from chance" in same.why_undefined


def comparison(db: Database, n: int = 2, *, gold: int | None = None, errored: bool = False) -> str:
    record = ComparisonRecord(
        lineup="demo", session_id="s", prompt="Why?", n_responses=n, mode="arena", gold_position=gold
    )
    with db.session() as session:
        add_comparison(session, record)
        for position in range(n):
            failed = errored and position == n - 1
            add_response(
                session,
                ResponseRecord(
                    comparison_id=record.id,
                    position=position,
                    contender=f"m{position}",
                    weights_id=f"org/m{position}",
                    messages=[{"role": "user", "content": "Why?"}],
                    prompt_rendered="",
                    params={},
                    text=f"answer {position}",
                    finish_reason="error" if failed else "stop",
                    error="timeout" if failed else None,
                    prompt_tokens=1,
                    completion_tokens=1,
                    duration_s=0.1,
                ),
            )
    return record.id


def seed_opinions(db: Database) -> tuple[list[str], list[str]]:
    """Three raters' second opinions (see the expected numbers in the test below); returns rater ids and
    comparison ids c1..c6."""
    with db.session() as session:
        r1, r2, r3 = (invite(session, name)[0].id for name in NAMES)
    c1, c2, c3, c4 = comparison(db, gold=0), comparison(db, gold=1), comparison(db), comparison(db)
    c5, c6 = comparison(db, errored=True), comparison(db, 3)
    rate(db, c1, choice="a", rater=r1, seconds_to_vote=2.0)
    rate(db, c1, choice="a", rater=r2, seconds_to_vote=3.0)
    rate(db, c1, choice="b", rater=r3)
    rate(db, c2, choice="b", rater=r1, seconds_to_vote=4.0)
    rate(db, c2, choice="b", rater=r2, shown_order=(1, 0))  # stored position 1 shown as "A"
    rate(db, c2, choice="b", rater=r3)
    rate(db, c3, choice="tie", rater=r1, seconds_to_vote=6.0)
    rate(db, c3, choice="tie", rater=r2)
    rate(db, c4, choice="a", rater=r1, shown_order=(1, 0), seconds_to_vote=100.0)
    rate(db, c4, choice="b")  # without a rater
    rate(db, c5, choice="a", rater=r2)  # an answer failed: set aside ("errored")
    rate(db, c5, choice="a", rater=r3)
    rate(db, c6, "scores", scores={0: 5, 1: 3, 2: 1}, rater=r1)
    rate(db, c6, "scores", scores={0: 4, 1: 3, 2: 2}, rater=r2)
    rate(db, c6, "scores", scores={0: 5, 1: 1, 2: 1}, rater=r3)
    return [r1, r2, r3], [c1, c2, c3, c4, c5, c6]


def alpha_of(rows: Sequence[Sequence[object]], level: str) -> float:
    """The package's alpha over raters x units, None for missing."""
    matrix = np.array([[np.nan if v is None else float(v) for v in row] for row in rows])
    return krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)


def test_the_report_counts_every_rater_and_equals_the_package(any_db: Database) -> None:
    (r1, r2, r3), _ = seed_opinions(any_db)
    with any_db.snapshot() as session:
        report = agreement_of(session)
    a, b, tie = CODES["a"], CODES["b"], CODES["tie"]
    verdicts = [[a, b, tie, a], [a, b, tie, None], [b, b, None, None]]  # raters x c1..c4
    assert report.verdict.value == pytest.approx(alpha_of(verdicts, "nominal"), abs=1e-9)
    assert (report.verdict.items, report.verdict.ratings) == (3, 8)
    scores = [[5, 3, 1], [4, 3, 2], [5, 1, 1]]
    assert report.scores.value == pytest.approx(alpha_of(scores, "interval"), abs=1e-9)
    assert (report.scores.items, report.scores.ratings) == (3, 9)
    assert (report.ratings, report.comparisons, report.repeated) == (12, 5, 4)
    assert (report.without_rater, report.set_aside, report.set_aside_reasons) == (1, 2, {"errored": 2})
    by_rater = {r.rater: r for r in report.raters}
    assert [r.rater for r in report.raters] == [r1, r2, r3]  # most ratings first
    one, two, three = by_rater[r1], by_rater[r2], by_rater[r3]
    # Leave-one-out: r1 meets a majority of the others on c2 (b: yes) and c3 (tie: yes); on c1 the
    # others split a-b. r3 is outvoted on c1 and agrees on c2.
    assert (one.majority_items, one.majority_agreement) == (2, 1.0)
    assert (two.majority_items, two.majority_agreement) == (2, 1.0)
    assert (three.majority_items, three.majority_agreement) == (2, 0.5)
    assert (one.gold_items, one.gold_accuracy, three.gold_items, three.gold_accuracy) == (2, 1.0, 2, 0.5)
    # Shown "A": r1 chose A on c1 only (c2: B; c4: stored a, but shown second); r2's b on c2 was shown first.
    assert (one.ab_votes, one.shown_a_share, one.tie_share) == (3, pytest.approx(1 / 3), 0.25)
    assert (two.ab_votes, two.shown_a_share, two.tie_share) == (2, 1.0, pytest.approx(1 / 3))
    assert (three.ab_votes, three.shown_a_share, three.tie_share) == (2, 0.0, 0.0)
    assert (one.median_seconds_to_vote, two.median_seconds_to_vote, three.median_seconds_to_vote) == (5.0, 3.0, None)
    assert (one.ratings, two.ratings, three.ratings) == (5, 4, 3)
    assert any("1 ratings without a rater are left out" in note for note in report.notes)
    assert any("2 ratings set aside are left out; reasons: errored 2" in note for note in report.notes)


def test_set_aside_ratings_come_back_when_asked_and_a_lineup_filters(any_db: Database) -> None:
    seed_opinions(any_db)
    with any_db.snapshot() as session:
        kept = agreement_of(session, include_set_aside=True)
        other = agreement_of(session, lineup="no-such-lineup")
    a, b, tie = CODES["a"], CODES["b"], CODES["tie"]
    verdicts = [[a, b, tie, a, None], [a, b, tie, None, a], [b, b, None, None, a]]
    assert kept.verdict.value == pytest.approx(alpha_of(verdicts, "nominal"), abs=1e-9)
    assert (kept.verdict.items, kept.verdict.ratings, kept.set_aside) == (4, 10, 2)
    assert any("are kept (--include-set-aside)" in note for note in kept.notes)
    assert (other.ratings, other.verdict.value, other.raters) == (0, None, ())


def test_raters_are_shown_by_pseudonym_never_by_name(database: Database) -> None:
    (r1, r2, r3), (c1, *_) = seed_opinions(database)
    legacy = comparison(database)
    rate(database, legacy, choice="a", rater="annotator-Zed-Q7")  # a rater string from before revision 0006
    with database.snapshot() as session:
        text = markdown(agreement_of(session))
    assert all(f"`{rater}`" in text for rater in (r1, r2, r3))
    assert not any(name in text for name in (*NAMES, "annotator-Zed-Q7"))
    assert "`legacy-" in text
    assert "| Verdict (nominal) |" in text and "Gold accuracy" in text


@pytest.mark.parametrize("repeated", [False, True])
def test_cli_reports_an_empty_database_and_one_without_second_opinions(
    db_url: str, any_db: Database, repeated: bool
) -> None:
    if repeated:  # every comparison rated once: per-rater counts, no alpha
        with any_db.session() as session:
            rater = invite(session, "solo")[0].id
        for choice in ("a", "b", "tie"):
            rate(any_db, comparison(any_db), choice=choice, rater=rater, seconds_to_vote=1.0)
    out, err = io.StringIO(), io.StringIO()
    assert main(["agreement", "--db-url", db_url, "--json"], out, err) == 0, err.getvalue()
    report = json.loads(out.getvalue())
    assert report["verdict"]["value"] is None and report["scores"]["value"] is None
    assert "no item holds two pairwise verdicts by different raters" in report["verdict"]["why_undefined"]
    assert (report["verdict"]["items"], report["verdict"]["ratings"]) == (0, 0)
    assert report["ratings"] == (3 if repeated else 0) and report["repeated"] == 0
    assert len(report["raters"]) == (1 if repeated else 0)
    if repeated:
        assert report["raters"][0]["tie_share"] == pytest.approx(1 / 3)
        assert report["raters"][0]["majority_agreement"] is None
    out = io.StringIO()
    assert main(["agreement", "--db-url", db_url], out, err) == 0
    assert "Verdict alpha is undefined: no item holds two pairwise verdicts" in out.getvalue()


def test_cli_refuses_a_missing_database_file(tmp_path) -> None:
    err = io.StringIO()
    url = f"sqlite:///{tmp_path}/none.sqlite3"
    assert main(["agreement", "--db-url", url], io.StringIO(), err) == 2
    assert "there is no database file" in err.getvalue()
    open_database(f"sqlite:///{tmp_path}/made.sqlite3").dispose()
    assert main(["agreement", "--db-url", f"sqlite:///{tmp_path}/made.sqlite3"], io.StringIO(), err) == 0
