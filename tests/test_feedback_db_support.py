"""Fixtures and builders shared by the feedback_db tests (this file holds no tests).

PostgreSQL: the tests marked `postgres` read the server from PLAYGROUND_TEST_POSTGRES_URL (a role that
may CREATE DATABASE; .ci/run starts such a server) and give each test a database of its own, dropped
afterwards. Without the variable, or without a server answering, they skip and say why; with
PLAYGROUND_TEST_POSTGRES_REQUIRED=1 (set by .ci/run) they fail instead, so CI cannot skip them quietly.
Use them by importing: `from tests.test_feedback_db_support import db_url, postgres_url  # noqa: F401`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, create_engine, make_url
from sqlalchemy.pool import NullPool

from feedback_db import (
    ComparisonRecord,
    Database,
    RatingRecord,
    ResponseRecord,
    add_comparison,
    add_rating,
    add_response,
    open_database,
    sqlite_url,
)

POSTGRES_URL_ENV = "PLAYGROUND_TEST_POSTGRES_URL"
POSTGRES_REQUIRED_ENV = "PLAYGROUND_TEST_POSTGRES_REQUIRED"
QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]


def _unavailable(reason: str) -> None:
    if os.environ.get(POSTGRES_REQUIRED_ENV) == "1":
        pytest.fail(f"{reason} ({POSTGRES_REQUIRED_ENV}=1: the PostgreSQL tests must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The test server's URL, once it has answered."""
    raw = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not raw:
        _unavailable(f"{POSTGRES_URL_ENV} is not set; set it to postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB "
                     "(a role that may create databases) to run the PostgreSQL tests, as .ci/run does")
    url = make_url(raw)
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except Exception as e:  # noqa: BLE001 - any failure means: no usable server here
        _unavailable(f"no PostgreSQL server answers at {url.render_as_string()}: {str(e).splitlines()[0]}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_server: URL) -> Iterator[str]:
    """The URL of a fresh, empty database on the test server, dropped after the test."""
    name = f"feedback_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "feedback.sqlite3")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def any_db(db_url: str) -> Iterator[Database]:
    """An opened (migrated) database on each backend."""
    database = open_database(db_url)
    yield database
    database.dispose()


def store_comparison(
    db: Database,
    contenders: Sequence[str],
    *,
    comparison_id: str | None = None,
    lineup: str = "demo",
    mode: str = "arena",
    messages: Sequence[Mapping[str, str]] = QUESTION,
    errored: Sequence[str] = (),
    texts: Mapping[str, str] | None = None,
) -> str:
    """A comparison with one answer per contender, contender i at pane position i; returns its id."""
    fields: dict[str, Any] = {"id": comparison_id} if comparison_id else {}
    record = ComparisonRecord(lineup=lineup, session_id="sess-1", prompt=messages[-1]["content"],
                              n_responses=len(contenders), mode=mode, **fields)
    with db.session() as session:
        add_comparison(session, record)
        for position, contender in enumerate(contenders):
            failed = contender in errored
            add_response(session, ResponseRecord(
                comparison_id=record.id, position=position, contender=contender, weights_id=f"org/{contender}",
                messages=messages, prompt_rendered="", params={"temperature": 0.7}, seed=position,
                text=(texts or {}).get(contender, f"answer of {contender}"),
                finish_reason="error" if failed else "stop", error="timeout" if failed else None,
                prompt_tokens=5, completion_tokens=3, duration_s=0.1,
            ))
    return record.id


def rate(db: Database, comparison_id: str, kind: str = "pairwise", **fields: Any) -> str:
    """Store a rating of a stored comparison; returns the rating id."""
    with db.session() as session:
        return add_rating(session, RatingRecord(comparison_id, kind, **fields))


def stored_rating(db: Database, contenders: Sequence[str], kind: str = "pairwise", *,
                  comparison: Mapping[str, Any] | None = None, **rating: Any) -> tuple[str, str]:
    """A comparison and its rating in one call; returns (comparison id, rating id)."""
    comparison_id = store_comparison(db, contenders, **(comparison or {}))
    return comparison_id, rate(db, comparison_id, kind, **rating)


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Why is the sky blue?"},
]
# The golden seed: (name, contenders by pane position, comparison fields, rating fields).
GOLDEN = [
    ("shuffled", ["y", "x"], {"messages": CONVERSATION},
     {"choice": "b", "strength": "significantly_better", "blind": True}),
    ("named", ["x", "y"], {"mode": "named"}, {"choice": "a", "strength": "slightly_better"}),
    ("tie", ["x", "y"], {}, {"choice": "tie", "blind": True}),
    ("both_bad", ["x", "y"], {}, {"choice": "both_bad", "blind": True}),
    ("scores", ["x", "y", "z"], {}, {"kind": "scores", "scores": {0: 5, 1: 4, 2: 2}, "blind": True}),
    ("ranking", ["z", "x", "y"], {}, {"kind": "ranking", "ranks": {0: 1, 1: 2, 2: 2}, "blind": True}),
    ("unsafe", ["x", "y"], {}, {"choice": "a", "strength": "better", "unsafe": {0: "insults"}, "blind": True}),
    ("errored", ["x", "y"], {"errored": ["y"], "lineup": "llama2"},
     {"choice": "a", "strength": "better", "blind": True}),
]


def seed_golden(db: Database) -> dict[str, tuple[str, str]]:
    """The eight golden ratings, in this order, with fixed comparison ids ('1' * 32, '2' * 32, ...).

    Returns name -> (comparison id, rating id).
    """
    ids = {}
    for number, (name, contenders, comparison, rating) in enumerate(GOLDEN, 1):
        fields = dict(rating)
        kind = fields.pop("kind", "pairwise")
        ids[name] = stored_rating(db, contenders, kind, comparison={"comparison_id": str(number) * 32, **comparison},
                                  **fields)
    return ids
