"""Export files and the command line: JSONL and Parquet round trips, streaming, clear refusals."""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import event

from feedback_db import Database, ExportOptions, export_to, iter_rated, iter_rows, open_database, sqlite_url
from feedback_db.cli import main
from feedback_db.reading import BATCH_RATINGS
from tests.databases import seed_golden

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Database]]:
    path = tmp_path_factory.mktemp("golden") / "feedback.sqlite3"
    database = open_database(sqlite_url(path))
    seed_golden(database)
    yield sqlite_url(path), database
    database.dispose()


def rows_of(database: Database, export_format: str) -> list[dict[str, Any]]:
    with database.snapshot() as session:
        return list(iter_rows(session, ExportOptions(export_format)))


@pytest.mark.parametrize("export_format", ["dpo", "reward", "kto", "sft"])
def test_jsonl_and_parquet_files_hold_the_same_rows(golden: tuple, tmp_path: Path, export_format: str) -> None:
    _, database = golden
    expected = rows_of(database, export_format)
    jsonl, parquet = tmp_path / "out.jsonl", tmp_path / "out.parquet"
    assert export_to(database, ExportOptions(export_format), jsonl).rows == len(expected)
    assert export_to(database, ExportOptions(export_format), parquet).rows == len(expected)
    assert [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()] == expected
    assert pq.read_table(parquet).to_pylist() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.parquet"]  # no partial files left


def test_parquet_with_no_rows_still_has_the_schema(tmp_path: Path) -> None:
    database = open_database(sqlite_url(tmp_path / "empty.sqlite3"))
    export_to(database, ExportOptions("reward"), tmp_path / "empty.parquet")
    table = pq.read_table(tmp_path / "empty.parquet")
    assert table.num_rows == 0 and table.column_names[:4] == ["prompt", "chosen", "rejected", "margin"]
    database.dispose()


def test_export_streams_a_page_of_ratings_at_a_time(golden: tuple) -> None:
    _, database = golden
    assert inspect.isgeneratorfunction(iter_rows) and inspect.isgeneratorfunction(iter_rated)
    selects: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.snapshot() as session:
            rows = iter_rows(session, ExportOptions("dpo"))
            assert next(rows)["comparison_id"] == "1" * 32  # a row is out before the export has finished
            assert len(selects) == 2 and "LIMIT" in selects[0]  # one page of ratings, then its answers
            assert len(list(rows)) == 6 and len(selects) == 3  # and an empty page: the end
        with database.snapshot() as session:
            selects.clear()
            # The last of the 8 ratings is set aside ("errored"): read, counted, not yielded.
            assert len(list(iter_rated(session, batch_ratings=3))) == 7
            assert len(selects) == 3 * 2 + 1  # pages of 3, 3 and 2 ratings, then an empty one
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert BATCH_RATINGS == 1_000


def test_ratings_split_across_batches_stay_whole(golden: tuple) -> None:
    _, database = golden
    with database.snapshot() as session:
        small = list(iter_rated(session, batch_ratings=2))  # ratings 3 and 4 straddle a page boundary
        large = list(iter_rated(session))
    assert small == large and len(small) == 7  # the eighth is set aside ("errored")
    assert [len(rated.answers) for rated in small] == [2, 2, 2, 2, 3, 3, 2]


def test_cli_writes_jsonl_to_stdout_and_the_summary_to_stderr(golden: tuple) -> None:
    url, database = golden
    out, err = io.StringIO(), io.StringIO()
    assert main(["export", "--db-url", url, "--format", "dpo", "--output", "-"], out, err) == 0
    assert [json.loads(line) for line in out.getvalue().splitlines()] == rows_of(database, "dpo")
    assert err.getvalue() == (
        "exported 7 dpo rows from 7 ratings; ties left out: 2; both-bad ratings left out: 1; "
        "filtered out: 1 preferring an unsafe answer to a safe one; 1 rating set aside: 1 errored\n"
    )


def test_cli_include_errors_keeps_the_pair_with_a_failed_answer(golden: tuple) -> None:
    url, _ = golden
    out, err = io.StringIO(), io.StringIO()
    assert main(["export", "--db-url", url, "--format", "dpo", "--output", "-", "--include-errors"], out, err) == 0
    assert [json.loads(line)["lineup"] for line in out.getvalue().splitlines()][-1] == "llama2"
    assert err.getvalue().startswith("exported 8 dpo rows") and "failed answer" not in err.getvalue()


def test_cli_filters_and_parquet_output(golden: tuple, tmp_path: Path) -> None:
    url, _ = golden
    err = io.StringIO()
    argv = [
        "export",
        "--db-url",
        url,
        "--format",
        "reward",
        "--output",
        str(tmp_path / "r.parquet"),
        "--min-strength",
        "better",
        "--contender",
        "x",
        "y",
        "--contender",
        "z",
        "--blind-only",
        "--exclude-unsafe",
        "--lineup",
        "demo",
        "--since",
        "2000-01-01",
        "--until",
        "2999-01-01",
    ]
    assert main(argv, io.StringIO(), err) == 0
    assert [row["margin"] for row in pq.read_table(tmp_path / "r.parquet").to_pylist()] == [1.0, 1.0, 2 / 3]
    assert err.getvalue().startswith("exported 3 reward rows from 6 ratings;")
    assert err.getvalue().rstrip().endswith(f"-> {tmp_path / 'r.parquet'}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--format", "dpo", "--output", "out.csv"], "must end in .jsonl or .parquet"),
        (["--format", "dpo", "--output", "/no/such/folder/out.jsonl"], "/no/such/folder of --output does not exist"),
        (["--format", "dpo", "--output", "-", "--since", "yesterday"], "'yesterday' is not an ISO date or time"),
        (["--format", "dpo", "--output", "-", "--since", "2026-02-01", "--until", "2026-01-01"], "is not before"),
        (["--format", "dpo", "--output", "-", "--min-strength", "much"], "invalid choice: 'much'"),
        (["--format", "csv", "--output", "-"], "invalid choice: 'csv'"),
        (["--output", "-"], "the following arguments are required: --format"),
        (["--format", "dpo", "--output", "-", "--db-url", "nosuchdb://h/db"], "unknown database kind 'nosuchdb'"),
        (
            ["--format", "dpo", "--output", "-", "--db-url", "sqlite:////no/such/feedback.sqlite3"],
            "there is no database file at /no/such/feedback.sqlite3",
        ),
    ],
)
def test_cli_refuses_bad_arguments_with_exit_code_2_and_no_traceback(
    golden: tuple, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = golden
    db = [] if "--db-url" in argv else ["--db-url", url]
    err = io.StringIO()
    assert main(["export", *db, *argv], io.StringIO(), err) == 2
    printed = err.getvalue() + capsys.readouterr().err  # argparse prints to sys.stderr itself
    assert message in printed and "Traceback" not in printed


def test_python_dash_m_runs_the_export_and_the_leaderboard(golden: tuple, tmp_path: Path) -> None:
    url, _ = golden
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "feedback_db",
        "export",
        "--db-url",
        url,
        "--format",
        "sft",
        "--output",
        str(tmp_path / "sft.jsonl"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr.startswith("exported 4 sft rows from 7 ratings")
    assert len((tmp_path / "sft.jsonl").read_text().splitlines()) == 4
    bad = subprocess.run(
        [sys.executable, "-m", "feedback_db", "leaderboard", "--db-url", url, "--rounds", "-3"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert bad.returncode == 2 and "'-3' is not a whole number >= 0" in bad.stderr and "Traceback" not in bad.stderr
