"""Opening the feedback database: an engine, its SQLite settings, the schema's migrations, and sessions."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .migrate import upgrade

EXAMPLE_URLS = (
    "sqlite:///data/feedback.sqlite3 (a file, relative to the working folder) or postgresql+psycopg://user:pass@host/db"
)
BUSY_TIMEOUT_MS = 10_000
# WAL lets readers and one writer work at once; busy_timeout makes a writer wait for the lock instead of
# failing with "database is locked" (measured: without it most of 8 concurrent writers failed).
# foreign_keys is off by default in SQLite, per connection. busy_timeout comes first so that it covers
# the others.
SNAPSHOT_OPTION = "feedback_db_snapshot"  # an execution option: this transaction only reads
SQLITE_PRAGMAS = (f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}", "PRAGMA foreign_keys=ON")
WAL_PRAGMA = "PRAGMA journal_mode=WAL"


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite file at `path` (made absolute, so a later chdir cannot move it)."""
    return URL.create("sqlite", database=str(Path(path).expanduser().resolve())).render_as_string()


class Database:
    """An engine plus a session factory; one per process, shared by all threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # expire_on_commit=False: rows read in a session stay readable after it commits and closes.
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._snapshots = sessionmaker(_snapshot_engine(engine), expire_on_commit=False)

    @property
    def url(self) -> str:
        """The database URL with any password masked, safe to log."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on an exception, close always."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session on one consistent snapshot that never blocks writers (exports, leaderboard).

        SQLite: a deferred BEGIN (a WAL reader) instead of the writers' BEGIN IMMEDIATE, so a long export
        does not hold the write lock. PostgreSQL: REPEATABLE READ, so every batch sees the same data.
        Anything written in it is rolled back.
        """
        with self._snapshots() as session:
            try:
                yield session
            finally:
                session.rollback()

    def dispose(self) -> None:
        """Close every pooled connection (call at shutdown, or before reopening the same file)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url!r})"


class DatabaseUnavailable(ValueError):
    """The database URL cannot be used (empty, unreadable, an unknown kind, a missing driver) or the
    database behind it cannot be reached; the message names the URL, without its password."""


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Connect to `url` (any SQLAlchemy URL) and bring its schema to the newest revision.

    Creates the SQLite folder; an empty database gets every table, an older one is migrated with every
    row kept (migrate.py). `migrate=False` only connects (tools that inspect a database as it is).
    A URL that cannot be parsed, names an unknown database or lacks its driver, or a database whose
    schema this code does not know (migrate.SchemaError), raises ValueError: DatabaseUnavailable for
    the URL or the connection, SchemaError for the schema.
    """
    parsed = _parsed_url(url)
    engine = _engine_for(parsed)
    if not migrate:
        return Database(engine)
    try:
        upgrade(engine)
    except OperationalError as e:
        engine.dispose()
        raise DatabaseUnavailable(
            f"cannot open the feedback database at {parsed.render_as_string(hide_password=True)}: {e.orig}"
        ) from e
    except ValueError as e:
        engine.dispose()
        e.add_note(f"while opening the feedback database at {parsed.render_as_string(hide_password=True)}")
        raise
    return Database(engine)


def _parsed_url(url: str) -> URL:
    if not isinstance(url, str) or not url.strip():
        raise DatabaseUnavailable(f"the database URL is empty; give one such as {EXAMPLE_URLS}")
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise DatabaseUnavailable(
            f"{url!r} is not a database URL; give one such as {EXAMPLE_URLS}"
            " (for a file path, prefix it with sqlite:///)"
        ) from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        hint = " (SQLAlchemy spells it postgresql+psycopg://)" if parsed.drivername.startswith("postgres") else ""
        raise DatabaseUnavailable(
            f"database URL {parsed.render_as_string(hide_password=True)!r} names an unknown database kind "
            f"{parsed.drivername!r}{hint}; give one such as {EXAMPLE_URLS}"
        ) from None
    return parsed


def _engine_for(url: URL) -> Engine:
    shown = url.render_as_string(hide_password=True)
    is_sqlite = url.get_backend_name() == "sqlite"
    if is_sqlite:
        _make_sqlite_folder(url)
    try:
        # pre_ping: a server-side database may drop idle connections between two votes.
        engine = create_engine(url, pool_pre_ping=not is_sqlite)
    except ImportError as e:
        raise DatabaseUnavailable(
            f"the driver for {shown!r} is not installed ({e}); install it or use {EXAMPLE_URLS}"
        ) from None
    except (ArgumentError, TypeError) as e:
        raise DatabaseUnavailable(f"database URL {shown!r} was refused: {e}; give one such as {EXAMPLE_URLS}") from None
    if is_sqlite:
        _configure_sqlite(engine)
    return engine


def _snapshot_engine(engine: Engine) -> Engine:
    """The same engine and pool, with options that make a transaction a read-only snapshot."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{SNAPSHOT_OPTION: True})
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return engine


def _make_sqlite_folder(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return  # in memory, or a sqlite URI the caller manages
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _switch_to_wal(cursor: Any) -> None:
    """Put the file in WAL mode, retrying while another connection does the same.

    Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is locked" at once,
    without the busy handler, to a connection that asks while another holds a read lock (its deadlock
    rule); replicas opening one new file together hit it in 3 of 30 tries. Once one of them has switched,
    the mode is stored in the file and the others' switch is a no-op.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute(WAL_PRAGMA)
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from Python's sqlite3 module so that the BEGIN below is the one
        # used and SAVEPOINTs work (SQLAlchemy docs, "SQLite transactions"); PRAGMAs need no transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        _switch_to_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(SNAPSHOT_OPTION):
            connection.exec_driver_sql("BEGIN")  # deferred: a reader, never waits for nor blocks a writer
            return
        # IMMEDIATE takes the write lock at BEGIN. With a plain (deferred) BEGIN, a transaction that reads
        # and then writes (add_rating checks, then inserts) fails at once with "database is locked" when
        # another writer committed in between, and busy_timeout cannot help (SQLITE_BUSY_SNAPSHOT).
        # The cost: transactions on one SQLite file run one at a time, readers included.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
