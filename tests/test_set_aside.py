"""Ratings set aside, as the exports and the leaderboard read them: left out and counted by reason by
default, back with --include-set-aside; and --aggregate majority over several raters' ratings."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from feedback_db import Database, ExportOptions, iter_rated, iter_rows, leaderboard_of
from feedback_db.cli import main
from feedback_db.export import Tally
from feedback_db.raters import invite, revoke
from feedback_db.reading import RatingFilter, SetAsideTally, iter_rated_by_comparison
from feedback_db.rules import Rules, apply_rules
from feedback_db.schema import Comparison
from tests.databases import rate, store_comparison

LEAK = {"contender": "As a Llama model made by Meta, I would say: Rayleigh scattering."}


def raters(database: Database, *names: str) -> list[str]:
    with database.session() as session:
        return [invite(session, name)[0].id for name in names]


def export(database: Database, export_format: str, **options: Any) -> tuple[list[dict[str, Any]], Tally]:
    tally = Tally()
    with database.snapshot() as session:
        rows = list(iter_rows(session, ExportOptions(export_format, **options), tally))
    return rows, tally


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


@pytest.fixture
def each_reason(any_db: Database) -> dict[str, str]:
    """One counting rating and one set aside for each reason but gold; returns name -> comparison id."""
    ann, cal = raters(any_db, "ann", "cal")
    with any_db.session() as session:
        apply_rules(session, Rules(identity_words={"contender": ("Llama", "Meta")}, min_seconds_to_vote=2))
    ids = {name: store_comparison(any_db, ["contender", "other"], texts=LEAK) for name in ("leak", "named_leak")}
    ids |= {name: store_comparison(any_db, ["x", "y"]) for name in ("counts", "quick", "revoked")}
    ids["errored"] = store_comparison(any_db, ["x", "y"], errored=["y"])
    vote = {"strength": "better", "blind": True}
    rate(any_db, ids["counts"], choice="a", rater=ann, seconds_to_vote=5, **vote)
    rate(any_db, ids["leak"], choice="a", rater=ann, **vote)  # arena: the answer names its maker
    rate(any_db, ids["named_leak"], choice="a", rater=ann, **vote | {"blind": False})  # names shown: no leak
    rate(any_db, ids["quick"], choice="b", rater=ann, seconds_to_vote=0.5, **vote)
    rate(any_db, ids["errored"], choice="a", rater=ann, **vote)
    rate(any_db, ids["revoked"], choice="b", rater=cal, **vote)
    with any_db.session() as session:
        revoke(session, "cal")
    return ids


def test_each_reason_is_left_out_of_exports_and_counted_until_included(any_db: Database, each_reason: dict) -> None:
    rows, tally = export(any_db, "dpo")
    assert [row["comparison_id"] for row in rows] == [each_reason["counts"], each_reason["named_leak"]]
    assert all(row["rater"] is not None and "set_aside" not in row for row in rows)
    summary = tally.summary("dpo", ExportOptions("dpo"))
    assert (summary.ratings, summary.set_aside.ratings) == (2, 4)
    assert summary.line().endswith("; 4 ratings set aside: 1 identity leak, 1 errored, 1 too fast, 1 revoked")
    assert summary.as_json()["set_aside"] == {
        "ratings": 4,
        "reasons": {"identity_leak": 1, "errored": 1, "too_fast": 1, "revoked": 1},
        "included": False,
    }
    rows, tally = export(any_db, "dpo", include_set_aside=True)
    reasons = {row["comparison_id"]: row["set_aside"] for row in rows}
    assert reasons == {
        each_reason["counts"]: [],
        each_reason["named_leak"]: [],
        each_reason["leak"]: ["identity_leak"],
        each_reason["quick"]: ["too_fast"],
        each_reason["revoked"]: ["revoked"],
    }  # "errored" is back too, but its pair holds a failed answer: filtered out as before
    summary = tally.summary("dpo", ExportOptions("dpo", include_set_aside=True))
    assert summary.ratings == 6 and dict(tally.skipped) == {"errored": 1}
    assert "4 set-aside ratings included: 1 identity leak" in summary.line()


def test_each_reason_is_left_out_of_the_leaderboard_and_shown_until_included(
    any_db: Database, each_reason: dict
) -> None:
    from playground.leaderboard_view import summary

    with any_db.snapshot() as session:
        board = leaderboard_of(session, rounds=0)
        everything = leaderboard_of(session, rounds=0, include_set_aside=True)
    assert (board.ratings_used, board.set_aside.ratings, board.set_aside.included) == (1, 4, False)
    assert board.set_aside.reasons == {"identity_leak": 1, "errored": 1, "too_fast": 1, "revoked": 1}
    assert (everything.ratings_used, everything.set_aside.included) == (5, True)
    assert "4 ratings set aside: 1 identity leak, 1 errored, 1 too fast, 1 revoked." in summary(board)
    assert "4 set-aside ratings included" in summary(everything)
    url = any_db.engine.url.render_as_string(hide_password=False)
    code, out, _ = cli("leaderboard", "--db-url", url, "--rounds", "0")
    assert code == 0 and "from 1 battles in 1 blind (arena) ratings" in out
    assert "4 ratings set aside: 1 identity leak, 1 errored, 1 too fast, 1 revoked (--include-set-aside" in out
    code, out, _ = cli("leaderboard", "--db-url", url, "--rounds", "0", "--include-set-aside", "--json")
    data = json.loads(out)
    assert code == 0 and data["ratings_used"] == 5 and data["set_aside"]["included"] is True


def test_the_cli_export_says_what_it_set_aside_and_brings_it_back(any_db: Database, each_reason: dict) -> None:
    url = any_db.engine.url.render_as_string(hide_password=False)
    code, out, err = cli("export", "--db-url", url, "--format", "kto", "--output", "-")
    assert code == 0 and len(out.splitlines()) == 4  # two ratings, two labelled answers each
    assert err.rstrip().endswith("4 ratings set aside: 1 identity leak, 1 errored, 1 too fast, 1 revoked")
    code, out, err = cli(
        "export", "--db-url", url, "--format", "kto", "--output", "-", "--include-set-aside", "--summary-json"
    )
    rows, summary = [json.loads(line) for line in out.splitlines()], json.loads(err)
    reasons = {tuple(row["set_aside"]) for row in rows}
    assert code == 0 and reasons == {(), ("identity_leak",), ("errored",), ("too_fast",), ("revoked",)}
    assert summary["set_aside"]["included"] is True and summary["ratings"] == 6 and summary["output"] == "-"


def test_include_errors_brings_back_the_ratings_set_aside_only_as_errored(any_db: Database, each_reason: dict) -> None:
    rows, tally = export(any_db, "dpo", include_errors=True)
    assert each_reason["errored"] in {row["comparison_id"] for row in rows}
    assert tally.set_aside.reasons == {"identity_leak": 1, "too_fast": 1, "revoked": 1}


def test_a_rater_failing_gold_items_has_every_rating_set_aside(any_db: Database) -> None:
    dan, eve = raters(any_db, "dan", "eve")
    with any_db.session() as session:
        apply_rules(session, Rules(min_gold_accuracy=0.8))
    for _ in range(5):
        gold = store_comparison(any_db, ["good", "bad"])
        with any_db.session() as session:
            session.get(Comparison, gold).gold_position = 0  # answer 0 is the known better one
        rate(any_db, gold, choice="b", blind=True, rater=dan)  # wrong every time
        rate(any_db, gold, choice="a", blind=True, rater=eve)  # right every time
    for choice in ("a", "b"):
        ordinary = store_comparison(any_db, ["x", "y"])
        rate(any_db, ordinary, choice=choice, blind=True, rater=dan)
        rate(any_db, ordinary, choice=choice, blind=True, rater=eve)
    with any_db.snapshot() as session:
        board = leaderboard_of(session, rounds=0)
    assert (board.ratings_used, board.set_aside.ratings, board.set_aside.reasons) == (7, 7, {"gold": 7})
    rows, tally = export(any_db, "dpo")
    assert len(rows) == 7 and {row["rater"] for row in rows} == {eve}
    assert tally.summary("dpo").line().endswith("; 7 ratings set aside: 7 below gold accuracy")
    rows, _ = export(any_db, "dpo", include_set_aside=True)
    assert sum(row["rater"] == dan for row in rows) == 7
    assert all(row["set_aside"] == (["gold"] if row["rater"] == dan else []) for row in rows)


# --- majority of raters --------------------------------------------------------------------------


@pytest.fixture
def split_votes(any_db: Database) -> dict[str, str]:
    """Three raters: a 2-1 split (ann and bob for A, cal for B; dan's quick vote set aside), a 1-1-1 split
    (A, B, tie), and a majority of ties."""
    ann, bob, cal, dan = raters(any_db, "ann", "bob", "cal", "dan")
    with any_db.session() as session:
        apply_rules(session, Rules(min_seconds_to_vote=1))
    ids = {name: store_comparison(any_db, ["x", "y"]) for name in ("two_one", "three_ways", "ties")}
    votes = {
        "two_one": [(ann, "a", "significantly_better"), (bob, "a", "better"), (cal, "b", "better")],
        "three_ways": [(ann, "a", "better"), (bob, "b", "better"), (cal, "tie", None)],
        "ties": [(ann, "tie", None), (bob, "tie", None), (cal, "a", "better")],
    }
    for name, given in votes.items():
        for rater, choice, strength in given:
            rate(any_db, ids[name], choice=choice, strength=strength, blind=True, rater=rater, seconds_to_vote=3)
    rate(any_db, ids["two_one"], choice="b", strength="better", blind=True, rater=dan, seconds_to_vote=0.2)
    return ids


def test_majority_gives_one_row_per_pair_that_most_raters_agree_on(any_db: Database, split_votes: dict) -> None:
    rows, tally = export(any_db, "reward", aggregate="majority")
    (row,) = rows  # the 1-1-1 split has no majority; the ties' majority says no pair
    assert (row["comparison_id"], row["chosen_contender"], row["raters"], row["minority"]) == (
        split_votes["two_one"],
        "x",
        3,  # dan's quick vote is set aside: not one of the raters
        1,
    )
    # The median of the majority's strengths (significantly better, better), the weaker of the two.
    assert (row["strength"], row["margin"], row["rater"]) == ("better", pytest.approx(2 / 3), None)
    summary = tally.summary("reward", ExportOptions("reward", aggregate="majority"))
    assert (summary.comparisons, summary.ratings, summary.no_majority) == (3, 9, 1)
    assert summary.line().startswith("exported 1 reward rows from 9 ratings of 3 comparisons (majority of raters)")
    assert "; no majority: 1 pair;" in summary.line() and summary.line().endswith("1 rating set aside: 1 too fast")


def test_majority_for_kto_labels_and_sft_answers(any_db: Database, split_votes: dict) -> None:
    rows, tally = export(any_db, "kto", aggregate="majority")
    assert [(row["contender"], row["label"], row["raters"], row["minority"]) for row in rows] == [
        ("x", True, 3, 1),
        ("y", False, 3, 1),
    ]
    assert {row["comparison_id"] for row in rows} == {split_votes["two_one"]}
    assert tally.no_majority == 2  # both answers of the 1-1-1 split
    rows, tally = export(any_db, "sft", aggregate="majority")
    assert [(row["comparison_id"], row["contender"], row["raters"], row["minority"]) for row in rows] == [
        (split_votes["two_one"], "x", 3, 1)
    ]
    assert tally.no_majority == 1
    # With the set-aside vote back, 2 of 4 is no strict majority.
    rows, _ = export(any_db, "dpo", aggregate="majority", include_set_aside=True)
    assert rows == []


def test_majority_from_the_cli_writes_raters_and_minority_columns(
    any_db: Database, split_votes: dict, tmp_path: Any
) -> None:
    import pyarrow.parquet as pq

    url = any_db.engine.url.render_as_string(hide_password=False)
    path = tmp_path / "majority.parquet"
    code, _, err = cli("export", "--db-url", url, "--format", "dpo", "--output", str(path), "--aggregate", "majority")
    assert code == 0 and "no majority: 1 pair" in err
    table = pq.read_table(path)
    assert table.column_names[-2:] == ["raters", "minority"] and table.to_pylist()[0]["minority"] == 1
    code, out, _ = cli("export", "--db-url", url, "--format", "dpo", "--output", "-")
    assert code == 0 and len(out.splitlines()) == 6  # one row per rating: A, A, B; A, B (a tie: none); A


def test_ratings_grouped_by_comparison_stay_whole_across_pages(any_db: Database, split_votes: dict) -> None:
    with any_db.snapshot() as session:
        small = list(iter_rated_by_comparison(session, batch_comparisons=1))
        large = list(iter_rated_by_comparison(session))
        counted = SetAsideTally()
        flat = list(iter_rated(session, RatingFilter(), set_aside=counted))
    assert small == large and [len(group) for group in small] == [3, 3, 3]
    assert sorted(r.rating_id for group in small for r in group) == sorted(r.rating_id for r in flat)
    assert (counted.ratings, dict(counted.reasons)) == (1, {"too_fast": 1})
