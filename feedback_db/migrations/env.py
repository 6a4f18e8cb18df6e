"""Alembic's environment: run against the connection that feedback_db.migrate hands in.

feedback_db.migrate opens the connection (and its transaction, and on PostgreSQL an advisory lock), so
this file only configures the context; it never builds an engine of its own.
"""

from alembic import context

from feedback_db.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the feedback_db migrations through feedback_db.open_database or feedback_db.migrate")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER a constraint: autogenerate must write batch operations (copy and move).
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():  # a no-op: the caller's transaction is the one used
    context.run_migrations()
