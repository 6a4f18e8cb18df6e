"""Where a remote contender's answer came from (contenders on OpenAI-compatible servers).

All on responses, nullable, null for answers of local weights and for every existing row:
- endpoint: the server's base URL (scheme, host, port, path; never credentials);
- served_model: the model name the server reported in its answer;
- system_fingerprint: the server's fingerprint, when it sends one;
- request: the request as sent, less the messages or prompt text (JSON: api, template, body);
- usage: the server's own token counts (JSON).

Only columns are added, so every existing row is kept as it is.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("responses", sa.Column("endpoint", sa.String(500), nullable=True))
    op.add_column("responses", sa.Column("served_model", sa.String(500), nullable=True))
    op.add_column("responses", sa.Column("system_fingerprint", sa.String(200), nullable=True))
    op.add_column("responses", sa.Column("request", JSON, nullable=True))
    op.add_column("responses", sa.Column("usage", JSON, nullable=True))


def downgrade() -> None:
    remote = op.get_bind().execute(sa.text("SELECT count(*) FROM responses WHERE endpoint IS NOT NULL")).scalar()
    if remote:
        raise RuntimeError(
            f"{remote} answers of remote contenders would lose which server gave them; export them (python -m "
            "feedback_db export) and delete them before downgrading"
        )
    for column in ("usage", "request", "system_fingerprint", "served_model", "endpoint"):
        op.drop_column("responses", column)
