"""Rankings, raters and arena sampling (issue 4: arena mode, exports, leaderboard).

- ratings.kind may be 'ranking'; answer_judgements.rank holds the rank (1 = best, equal = tie).
- ratings.rater: who rated (annotator name or session id), nullable.
- comparisons.sampling: how an arena pair was drawn, JSON, nullable.
- ratings are indexed on (created_at, id), replacing (created_at): exports page through them in that
  order without sorting the table.

Every existing row is kept; the new columns are null on old rows. SQLite cannot alter a CHECK
constraint, so batch mode copies the table (feedback_db.migrate turns foreign keys off meanwhile, or
dropping the old ratings table would cascade-delete the judgements).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
KINDS_BEFORE = "kind IN ('pairwise', 'scores')"
KINDS_AFTER = "kind IN ('pairwise', 'scores', 'ranking')"


def upgrade() -> None:
    op.add_column("comparisons", sa.Column("sampling", JSON, nullable=True))
    with op.batch_alter_table("ratings") as batch:
        batch.add_column(sa.Column("rater", sa.String(64), nullable=True))
        batch.drop_constraint(op.f("ck_ratings_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_ratings_kind"), KINDS_AFTER)
    op.drop_index(op.f("ix_ratings_created_at"), table_name="ratings")
    op.create_index(op.f("ix_ratings_created_at_id"), "ratings", ["created_at", "id"])
    with op.batch_alter_table("answer_judgements") as batch:
        batch.add_column(sa.Column("rank", sa.Integer(), nullable=True))
        batch.create_check_constraint(op.f("ck_answer_judgements_rank"), "rank IS NULL OR rank >= 1")


def downgrade() -> None:
    rankings = op.get_bind().execute(sa.text("SELECT count(*) FROM ratings WHERE kind = 'ranking'")).scalar()
    if rankings:
        raise RuntimeError(
            f"{rankings} ranking ratings cannot be kept by revision 0001, which has no ranks; "
            "export them (python -m feedback_db export) and delete them before downgrading"
        )
    with op.batch_alter_table("answer_judgements") as batch:
        batch.drop_constraint(op.f("ck_answer_judgements_rank"), type_="check")
        batch.drop_column("rank")
    op.drop_index(op.f("ix_ratings_created_at_id"), table_name="ratings")
    op.create_index(op.f("ix_ratings_created_at"), "ratings", ["created_at"])
    with op.batch_alter_table("ratings") as batch:
        batch.drop_constraint(op.f("ck_ratings_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_ratings_kind"), KINDS_BEFORE)
        batch.drop_column("rater")
    op.drop_column("comparisons", "sampling")
