"""Golden export rows from a seeded database: every format, the shuffled positions, margins, filters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from feedback_db import FORMATS, Database, ExportOptions, RatingFilter, iter_rows, open_database, sqlite_url
from feedback_db.export import Tally
from tests.databases import CONVERSATION, QUESTION, seed_golden, stored_rating

SLIGHTLY, BETTER, SIGNIFICANTLY = 1 / 3, 2 / 3, 1.0


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, dict[str, tuple[str, str]]]]:
    database = open_database(sqlite_url(tmp_path_factory.mktemp("golden") / "feedback.sqlite3"))
    yield database, seed_golden(database)
    database.dispose()


def export(database: Database, export_format: str, **options: Any) -> tuple[list[dict[str, Any]], Tally]:
    tally = Tally()
    with database.snapshot() as session:
        rows = list(iter_rows(session, ExportOptions(export_format, **options), tally))
    return rows, tally


def reply(contender: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": f"answer of {contender}"}]


def trace(
    ids: dict[str, tuple[str, str]], name: str, kind: str = "pairwise", blind: bool = True, lineup: str = "demo"
) -> dict[str, Any]:
    comparison_id, rating_id = ids[name]
    return {
        "comparison_id": comparison_id,
        "rating_id": rating_id,
        "lineup": lineup,
        "blind": blind,
        "kind": kind,
        "rater": None,  # the golden ratings name no rater
    }


def pair(
    ids: dict,
    name: str,
    chosen: tuple[str, int],
    rejected: tuple[str, int],
    strength: str | None,
    prompt: list[dict[str, str]] = QUESTION,
    **trace_fields: Any,
) -> dict[str, Any]:
    return (
        {"prompt": prompt, "chosen": reply(chosen[0]), "rejected": reply(rejected[0])}
        | trace(ids, name, **trace_fields)
        | {
            "strength": strength,
            "chosen_contender": chosen[0],
            "rejected_contender": rejected[0],
            "chosen_position": chosen[1],
            "rejected_position": rejected[1],
        }
    )


def expected_dpo(ids: dict, include_errors: bool = False) -> list[dict[str, Any]]:
    """The golden dpo rows; "errored" (x against a failed answer of y, set aside as "errored") only with
    include_errors."""
    rows = [
        # Position 0 showed "y" and the person chose B: the chosen answer is x's, at position 1.
        pair(ids, "shuffled", ("x", 1), ("y", 0), "significantly_better", prompt=CONVERSATION),
        pair(ids, "named", ("x", 0), ("y", 1), "slightly_better", blind=False),
        pair(ids, "scores", ("x", 0), ("y", 1), "slightly_better", kind="scores"),  # 5 vs 4
        pair(ids, "scores", ("x", 0), ("z", 2), "significantly_better", kind="scores"),  # 5 vs 2
        pair(ids, "scores", ("y", 1), ("z", 2), "better", kind="scores"),  # 4 vs 2
        pair(ids, "ranking", ("z", 0), ("x", 1), None, kind="ranking"),
        pair(ids, "ranking", ("z", 0), ("y", 2), None, kind="ranking"),
    ]
    if include_errors:
        rows.append(pair(ids, "errored", ("x", 0), ("y", 1), "better", lineup="llama2"))
    return rows


def test_dpo_rows_are_the_golden_rows(golden: tuple) -> None:
    database, ids = golden
    rows, tally = export(database, "dpo")
    assert rows == expected_dpo(ids)
    assert (tally.ratings, tally.rows, tally.ties, tally.both_bad, dict(tally.skipped)) == (
        7,
        7,
        2,
        1,
        {"unsafe_chosen": 1},
    )
    # The rating of a comparison with a failed answer is set aside as "errored" by the default rules.
    assert tally.summary("dpo").line() == (
        "exported 7 dpo rows from 7 ratings; ties left out: 2; both-bad ratings left out: 1; "
        "filtered out: 1 preferring an unsafe answer to a safe one; 1 rating set aside: 1 errored"
    )


def test_reward_rows_add_the_llama2_margin(golden: tuple) -> None:
    database, ids = golden
    rows, _ = export(database, "reward")
    margins = [SIGNIFICANTLY, SLIGHTLY, SLIGHTLY, SIGNIFICANTLY, BETTER, 0.0, 0.0]
    expected = [
        {
            **{k: v for k, v in row.items() if k in ("prompt", "chosen", "rejected")},
            "margin": margin,
            **{k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")},
        }
        for row, margin in zip(expected_dpo(ids), margins)
    ]
    assert rows == expected
    assert list(rows[0]) == [
        "prompt",
        "chosen",
        "rejected",
        "margin",
        "comparison_id",
        "rating_id",
        "lineup",
        "blind",
        "kind",
        "rater",
        "strength",
        "chosen_contender",
        "rejected_contender",
        "chosen_position",
        "rejected_position",
    ]


def kto(
    ids: dict,
    name: str,
    contender: str,
    position: int,
    label: bool,
    source: str,
    prompt: list[dict[str, str]] = QUESTION,
    **trace_fields: Any,
) -> dict[str, Any]:
    return (
        {"prompt": prompt, "completion": reply(contender), "label": label}
        | trace(ids, name, **trace_fields)
        | {"label_source": source, "contender": contender, "position": position}
    )


def test_kto_rows_label_answers_by_the_documented_rules(golden: tuple) -> None:
    database, ids = golden
    rows, tally = export(database, "kto")
    assert rows == [
        kto(ids, "shuffled", "y", 0, False, "preference", prompt=CONVERSATION),
        kto(ids, "shuffled", "x", 1, True, "preference", prompt=CONVERSATION),
        # "named" is only slightly better and "tie" a tie: no absolute label.
        kto(ids, "both_bad", "x", 0, False, "both_bad"),
        kto(ids, "both_bad", "y", 1, False, "both_bad"),
        kto(ids, "scores", "x", 0, True, "score", kind="scores"),
        kto(ids, "scores", "y", 1, True, "score", kind="scores"),
        kto(ids, "scores", "z", 2, False, "score", kind="scores"),
        # A ranking is relative only: no labels. "unsafe" preferred an unsafe answer: it labels nothing.
        # "errored" (y failed) is set aside.
    ]
    assert dict(tally.skipped) == {"no_label": 7, "unsafe_chosen": 1}
    assert "both-bad ratings labelled undesirable: 1" in tally.summary("kto").line()


def test_sft_rows_are_the_preferred_answers(golden: tuple) -> None:
    database, ids = golden
    rows, tally = export(database, "sft")

    def sft(name: str, contender: str, position: int, prompt: list = QUESTION, **fields: Any) -> dict[str, Any]:
        return (
            {"messages": prompt + reply(contender)}
            | trace(ids, name, **fields)
            | {"contender": contender, "position": position}
        )

    assert rows == [
        sft("shuffled", "x", 1, CONVERSATION),
        sft("named", "x", 0, blind=False),
        sft("scores", "x", 0, kind="scores"),  # y beat z but lost to x
        sft("ranking", "z", 0, kind="ranking"),  # x's only win in "errored" was over a failed answer
    ]
    assert (tally.ties, tally.both_bad, dict(tally.skipped)) == (2, 1, {"unsafe_chosen": 1})


@pytest.mark.parametrize(
    ("options", "kept", "skipped"),
    [
        ({"min_strength": "better"}, ["shuffled", "scores", "scores"], {"strength": 4}),
        (
            {"min_strength": "negligibly_better"},
            ["shuffled", "named", "scores", "scores", "scores"],
            {"strength": 2},
        ),  # a ranking says nothing about strength
        ({"contenders": {"x", "y"}}, ["shuffled", "named", "scores"], {"contender": 4}),
        (
            {"include_errors": True},
            ["shuffled", "named", "scores", "scores", "scores", "ranking", "ranking", "errored"],
            {},
        ),
        (
            {"exclude_unsafe": True},
            ["shuffled", "named", "scores", "scores", "scores", "ranking", "ranking"],
            {"unsafe": 1},
        ),
        (
            {"where": RatingFilter(blind_only=True)},
            ["shuffled", "scores", "scores", "scores", "ranking", "ranking"],
            {},
        ),
        ({"where": RatingFilter(lineup="llama2")}, [], {}),  # its one rating is set aside as "errored"
    ],
)
def test_filters_keep_the_right_pairs_and_count_the_rest(
    golden: tuple, options: dict, kept: list[str], skipped: dict[str, int]
) -> None:
    database, ids = golden
    rows, tally = export(database, "dpo", **options)
    assert [row["comparison_id"] for row in rows] == [ids[name][0] for name in kept]
    assert {k: v for k, v in tally.skipped.items() if k != "unsafe_chosen"} == skipped


def test_time_range_selects_ratings_by_when_they_were_given(tmp_path: Path) -> None:
    database = open_database(sqlite_url(tmp_path / "feedback.sqlite3"))
    early, _ = stored_rating(database, ["x", "y"], choice="a")
    time.sleep(0.01)
    middle = datetime.now(timezone.utc)
    time.sleep(0.01)
    late, _ = stored_rating(database, ["x", "y"], choice="b")
    cases = {(None, middle): [early], (middle, None): [late], (None, None): [early, late], (middle, middle): []}
    for (since, until), expected in cases.items():
        rows, _ = export(database, "dpo", where=RatingFilter(since=since, until=until))
        assert [row["comparison_id"] for row in rows] == expected, (since, until)
    database.dispose()


def test_kto_filters_answers_one_by_one(golden: tuple) -> None:
    database, ids = golden
    rows, tally = export(database, "kto", exclude_unsafe=True, contenders={"x", "z"})
    assert [(row["comparison_id"], row["contender"]) for row in rows] == [
        (ids["shuffled"][0], "x"),
        (ids["both_bad"][0], "x"),
        (ids["scores"][0], "x"),
        (ids["scores"][0], "z"),
    ]
    # The unsafe rating is left out whole before any answer is looked at; "errored" is set aside.
    assert dict(tally.skipped) == {"no_label": 7, "contender": 3, "unsafe_chosen": 1}


def test_a_vote_for_an_unsafe_answer_over_a_safe_one_gives_no_kto_labels(database: Database) -> None:
    # Llama 2, section 3.2.1: safer answers are the better ones, so such a vote contradicts itself.
    stored_rating(database, ["x", "y"], choice="a", strength="better", unsafe={0: "insults"})
    stored_rating(database, ["x", "y"], "scores", scores={0: 5, 1: 2}, unsafe={0: None})
    safe_won, _ = stored_rating(database, ["x", "y"], choice="a", strength="better", unsafe={1: "insults"})
    rows, tally = export(database, "kto")
    assert [(row["comparison_id"], row["contender"], row["label"], row["label_source"]) for row in rows] == [
        (safe_won, "x", True, "preference"),
        (safe_won, "y", False, "unsafe"),
    ]
    assert dict(tally.skipped) == {"unsafe_chosen": 2}
    assert tally.summary("kto").line().endswith("filtered out: 2 preferring an unsafe answer to a safe one")


@pytest.mark.parametrize("export_format", FORMATS)
def test_failed_answers_are_left_out_of_every_format_unless_included(database: Database, export_format: str) -> None:
    stored_rating(database, ["x", "y"], choice="a", strength="better", comparison={"errored": ["y"]})
    left_out, tally = export(database, export_format)
    # The default rules set aside the rating of a comparison whose answer failed: nothing of it is exported.
    assert left_out == [] and dict(tally.skipped) == {}
    assert tally.summary(export_format).line().endswith("; 1 rating set aside: 1 errored")
    kept, tally = export(database, export_format, include_errors=True)
    # include_errors brings the rating back; KTO labels both answers, the others keep the x > y pair.
    assert len(kept) == (2 if export_format == "kto" else 1)
    assert dict(tally.skipped) == {} and "set aside" not in tally.summary(export_format).line()


def test_a_failed_answer_never_becomes_an_sft_row(database: Database) -> None:
    stored_rating(database, ["x", "y"], choice="b", comparison={"errored": ["y"]})
    rows, tally = export(database, "sft", include_errors=True)
    assert rows == [] and dict(tally.skipped) == {"errored": 1}


def test_pairs_whose_answers_replied_to_different_conversations_are_left_out(tmp_path: Path) -> None:
    # A later turn in named mode: each pane kept its own earlier answer, so there is no shared prompt.
    from feedback_db import add_comparison, add_rating, add_response
    from feedback_db.records import ComparisonRecord, RatingRecord, ResponseRecord

    database = open_database(sqlite_url(tmp_path / "feedback.sqlite3"))
    record = ComparisonRecord(lineup="demo", session_id="s", prompt="And Spain?", n_responses=2, mode="named")
    with database.session() as session:
        add_comparison(session, record)
        for position, earlier in enumerate(("Paris.", "It is Paris, of course.")):
            history = [
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": earlier},
                {"role": "user", "content": "And Spain?"},
            ]
            add_response(
                session,
                ResponseRecord(
                    comparison_id=record.id,
                    position=position,
                    contender=f"c{position}",
                    weights_id="w",
                    messages=history,
                    prompt_rendered="",
                    params={},
                    text="Madrid.",
                    finish_reason="stop",
                    prompt_tokens=1,
                    completion_tokens=1,
                    duration_s=0.1,
                ),
            )
        add_rating(session, RatingRecord(record.id, "pairwise", choice="a", strength="better"))
    rows, tally = export(database, "dpo")
    assert rows == [] and dict(tally.skipped) == {"different_prompts": 1}
    assert "1 whose answers replied to different conversations" in tally.summary("dpo").line()
    database.dispose()


@pytest.mark.parametrize("export_format", ["dpo", "reward"])
def test_pairs_whose_chosen_and_rejected_texts_are_identical_are_left_out(
    database: Database, export_format: str
) -> None:
    # Two contenders that gave the same reply: the pair says nothing a preference model could learn.
    stored_rating(database, ["x", "y"], choice="a", strength="better", comparison={"texts": {"x": "4", "y": "4"}})
    stored_rating(database, ["x", "y"], choice="a", strength="better", comparison={"texts": {"x": "4", "y": "5"}})
    rows, tally = export(database, export_format)
    assert [(row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in rows] == [("4", "5")]
    assert dict(tally.skipped) == {"identical": 1}
    assert "1 whose chosen and rejected answers are the same text" in tally.summary(export_format).line()
    sft, _ = export(database, "sft")  # the winner's reply is still a good SFT example
    assert len(sft) == 2
