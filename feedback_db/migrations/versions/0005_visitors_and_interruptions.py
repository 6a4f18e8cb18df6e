"""Who asked (for per-visitor limits and abuse removal) and comparisons a dead server left unfinished.

- comparisons.visitor: a salted hash of the client's address, never the address; nullable (rows
  before this revision, and comparisons made outside the page, have none); indexed with created_at,
  which the per-visitor limits count by.
- comparisons.interrupted_at: when the app found the comparison without all its answers after the
  server that ran it stopped (killed mid-generation); null for every other row.

Only columns and an index are added, so every existing row is kept as it is.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("comparisons", sa.Column("visitor", sa.String(64), nullable=True))
    op.add_column("comparisons", sa.Column("interrupted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_comparisons_visitor_created_at"), "comparisons", ["visitor", "created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_comparisons_visitor_created_at"), table_name="comparisons")
    op.drop_column("comparisons", "interrupted_at")
    op.drop_column("comparisons", "visitor")
