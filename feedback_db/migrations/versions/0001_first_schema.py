"""The first schema: comparisons, responses, ratings, answer judgements.

Exactly what the pre-Alembic `Base.metadata.create_all` made (commit 701c63e); a database made that
way is stamped with this revision and upgraded from here. A frozen copy: it never imports schema.py.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    # op.f(): the names are final. Without it the metadata's naming convention would be applied to them
    # again ("ck_" + table + given name), and the names would no longer match what create_all made.
    op.create_table(
        "comparisons",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("lineup", sa.String(100), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("n_responses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparisons")),
        sa.CheckConstraint("mode IN ('named', 'arena')", name=op.f("ck_comparisons_mode")),
        sa.CheckConstraint("turn >= 0", name=op.f("ck_comparisons_turn")),
        sa.CheckConstraint("n_responses >= 2", name=op.f("ck_comparisons_n_responses")),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["comparisons.id"], name=op.f("fk_comparisons_parent_id_comparisons"), ondelete="SET NULL"
        ),
    )
    op.create_index(op.f("ix_comparisons_parent_id"), "comparisons", ["parent_id"])
    op.create_index(op.f("ix_comparisons_session_id"), "comparisons", ["session_id"])
    op.create_index(op.f("ix_comparisons_created_at"), "comparisons", ["created_at"])
    op.create_table(
        "responses",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("comparison_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("contender", sa.String(200), nullable=False),
        sa.Column("weights_id", sa.String(500), nullable=False),
        sa.Column("weights_revision", sa.String(100), nullable=True),
        sa.Column("messages", JSON, nullable=False),
        sa.Column("prompt_rendered", sa.Text(), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("time_to_first_token_s", sa.Double(), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=False),
        sa.Column("tokens_per_s", sa.Double(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_responses")),
        sa.UniqueConstraint("comparison_id", "position", name=op.f("uq_responses_comparison_id_position")),
        sa.UniqueConstraint("comparison_id", "contender", name=op.f("uq_responses_comparison_id_contender")),
        sa.CheckConstraint("position >= 0", name=op.f("ck_responses_position")),
        sa.CheckConstraint(
            "finish_reason IN ('stop', 'length', 'stopped', 'error')", name=op.f("ck_responses_finish_reason")
        ),
        sa.CheckConstraint(
            "(finish_reason = 'error' AND error IS NOT NULL) OR (finish_reason <> 'error' AND error IS NULL)",
            name=op.f("ck_responses_error_iff_failed"),
        ),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparisons.id"],
            name=op.f("fk_responses_comparison_id_comparisons"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_responses_contender"), "responses", ["contender"])
    op.create_table(
        "ratings",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("comparison_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("choice", sa.String(16), nullable=True),
        sa.Column("strength", sa.String(32), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("blind", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.CheckConstraint("kind IN ('pairwise', 'scores')", name=op.f("ck_ratings_kind")),
        sa.CheckConstraint("choice IS NULL OR choice IN ('a', 'b', 'tie', 'both_bad')", name=op.f("ck_ratings_choice")),
        sa.CheckConstraint(
            "strength IS NULL OR strength IN "
            "('significantly_better', 'better', 'slightly_better', 'negligibly_better')",
            name=op.f("ck_ratings_strength"),
        ),
        sa.CheckConstraint(
            "(kind = 'pairwise' AND choice IS NOT NULL) OR (kind <> 'pairwise' AND choice IS NULL)",
            name=op.f("ck_ratings_choice_iff_pairwise"),
        ),
        sa.CheckConstraint(
            "strength IS NULL OR choice IN ('a', 'b')",
            name=op.f("ck_ratings_strength_only_for_a_or_b"),
        ),
        sa.UniqueConstraint("comparison_id", name=op.f("uq_ratings_comparison_id")),
        sa.ForeignKeyConstraint(
            ["comparison_id"], ["comparisons.id"], name=op.f("fk_ratings_comparison_id_comparisons"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_ratings_created_at"), "ratings", ["created_at"])
    op.create_table(
        "answer_judgements",
        sa.Column("rating_id", sa.String(32), nullable=False),
        sa.Column("response_id", sa.String(32), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("unsafe", sa.Boolean(), nullable=False),
        sa.Column("unsafe_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("rating_id", "response_id", name=op.f("pk_answer_judgements")),
        sa.CheckConstraint("score IS NULL OR (score >= 1 AND score <= 5)", name=op.f("ck_answer_judgements_score")),
        sa.CheckConstraint("unsafe_reason IS NULL OR unsafe", name=op.f("ck_answer_judgements_reason_only_if_unsafe")),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["ratings.id"], name=op.f("fk_answer_judgements_rating_id_ratings"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["responses.id"],
            name=op.f("fk_answer_judgements_response_id_responses"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_answer_judgements_response_id"), "answer_judgements", ["response_id"])


def downgrade() -> None:
    for table in ("answer_judgements", "ratings", "responses", "comparisons"):
        op.drop_table(table)
