"""Bringing a database to the schema this code expects: the Alembic migrations in `migrations/`.

`open_database` calls `upgrade`, which handles three kinds of database:
- empty: every revision runs, from the first;
- made before migrations existed (the four tables of the first schema, no `alembic_version`): it is
  stamped as revision 0001, which is exactly that schema, and upgraded from there;
- versioned: upgraded from its revision; at head nothing runs.
Everything runs in one transaction that holds a lock, so app replicas starting together migrate one at
a time and the later ones find the work done: BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL.
PostgreSQL's DDL is transactional, so a failed migration there leaves nothing half done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS = Path(__file__).with_name("migrations")
FIRST_REVISION = "0001"
FIRST_TABLES = frozenset({"comparisons", "responses", "ratings", "answer_judgements"})
# Any fixed 64-bit key, the same in every replica: "feedback" in ASCII.
ADVISORY_LOCK_KEY = 0x6665656462616368


class SchemaError(ValueError):
    """The database holds a schema this code cannot bring to its head; the message says why."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations; commands run on `connection`."""
    config = Config()
    # ConfigParser interpolates "%": a folder name containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations found in {MIGRATIONS}"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty or pre-migration database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` (default: the newest), keeping every row."""
    with _migration_connection(engine) as connection:
        _stamp_if_made_before_migrations(connection)
        _check_revision_is_known(connection)
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to `revision`; refused where rows would not fit the older schema."""
    with _migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), revision)


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction that holds the migration lock."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations on SQLite copy a table and drop the old one; with foreign keys on, that
            # DROP would cascade-delete every row that references it. The PRAGMA must be set outside a
            # transaction (inside one it does nothing), hence on the driver's connection, before BEGIN.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():  # BEGIN IMMEDIATE on SQLite (database.py): the write lock
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
                yield connection
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _stamp_if_made_before_migrations(connection: Connection) -> None:
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        return
    ours = tables & FIRST_TABLES
    if ours == FIRST_TABLES:
        command.stamp(alembic_config(connection), FIRST_REVISION)
    elif ours:
        raise SchemaError(
            f"the database has the tables {sorted(ours)} but not {sorted(FIRST_TABLES - ours)}, and no "
            "alembic_version table: it was not made by feedback_db. Point the URL at an empty database or "
            "at a feedback database"
        )


def _check_revision_is_known(connection: Connection) -> None:
    revision = MigrationContext.configure(connection).get_current_revision()
    script = ScriptDirectory.from_config(alembic_config())
    if revision is not None and revision not in {s.revision for s in script.walk_revisions()}:
        raise SchemaError(
            f"the database is at schema revision {revision!r}, which this version of feedback_db does not "
            f"know (its newest is {script.get_current_head()!r}): a newer version of the app upgraded it. "
            "Run that version, or open a copy made before the upgrade"
        )


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise SchemaError(
            f"the migration left {len(broken)} rows with broken foreign keys, e.g. {broken[0]}; nothing was changed"
        )
