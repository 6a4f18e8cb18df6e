"""Schema migrations: revision 0001 is the first schema, head is schema.py, upgrades keep every row."""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, insert, select, text

from feedback_db import (
    Base,
    ComparisonRecord,
    Database,
    RatingRecord,
    ResponseRecord,
    SchemaError,
    add_comparison,
    add_rating,
    add_response,
    current_revision,
    get_comparison,
    head_revision,
    open_database,
    rating_of,
    responses_of,
    sqlite_url,
)
from feedback_db.migrate import downgrade, upgrade
from tests.databases import store_comparison
from tests.test_migrations_first_schema import FIRST_SCHEMA_SQL

TABLES = ("comparisons", "responses", "ratings", "answer_judgements")
# Columns added since each revision, with the value each old row gets (a function: of the row).


def _merged(*added: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for columns in added:
        for table, values in columns.items():
            tables[table] = {**tables.get(table, {}), **values}
    return tables


SINCE_0005 = {
    # Every old comparison in the fixtures holds one rating and all its answers.
    "comparisons": {
        "asked_by": None,
        "n_ratings": 1,
        "complete_at": lambda row: row["created_at"],
        "gold_position": None,
    },
    "ratings": {
        "source": "page",
        "shown_order": None,
        "seconds_to_vote": None,
        "terms_version": None,
        "guidelines_version": None,
        "set_aside": None,
    },
}
SINCE_0004 = _merged(SINCE_0005, {"comparisons": {"visitor": None, "interrupted_at": None}})
SINCE_0003 = _merged(
    SINCE_0004,
    {"responses": {"endpoint": None, "served_model": None, "system_fingerprint": None, "request": None, "usage": None}},
)
SINCE_0002 = _merged(SINCE_0003, {"comparisons": {"history": "own", "continued_from": None}})
SINCE_0001 = _merged(
    SINCE_0002, {"comparisons": {"sampling": None}, "ratings": {"rater": None}, "answer_judgements": {"rank": None}}
)


def test_revision_0001_makes_exactly_what_the_first_create_all_made(tmp_path: Path) -> None:
    engine = create_engine(sqlite_url(tmp_path / "first.sqlite3"))
    upgrade(engine, "0001")
    assert _sqlite_schema(engine) == _sqlite_schema(_first_schema_database(tmp_path / "frozen.sqlite3"))


def test_upgraded_schema_equals_schema_py_constraints_included(tmp_path: Path) -> None:
    # Alembic's compare_metadata ignores CHECK constraints; the SQL that SQLite keeps does not.
    upgraded = open_database(sqlite_url(tmp_path / "upgraded.sqlite3"))
    created = create_engine(sqlite_url(tmp_path / "created.sqlite3"))
    Base.metadata.create_all(created)
    assert _sqlite_schema(upgraded.engine) == _sqlite_schema(created)
    upgraded.dispose()


def test_autogenerate_finds_nothing_to_change_after_upgrade(db_url: str) -> None:
    database = open_database(db_url)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert current_revision(database.engine) == head_revision() == "0006"
    database.dispose()


def test_upgrade_from_0001_keeps_every_row_and_adds_the_new_columns(db_url: str) -> None:
    engine = create_engine(db_url)
    upgrade(engine, "0001")
    _fill_first_schema(engine)
    before = _dump(engine)
    engine.dispose()

    database = open_database(db_url)
    _assert_rows_kept(before, _dump(database.engine), SINCE_0001)
    with database.session() as session:  # the old rows read through today's code
        old = rating_of(session, "c1" * 16)
        assert (old.kind, old.choice, old.strength, old.rater) == ("pairwise", "b", "better", None)
        assert sorted((j.response.contender, j.unsafe, j.rank) for j in old.judgements) == [
            ("x", False, None),
            ("y", True, None),
        ]
    _rank_something(database)
    database.dispose()


def test_upgrade_from_0002_keeps_every_row_and_marks_old_turns_as_own_history(db_url: str) -> None:
    engine = create_engine(db_url)
    upgrade(engine, "0002")
    _fill_first_schema(engine)
    with engine.begin() as connection:  # what 0002 added, so the copy of comparisons must carry it over
        connection.execute(text('UPDATE comparisons SET sampling = \'{"sampler": "uniform"}\''))
        connection.execute(text("UPDATE ratings SET rater = 'ann'"))
    before = _dump(engine)
    engine.dispose()

    database = open_database(db_url)
    assert current_revision(database.engine) == head_revision()
    _assert_rows_kept(before, _dump(database.engine), SINCE_0002)
    with database.session() as session:  # the old rows read through today's code
        old = get_comparison(session, "c1" * 16)
        assert (old.history, old.continued_from, old.sampling) == ("own", None, {"sampler": "uniform"})
        assert [r.text for r in responses_of(session, old.id)] == ["answer 10", "answer 11"]
    parent_id = store_comparison(database, ["x", "y"])
    with database.session() as session:
        preferred_id = responses_of(session, parent_id)[1].id
    _continue_a_shared_history(database, parent_id, preferred_id)
    database.dispose()


def test_downgrade_refuses_to_forget_shared_histories(db_url: str) -> None:
    database = open_database(db_url)
    parent_id = store_comparison(database, ["x", "y"])
    with database.session() as session:
        preferred_id = responses_of(session, parent_id)[0].id
    continued = _continue_a_shared_history(database, parent_id, preferred_id)
    _refused_until_cleared(
        database,
        "0002",
        "1 comparisons with a shared history cannot be told from the others",
        "DELETE FROM comparisons WHERE id = :id",
        {"id": continued},
    )
    assert _counts(database.engine) == {"comparisons": 1, "responses": 2, "ratings": 0, "answer_judgements": 0}
    database.dispose()


def test_remote_provenance_is_stored_and_downgrade_refuses_to_forget_it(db_url: str) -> None:
    database = open_database(db_url)
    comparison = ComparisonRecord(lineup="mixed", session_id="s", prompt="Hi", n_responses=2)
    request = {"api": "completions", "template": "app", "body": {"model": "m", "max_tokens": 8, "seed": 3}}
    with database.session() as session:
        add_comparison(session, comparison)
        for position, endpoint in enumerate((None, "http://gpu-box:8000/v1")):
            add_response(
                session,
                ResponseRecord(
                    comparison_id=comparison.id,
                    position=position,
                    contender=f"c{position}",
                    weights_id="m",
                    messages=[{"role": "user", "content": "Hi"}],
                    prompt_rendered="[INST] Hi [/INST]",
                    params={},
                    text="Hello",
                    finish_reason="stop",
                    prompt_tokens=6,
                    completion_tokens=2,
                    duration_s=0.2,
                    endpoint=endpoint,
                    served_model="m" if endpoint else None,
                    system_fingerprint="fp_1" if endpoint else None,
                    request=request if endpoint else None,
                    usage={"prompt_tokens": 6, "completion_tokens": 2} if endpoint else None,
                ),
            )
    with database.session() as session:
        local, served = responses_of(session, comparison.id)
        assert (local.endpoint, local.request, local.usage) == (None, None, None)
        assert (served.endpoint, served.served_model, served.system_fingerprint) == (
            "http://gpu-box:8000/v1",
            "m",
            "fp_1",
        )
        assert served.request == request and served.usage == {"prompt_tokens": 6, "completion_tokens": 2}
    _refused_until_cleared(
        database,
        "0003",
        "1 answers of remote contenders would lose which server gave them",
        "DELETE FROM responses WHERE endpoint IS NOT NULL",
    )
    assert _counts(database.engine)["responses"] == 1
    database.dispose()


def test_a_response_record_refuses_an_endpoint_with_credentials() -> None:
    with pytest.raises(ValueError, match="carries credentials or a query"):
        ResponseRecord(
            comparison_id="c" * 32,
            position=0,
            contender="c",
            weights_id="m",
            messages=[{"role": "user", "content": "Hi"}],
            prompt_rendered="",
            params={},
            text="",
            finish_reason="stop",
            prompt_tokens=0,
            completion_tokens=0,
            duration_s=0.0,
            endpoint="http://user:secret@gpu-box/v1",
        )


def test_database_made_before_migrations_is_stamped_and_upgraded(tmp_path: Path) -> None:
    engine = _first_schema_database(tmp_path / "old.sqlite3")
    _fill_first_schema(engine)
    before = _dump(engine)
    engine.dispose()
    assert current_revision(create_engine(sqlite_url(tmp_path / "old.sqlite3"))) is None

    database = open_database(sqlite_url(tmp_path / "old.sqlite3"))
    assert current_revision(database.engine) == head_revision()
    after = _dump(database.engine)
    assert {t: len(rows) for t, rows in after.items()} == {t: len(rows) for t, rows in before.items()}
    _rank_something(database)
    database.dispose()


@pytest.mark.postgres
def test_postgres_database_made_before_migrations_is_stamped_and_upgraded(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    upgrade(engine, "0001")
    with engine.begin() as connection:  # what create_all left: the tables, no alembic_version
        connection.execute(text("DROP TABLE alembic_version"))
    _fill_first_schema(engine)
    before = _dump(engine)
    engine.dispose()
    database = open_database(postgres_url)
    assert current_revision(database.engine) == head_revision()
    assert {t: len(rows) for t, rows in _dump(database.engine).items()} == {t: len(r) for t, r in before.items()}
    database.dispose()


def test_downgrade_keeps_rows_and_refuses_to_drop_rankings(db_url: str) -> None:
    database = open_database(db_url)
    store_comparison(database, ["x", "y"])
    _rank_something(database)
    _refused_until_cleared(
        database,
        "0001",
        "1 ranking ratings cannot be kept by revision 0001",
        "DELETE FROM ratings WHERE kind = 'ranking'",
    )
    assert _counts(database.engine) == {"comparisons": 2, "responses": 4, "ratings": 0, "answer_judgements": 0}
    upgrade(database.engine)
    assert current_revision(database.engine) == head_revision()
    database.dispose()


def test_a_database_from_a_newer_version_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "newer.sqlite3")
    open_database(url).dispose()
    with create_engine(url).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(SchemaError, match="revision '0099', which this version of feedback_db does not know"):
        open_database(url)


def test_a_database_with_only_some_of_the_tables_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "partial.sqlite3")
    with create_engine(url).begin() as connection:
        connection.execute(text("CREATE TABLE ratings (id TEXT)"))
    with pytest.raises(SchemaError, match=r"has the tables \['ratings'\] but not .*not made by feedback_db"):
        open_database(url)


def test_replicas_opening_an_empty_database_at_once_migrate_it_once(db_url: str) -> None:
    assert _open_at_once(db_url, replicas=4) == []
    engine = create_engine(db_url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_replicas_opening_a_new_sqlite_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    # SQLite refuses a second connection's switch to WAL at once, without waiting (its deadlock rule), so a
    # single round passes by luck nine times in ten; 12 rounds of 6 replicas failed 2 runs in 3 before the fix.
    for round_ in range(12):
        url = sqlite_url(tmp_path / f"round-{round_}.sqlite3")
        assert _open_at_once(url, replicas=6) == [], f"round {round_}"
        with closing(sqlite3.connect(tmp_path / f"round-{round_}.sqlite3")) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# --- helpers ---------------------------------------------------------------------------------------


def _refused_until_cleared(
    database: Database, revision: str, refusal: str, clear: str, params: dict[str, Any] | None = None
) -> None:
    """A downgrade to `revision` is refused with `refusal` and changes nothing; once the rows the SQL
    `clear` deletes are gone, it goes through."""
    with pytest.raises(RuntimeError, match=refusal):
        downgrade(database.engine, revision)
    assert current_revision(database.engine) == head_revision()
    with database.engine.begin() as connection:
        connection.execute(text(clear), params or {})
    downgrade(database.engine, revision)
    assert current_revision(database.engine) == revision


def _open_at_once(url: str, *, replicas: int) -> list[BaseException]:
    """Open `url` from `replicas` threads released together; what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(replicas)

    def replica() -> None:
        start.wait()
        try:
            open_database(url).dispose()
        except BaseException as e:  # noqa: BLE001 - returned to the test
            errors.append(e)

    workers = [threading.Thread(target=replica) for _ in range(replicas)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def _first_schema_database(path: Path) -> Engine:
    """A SQLite file made by the first schema's create_all, with no alembic_version table."""
    with sqlite3.connect(path) as connection:
        connection.executescript(FIRST_SCHEMA_SQL)
    return create_engine(sqlite_url(path))


def _sqlite_schema(engine: Engine) -> dict[str, set[str]]:
    """Each table's and index's SQL as a set of clauses: the order of constraints does not matter."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name <> 'alembic_version'")
        ).all()
    schema = {}
    for name, sql in rows:
        sql = re.sub(r"\s+", " ", sql).replace('"', "")
        head, _, body = sql.partition("(")
        body = body.rstrip()[:-1] if body.rstrip().endswith(")") else body  # the table's closing parenthesis
        schema[name] = {head.strip()} | {clause.strip() for clause in _top_level_split(body)}
    return schema


def _top_level_split(body: str) -> list[str]:
    clauses, depth, current = [], 0, ""
    for char in body:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            clauses.append(current)
            current = ""
        else:
            current += char
    return clauses + [current]


def _fill_first_schema(engine: Engine) -> None:
    """Two rated comparisons written with plain inserts into the first schema's tables."""
    tables = MetaData()
    tables.reflect(engine)
    sqlite = engine.dialect.name == "sqlite"
    when = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=None if sqlite else timezone.utc)
    comparisons = [
        {
            "id": f"c{i}" * 16,
            "created_at": when,
            "lineup": "demo",
            "mode": "arena",
            "session_id": "s",
            "turn": 0,
            "parent_id": None,
            "system_prompt": "Be brief.",
            "prompt": "Why?",
            "n_responses": 2,
        }
        for i in (1, 2)
    ]
    responses = [
        {
            "id": f"r{c}{p}" * 8,
            "comparison_id": f"c{c}" * 16,
            "position": p,
            "contender": "xy"[p],
            "weights_id": "org/m",
            "weights_revision": None,
            "messages": [{"role": "user", "content": "Why?"}],
            "prompt_rendered": "[INST] Why? [/INST]",
            "params": {"temperature": 0.7},
            "seed": 2**40 + p,
            "text": f"answer {c}{p}",
            "finish_reason": "stop",
            "error": None,
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "time_to_first_token_s": 0.05,
            "duration_s": 0.5,
            "tokens_per_s": 6.0,
            "created_at": when,
        }
        for c in (1, 2)
        for p in (0, 1)
    ]
    ratings = [
        {
            "id": "a1" * 16,
            "comparison_id": "c1" * 16,
            "created_at": when,
            "kind": "pairwise",
            "choice": "b",
            "strength": "better",
            "comment": "y is rude",
            "blind": True,
        },
        {
            "id": "a2" * 16,
            "comparison_id": "c2" * 16,
            "created_at": when,
            "kind": "scores",
            "choice": None,
            "strength": None,
            "comment": None,
            "blind": False,
        },
    ]
    judgements = [
        {
            "rating_id": f"a{c}" * 16,
            "response_id": f"r{c}{p}" * 8,
            "score": None if c == 1 else 5 - 3 * p,
            "unsafe": (c, p) == (1, 1),
            "unsafe_reason": "rude" if (c, p) == (1, 1) else None,
        }
        for c in (1, 2)
        for p in (0, 1)
    ]
    with engine.begin() as connection:
        for table, rows in zip(TABLES, (comparisons, responses, ratings, judgements)):
            connection.execute(insert(tables.tables[table]), rows)


def _dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as dicts, in a fixed order."""
    tables = MetaData()
    tables.reflect(engine, only=TABLES)
    with engine.connect() as connection:
        return {
            name: [dict(row._mapping) for row in connection.execute(select(table).order_by(*table.primary_key.columns))]
            for name, table in ((n, tables.tables[n]) for n in TABLES)
        }


def _assert_rows_kept(
    before: dict[str, list[dict[str, Any]]],
    after: dict[str, list[dict[str, Any]]],
    new_columns: dict[str, dict[str, Any]],
) -> None:
    """Every row is still there with its old values, and the new columns hold what old rows get."""
    for table in TABLES:
        added = new_columns.get(table, {})
        assert len(after[table]) == len(before[table]), table
        assert {c for row in after[table] for c in row} == {c for row in before[table] for c in row} | set(added)
        assert [{c: row[c] for c in before[table][0]} for row in after[table]] == before[table], table
        assert all(
            row[c] == (value(row) if callable(value) else value) for row in after[table] for c, value in added.items()
        ), table


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}


def _rank_something(database: Any) -> None:
    """The new schema works on the upgraded database: a ranking of a new comparison is stored."""
    comparison_id = store_comparison(database, ["x", "y"])
    with database.session() as session:
        add_rating(session, RatingRecord(comparison_id, "ranking", ranks={0: 2, 1: 1}, rater="ann"))
    with database.session() as session:
        rating = rating_of(session, comparison_id)
        assert (rating.kind, rating.rater) == ("ranking", "ann")
        assert sorted((j.response.position, j.rank) for j in rating.judgements) == [(0, 2), (1, 1)]


def _continue_a_shared_history(database: Any, parent_id: str, preferred_id: str) -> str:
    """The new columns work: a second turn continues from a stored answer; returns its id."""
    with database.session() as session:
        parent = get_comparison(session, parent_id)
        record = ComparisonRecord(
            lineup="demo",
            session_id=parent.session_id,
            prompt="And then?",
            n_responses=2,
            turn=1,
            parent_id=parent_id,
            history="shared",
            continued_from=preferred_id,
        )
        add_comparison(session, record)
    with database.session() as session:
        stored = get_comparison(session, record.id)
        assert (stored.history, stored.continued_from) == ("shared", preferred_id)
    return record.id
