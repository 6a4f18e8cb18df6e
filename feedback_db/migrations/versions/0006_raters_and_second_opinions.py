"""Raters, second opinions, known-answer items and ratings set aside with a reason (issue 17).

- raters: who rates under a pseudonym (the id ratings carry); the name and the invite's hash are the
  admin's. acceptances: the versions (sha256) of the terms each rater accepted, and when.
- ratings: at most one per rater and comparison (the unique comparison_id becomes unique
  (comparison_id, rater)), with where it was given (source), the order the rater saw the answers in,
  the seconds to vote, the terms and guidelines versions, and the reasons it is set aside.
- comparisons: who asked, how many ratings it holds, when its last answer was stored, and the better
  answer of a known-answer (gold) item; indexed for the review queue.
- rating_rules: the rules the set-aside reasons were computed by.

Every existing rating is kept as its comparison's one rating, its rater as stored. n_ratings and
complete_at are filled from the rows already there. A downgrade refuses while a comparison holds two
ratings: revision 0005 can keep only one.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SOURCES = "source IN ('page', 'review', 'import')"
RATER_KINDS = "kind IN ('open', 'invited', 'hub', 'imported')"


def upgrade() -> None:
    op.create_table(
        "raters",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("invite_hash", sa.String(64), nullable=True),
        sa.Column("browser_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(RATER_KINDS, name=op.f("ck_raters_kind")),
        sa.UniqueConstraint("name", name=op.f("uq_raters_name")),
        sa.UniqueConstraint("invite_hash", name=op.f("uq_raters_invite_hash")),
        sa.UniqueConstraint("browser_hash", name=op.f("uq_raters_browser_hash")),
    )
    op.create_table(
        "acceptances",
        sa.Column(
            "rater_id",
            sa.String(32),
            sa.ForeignKey("raters.id", ondelete="CASCADE", name=op.f("fk_acceptances_rater_id_raters")),
            primary_key=True,
        ),
        sa.Column("document", sa.String(16), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "rating_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rules", JSON, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("ratings") as batch:
        batch.drop_constraint(op.f("uq_ratings_comparison_id"), type_="unique")
        batch.create_unique_constraint(op.f("uq_ratings_comparison_id_rater"), ["comparison_id", "rater"])
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="page"))
        batch.add_column(sa.Column("shown_order", JSON, nullable=True))
        batch.add_column(sa.Column("seconds_to_vote", sa.Double(), nullable=True))
        batch.add_column(sa.Column("terms_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("guidelines_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("set_aside", JSON, nullable=True))
        batch.create_check_constraint(op.f("ck_ratings_source"), SOURCES)
    with op.batch_alter_table("comparisons") as batch:
        batch.add_column(sa.Column("asked_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("n_ratings", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("complete_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("gold_position", sa.Integer(), nullable=True))
        batch.create_check_constraint(op.f("ck_comparisons_n_ratings"), "n_ratings >= 0")
        batch.create_check_constraint(
            op.f("ck_comparisons_gold_position"), "gold_position IS NULL OR gold_position >= 0"
        )
    op.execute(
        "UPDATE comparisons SET n_ratings = (SELECT count(*) FROM ratings WHERE ratings.comparison_id = comparisons.id)"
    )
    op.execute(
        "UPDATE comparisons SET complete_at = "
        "(SELECT max(responses.created_at) FROM responses WHERE responses.comparison_id = comparisons.id) "
        "WHERE n_responses = (SELECT count(*) FROM responses WHERE responses.comparison_id = comparisons.id)"
    )
    op.create_index(
        "uq_ratings_comparison_id_without_rater",
        "ratings",
        ["comparison_id"],
        unique=True,
        sqlite_where=sa.text("rater IS NULL"),
        postgresql_where=sa.text("rater IS NULL"),
    )
    op.create_index(
        op.f("ix_comparisons_review"), "comparisons", ["gold_position", sa.text("n_ratings DESC"), "created_at"]
    )


def downgrade() -> None:
    doubled = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM (SELECT comparison_id FROM ratings GROUP BY comparison_id HAVING count(*) > 1) d"
            )
        )
        .scalar()
    )
    if doubled:
        raise RuntimeError(
            f"{doubled} comparisons hold more than one rating, and revision 0005 keeps one per comparison; "
            "export them (python -m feedback_db export) and delete the second opinions before downgrading"
        )
    op.drop_index("uq_ratings_comparison_id_without_rater", table_name="ratings")
    op.drop_index(op.f("ix_comparisons_review"), table_name="comparisons")
    with op.batch_alter_table("comparisons") as batch:
        batch.drop_constraint(op.f("ck_comparisons_gold_position"), type_="check")
        batch.drop_constraint(op.f("ck_comparisons_n_ratings"), type_="check")
        for column in ("gold_position", "complete_at", "n_ratings", "asked_by"):
            batch.drop_column(column)
    with op.batch_alter_table("ratings") as batch:
        batch.drop_constraint(op.f("ck_ratings_source"), type_="check")
        for column in ("set_aside", "guidelines_version", "terms_version", "seconds_to_vote", "shown_order", "source"):
            batch.drop_column(column)
        batch.drop_constraint(op.f("uq_ratings_comparison_id_rater"), type_="unique")
        batch.create_unique_constraint(op.f("uq_ratings_comparison_id"), ["comparison_id"])
    op.drop_table("rating_rules")
    op.drop_table("acceptances")
    op.drop_table("raters")
