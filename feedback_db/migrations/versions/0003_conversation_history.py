"""Which conversation the answers of a turn replied to (multi-turn provenance).

- comparisons.history: 'own' (each pane's own earlier answers) or 'shared' (one history for every
  pane, continued from the preferred answer, as in Anthropic's HH data collection); NOT NULL, and
  every existing row becomes 'own', which is how the app stored later turns until now.
- comparisons.continued_from: the response whose answer a shared history continues from, nullable,
  SET NULL when that response is deleted.

Every existing row is kept. SQLite cannot add a CHECK or a foreign key to a table, so batch mode
copies comparisons (feedback_db.migrate turns foreign keys off meanwhile, or dropping the old table
would cascade-delete the responses and ratings).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HISTORIES = "history IN ('own', 'shared')"


def upgrade() -> None:
    with op.batch_alter_table("comparisons") as batch:
        batch.add_column(sa.Column("history", sa.String(16), server_default="own", nullable=False))
        batch.add_column(sa.Column("continued_from", sa.String(32), nullable=True))
        batch.create_check_constraint(op.f("ck_comparisons_history"), HISTORIES)
        batch.create_foreign_key(
            op.f("fk_comparisons_continued_from_responses"),
            "responses",
            ["continued_from"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index(op.f("ix_comparisons_continued_from"), "comparisons", ["continued_from"])


def downgrade() -> None:
    shared = op.get_bind().execute(sa.text("SELECT count(*) FROM comparisons WHERE history = 'shared'")).scalar()
    if shared:
        raise RuntimeError(
            f"{shared} comparisons with a shared history cannot be told from the others by revision 0002, "
            "which does not store it; export them (python -m feedback_db export) and delete them before "
            "downgrading"
        )
    op.drop_index(op.f("ix_comparisons_continued_from"), table_name="comparisons")
    with op.batch_alter_table("comparisons") as batch:
        batch.drop_constraint(op.f("fk_comparisons_continued_from_responses"), type_="foreignkey")
        batch.drop_constraint(op.f("ck_comparisons_history"), type_="check")
        batch.drop_column("continued_from")
        batch.drop_column("history")
