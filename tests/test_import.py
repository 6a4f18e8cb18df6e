"""`python -m feedback_db import`: TRL preference rows and exports in, all or nothing, and their agreement out."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pytest
from sqlalchemy import select

from feedback_db import Comparison, Database, Rating, Response, count_rows, open_database, sqlite_url
from feedback_db.cli import main
from feedback_db.raters import invite
from feedback_db.records import STRENGTHS
from feedback_db.schema import Rater
from tests.databases import CONVERSATION, rate, store_comparison

REPO = Path(__file__).resolve().parents[1]
RATERS = ("ann", "bob", "cat")


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def forty_items(seed: int = 7) -> tuple[list[dict[str, Any]], dict[tuple[int, str], str]]:
    """40 items, 3 raters, some missing; odd items in TRL's conversational form. Returns the rows and
    (item, rater) -> the chosen text."""
    rng = np.random.default_rng(seed)
    rows, chosen_by = [], {}
    for item in range(40):
        question = f"Question {item}: why is the sky blue?"
        answers = (f"Rayleigh scattering, take {item}.", f"Because of the ocean, take {item}.")
        better = int(rng.integers(2))
        skipped = {rater for rater in RATERS if rng.random() < 0.15}  # missing values
        if len(skipped) == len(RATERS):
            skipped.discard(RATERS[0])  # every item is rated at least once: 40 comparisons
        for rater in RATERS:
            if rater in skipped:
                continue
            pick = better if rng.random() < 0.85 else 1 - better
            chosen, rejected = answers[pick], answers[1 - pick]
            chosen_by[item, rater] = chosen
            row: dict[str, Any] = {"prompt": question, "chosen": chosen, "rejected": rejected, "rater": rater}
            if item % 2:
                row["prompt"] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
                row["chosen"] = [{"role": "assistant", "content": chosen}]
                row["rejected"] = [{"role": "assistant", "content": rejected}]
            if rng.random() < 0.5:
                row["strength"] = STRENGTHS[int(rng.integers(len(STRENGTHS)))]
            rows.append(row)
    return rows, chosen_by


def stored_answers(database: Database, prompt: str) -> list[Response]:
    with database.session() as session:
        comparison = session.scalars(select(Comparison).where(Comparison.prompt == prompt)).one()
        return list(comparison.responses)


def test_an_imported_40_item_3_rater_file_gives_the_packages_alpha(db_url: str, any_db: Database, tmp_path: Path):
    rows, chosen_by = forty_items()
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    code, out, err = run("import", str(path), "--db-url", db_url)
    assert code == 0, err
    assert out == (
        f"read {len(rows)} rows from prefs.jsonl: 40 comparisons stored, 0 matched (lineup prefs); "
        f"{len(rows)} ratings stored, 0 matched; 3 raters\n"
    )
    # The reliability data as the package takes it: raters x items, the stored position that won.
    positions = np.full((3, 40), np.nan)
    for (item, rater), chosen in chosen_by.items():
        answers = stored_answers(any_db, f"Question {item}: why is the sky blue?")
        positions[RATERS.index(rater), item] = next(a.position for a in answers if a.text == chosen)
    assert np.isnan(positions).any()  # missing values are part of the case
    code, out, err = run("agreement", "--db-url", db_url, "--json")
    assert code == 0, err
    verdict = json.loads(out)["verdict"]
    expected = krippendorff.alpha(reliability_data=positions, level_of_measurement="nominal")
    assert verdict["value"] == pytest.approx(expected, abs=1e-9)
    pairable = [int((~np.isnan(positions[:, i])).sum()) for i in range(40)]
    assert verdict["items"] == sum(n >= 2 for n in pairable)
    assert verdict["ratings"] == sum(n for n in pairable if n >= 2)


def test_rows_become_comparisons_answers_and_ratings_as_the_store_keeps_them(database: Database, tmp_path: Path):
    rows, _ = forty_items()
    rows.append(dict(rows[0]))  # the same rater's same row again: one rating
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    url = sqlite_url(tmp_path / "feedback.sqlite3")
    assert run("import", str(path), "--db-url", url)[0] == 0
    with database.session() as session:
        raters = {r.name: r for r in session.scalars(select(Rater))}
        assert sorted(raters) == list(RATERS) and {r.kind for r in raters.values()} == {"imported"}
        ratings = list(session.scalars(select(Rating)))
        assert len(ratings) == len(rows) - 1
        assert {r.source for r in ratings} == {"import"} and {r.rater for r in ratings} <= {
            r.id for r in raters.values()
        }
        assert {r.kind for r in ratings} == {"pairwise"} and {r.blind for r in ratings} == {False}
        first = session.scalars(select(Comparison).where(Comparison.prompt == "Question 0: why is the sky blue?")).one()
        assert (first.lineup, first.mode, first.n_responses, first.turn, first.system_prompt) == (
            "prefs",
            "arena",
            2,
            0,
            None,
        )
        assert first.complete_at is not None and first.gold_position is None
        answer = first.responses[0]
        assert answer.messages == [{"role": "user", "content": "Question 0: why is the sky blue?"}]
        assert (answer.weights_id, answer.prompt_rendered, answer.params, answer.finish_reason) == (
            answer.contender,
            "",
            {},
            "stop",
        )
        assert (answer.prompt_tokens, answer.completion_tokens, answer.duration_s) == (0, 0, 0.0)
        odd = session.scalars(select(Comparison).where(Comparison.prompt == "Question 1: why is the sky blue?")).one()
        assert odd.system_prompt == "Be brief." and odd.responses[0].messages[0] == CONVERSATION[0]
        ann = next(r for r in ratings if r.comparison_id == first.id and r.rater == raters["ann"].id)
        won = next(a for a in first.responses if a.text == rows[0]["chosen"])
        assert (ann.choice, ann.strength) == ("ab"[won.position], rows[0].get("strength"))


def test_answers_are_ordered_by_a_hash_of_their_text_not_chosen_first(database: Database, tmp_path: Path):
    rows, _ = forty_items()
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    assert run("import", str(path), "--db-url", sqlite_url(tmp_path / "feedback.sqlite3"))[0] == 0
    first_chosen: dict[str, str] = {}  # question -> the chosen text of its first row
    for row in rows:
        question = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"]
        first_chosen.setdefault(
            question, row["chosen"] if isinstance(row["chosen"], str) else row["chosen"][0]["content"]
        )
    first_chosen_at = []
    with database.session() as session:
        for comparison in session.scalars(select(Comparison)):
            texts = [a.text for a in comparison.responses]
            assert texts == sorted(texts, key=lambda t: hashlib.sha256(t.encode()).hexdigest())
            first_chosen_at.append(texts.index(first_chosen[comparison.prompt]))
    assert len(first_chosen_at) == 40
    assert 5 < first_chosen_at.count(0) < 35  # both orders, by the hash


def test_importing_the_same_file_again_matches_everything(database: Database, tmp_path: Path):
    rows, _ = forty_items()
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    url = sqlite_url(tmp_path / "feedback.sqlite3")
    assert run("import", str(path), "--db-url", url)[0] == 0
    with database.session() as session:
        before = count_rows(session)
    code, out, _ = run("import", str(path), "--db-url", url)
    assert (
        code == 0 and f"0 comparisons stored, 40 matched (lineup prefs); 0 ratings stored, {len(rows)} matched" in out
    )
    with database.session() as session:
        assert count_rows(session) == before
    code, out, _ = run("import", str(path), "--db-url", url, "--lineup", "other")
    assert code == 0 and "40 comparisons stored, 0 matched (lineup other)" in out


GOOD = {"prompt": "q?", "chosen": "yes", "rejected": "no", "rater": "ann"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 2: not JSON (Expecting property name enclosed in double quotes at column 2)"),
        ({"prompt": "q", "chosen": "x"}, "line 2: lacks rejected; a row needs prompt, chosen and rejected"),
        ({"prompt": "q", "chosen": 5, "rejected": "y"}, "line 2: chosen must be a string or a list holding one"),
        ({**GOOD, "strength": "much"}, "line 2: strength must be one of significantly_better, better, slightly_"),
        ([1, 2], "line 2: expected a JSON object, got list"),
        ({**GOOD, "prompt": [{"role": "bot", "content": "x"}]}, "line 2: messages[0]['role'] must be one of"),
        ({**GOOD, "rater": 7}, "line 2: rater must be a non-empty string of at most 64 characters, got 7"),
        ({**GOOD, "blind": "yes"}, "line 2: blind must be true or false, got 'yes'"),
        (
            {**GOOD, "chosen": "no", "rejected": "yes"},
            "line 2: rater 'ann' rated this comparison differently on line 1",
        ),
        ({**GOOD, "comparison_id": "1" * 32}, "line 2: comparison_id, chosen_position and rejected_position come"),
        ({**GOOD, "rejected": "yes"}, "line 2: chosen and rejected are the same text"),
    ],
)
def test_a_bad_line_is_named_and_nothing_of_the_file_is_stored(database: Database, tmp_path: Path, bad, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, bad, {**GOOD, "prompt": "another"}])
    code, out, err = run("import", str(path), "--db-url", sqlite_url(tmp_path / "feedback.sqlite3"))
    assert (code, out) == (2, "")
    assert err.startswith("python -m feedback_db import: error: nothing was imported from bad.jsonl:\n")
    assert message in err and "Traceback" not in err
    with database.session() as session:
        assert sum(count_rows(session).values()) == 0


def test_a_refusal_while_storing_leaves_nothing_either(any_db: Database, db_url: str, tmp_path: Path):
    with any_db.session() as session:
        invite(session, "bob")  # an invited rater: a file's "bob" cannot be them
    path = write_jsonl(tmp_path / "late.jsonl", [GOOD, {**GOOD, "prompt": "other", "rater": "bob"}])
    code, _, err = run("import", str(path), "--db-url", db_url)
    assert code == 2 and "line 2: the name 'bob' belongs to an invited rater already" in err
    with any_db.session() as session:
        assert (count_rows(session)["comparisons"], count_rows(session)["raters"]) == (0, 1)


def test_as_review_stores_unrated_comparisons_and_says_the_ratings_were_not_stored(database: Database, tmp_path):
    rows, _ = forty_items()
    path = write_jsonl(tmp_path / "queue.jsonl", rows)
    code, out, _ = run("import", str(path), "--as", "review", "--db-url", sqlite_url(tmp_path / "feedback.sqlite3"))
    assert code == 0
    assert out.startswith(f"read {len(rows)} rows from queue.jsonl: 40 comparisons stored, 0 matched (lineup queue); ")
    assert f"; the file's {len(rows)} preferences are not ratings here (--as review)" in out and "; 0 raters" in out
    with database.session() as session:
        counts = count_rows(session)
        assert (counts["comparisons"], counts["ratings"], counts["raters"]) == (40, 0, 0)
        assert all(c.complete_at is not None and c.gold_position is None for c in session.scalars(select(Comparison)))


def test_as_gold_marks_the_chosen_answer_as_the_known_better_one(database: Database, tmp_path: Path):
    rows = [{"prompt": f"q{i}", "chosen": f"right {i}", "rejected": f"wrong {i}"} for i in range(6)]
    path = write_jsonl(tmp_path / "gold.jsonl", rows + rows[:2])  # a repeated row agrees with itself
    code, out, _ = run("import", str(path), "--as", "gold", "--db-url", sqlite_url(tmp_path / "feedback.sqlite3"))
    assert code == 0 and "6 comparisons stored" in out and "8 preferences are known answers (--as gold)" in out
    with database.session() as session:
        for comparison in session.scalars(select(Comparison)):
            assert comparison.responses[comparison.gold_position].text.startswith("right")
            assert comparison.n_ratings == 0
    flipped = write_jsonl(tmp_path / "flip.jsonl", [rows[0], {**rows[0], "chosen": "wrong 0", "rejected": "right 0"}])
    code, _, err = run("import", str(flipped), "--as", "gold", "--db-url", sqlite_url(tmp_path / "feedback.sqlite3"))
    assert code == 2 and "line 2: line 1 chose the other answer; a known-answer item has one" in err


def seed_for_export(database: Database) -> None:
    with database.session() as session:
        ann, bob = (invite(session, name)[0].id for name in ("ann", "bob"))
    both = store_comparison(database, ["x", "y"], messages=CONVERSATION)
    rate(database, both, choice="a", strength="better", blind=True, rater=ann)
    rate(database, both, choice="b", rater=bob)
    # Without a rater. (Identical answers would not be exported: a pair with the same text twice says nothing.)
    one = store_comparison(database, ["y", "z"], lineup="llama2", texts={"y": "one text", "z": "another text"})
    rate(database, one, choice="b", strength="significantly_better")
    three = store_comparison(database, ["x", "y", "z"])
    rate(database, three, "scores", scores={0: 5, 1: 4, 2: 2}, rater=ann)


def stored_state(database: Database) -> tuple[dict, dict, dict]:
    with database.session() as session:
        comparisons = {c.id: (c.lineup, c.n_responses, c.prompt) for c in session.scalars(select(Comparison))}
        answers = {
            (r.comparison_id, r.position): (r.contender, r.text, r.messages) for r in session.scalars(select(Response))
        }
        ratings = {
            (r.comparison_id, r.rater): (r.choice, r.strength, r.blind)
            for r in session.scalars(select(Rating).where(Rating.kind == "pairwise"))
        }
    return comparisons, answers, ratings


def test_an_export_imports_back_to_the_same_comparisons_and_ratings(tmp_path: Path):
    first_url, second_url = sqlite_url(tmp_path / "first.sqlite3"), sqlite_url(tmp_path / "second.sqlite3")
    first, second = open_database(first_url), open_database(second_url)
    try:
        seed_for_export(first)
        exported = tmp_path / "export.jsonl"
        assert run("export", "--db-url", first_url, "--format", "dpo", "--output", str(exported))[0] == 0
        code, out, err = run("import", str(exported), "--db-url", second_url)
        assert code == 0, err
        assert out == (
            "read 6 rows from export.jsonl: 3 comparisons stored, 0 matched (lineup demo, llama2); "
            "3 ratings stored, 0 matched; 2 raters; 3 pairs of scores or ranking ratings stored without their rating\n"
        )
        assert stored_state(second) == stored_state(first)
        with first.session() as session:
            before = count_rows(session)
        code, out, _ = run("import", str(exported), "--db-url", first_url)  # back into its own database
        assert code == 0 and "0 comparisons stored, 3 matched" in out and "0 ratings stored, 3 matched" in out
        with first.session() as session:
            assert count_rows(session) == before
    finally:
        first.dispose()
        second.dispose()


def test_an_export_row_naming_another_answer_is_refused(database: Database, tmp_path: Path):
    url = sqlite_url(tmp_path / "feedback.sqlite3")
    seed_for_export(database)
    exported = tmp_path / "export.jsonl"
    assert run("export", "--db-url", url, "--format", "dpo", "--output", str(exported))[0] == 0
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    line, row = next((n, row) for n, row in enumerate(rows, 1) if row["lineup"] == "llama2")  # its only row
    row["chosen"] = [{"role": "assistant", "content": "an answer this database never gave"}]
    code, _, err = run("import", str(write_jsonl(tmp_path / "edited.jsonl", rows)), "--db-url", url)
    assert (
        code == 2 and f"line {line}: comparison {row['comparison_id']} is stored without this answer at position" in err
    )
    with database.session() as session:
        assert session.scalar(select(Rater).where(Rater.name.is_(None))) is None  # nothing of the file stayed


def test_missing_and_empty_files_are_refused(database: Database, tmp_path: Path):
    url = sqlite_url(tmp_path / "feedback.sqlite3")
    code, _, err = run("import", str(tmp_path / "none.jsonl"), "--db-url", url)
    assert code == 2 and "there is no file at" in err
    code, _, err = run("import", str(write_jsonl(tmp_path / "empty.jsonl", ["", "  "])), "--db-url", url)
    assert code == 2 and "empty.jsonl holds no rows" in err
    code, _, err = run("import", str(write_jsonl(tmp_path / "x.jsonl", [GOOD])), "--db-url", url, "--lineup", " ")
    assert code == 2 and "a lineup name is 1 to 100 characters" in err


def test_python_dash_m_imports_and_reports_agreement(database: Database, tmp_path: Path):
    rows, _ = forty_items()
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    url = sqlite_url(tmp_path / "feedback.sqlite3")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def python_m(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "feedback_db", *argv]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    done = python_m("import", str(path), "--db-url", url)
    assert (done.returncode, done.stderr) == (0, "") and done.stdout.startswith(f"read {len(rows)} rows")
    done = python_m("agreement", "--db-url", url)
    assert done.returncode == 0 and "| Verdict (nominal) |" in done.stdout
    assert not any(name in done.stdout for name in RATERS)
    bad = python_m("import", str(write_jsonl(tmp_path / "bad.jsonl", ["[]"])), "--db-url", url)
    assert bad.returncode == 2 and "line 1: expected a JSON object, got list" in bad.stderr
    assert "Traceback" not in bad.stderr
