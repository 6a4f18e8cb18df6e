"""The feedback tables, SQLAlchemy 2.0 declarative style, portable between SQLite and PostgreSQL.

Portability choices: ids are String(32) uuid4 hex (no autoincrement races between app replicas),
enumerations are strings with CHECK constraints (no native ENUM types to migrate), JSON is
sqlalchemy.JSON (JSONB on PostgreSQL), and every timestamp is timezone-aware UTC.
Constraint names follow a naming convention so Alembic can address them. Alembic migrations
(migrations/versions/) make and change these tables; this module must always equal their head, which
tests/test_migrations.py checks. Columns added by a migration go last, where ALTER TABLE puts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .records import (
    CHOICES,
    FINISH_REASONS,
    HISTORIES,
    ID_LENGTH,
    MAX_NAME_CHARS,
    MODES,
    RATING_KINDS,
    SCORE_MAX,
    SCORE_MIN,
    STRENGTHS,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend.

    SQLite keeps datetimes as text without an offset, so the value is stored as naive UTC there and the
    UTC zone is put back on load; PostgreSQL stores TIMESTAMP WITH TIME ZONE.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one, e.g. datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def utc_now() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def _one_of(column: str, values: Sequence[str], nullable: bool = False) -> str:
    listed = ", ".join(f"'{v}'" for v in values)
    check = f"{column} IN ({listed})"
    return f"{column} IS NULL OR {check}" if nullable else check


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime()}


class Comparison(Base):
    """One prompt (with its conversation so far) sent to every contender of a lineup."""

    __tablename__ = "comparisons"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    lineup: Mapped[str] = mapped_column(String(MAX_NAME_CHARS["lineup"]))
    mode: Mapped[str] = mapped_column(String(16))
    session_id: Mapped[str] = mapped_column(String(MAX_NAME_CHARS["session_id"]), index=True)
    turn: Mapped[int]
    # SET NULL: deleting one turn of a conversation (a data-removal request) must not delete the rest.
    parent_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("comparisons.id", ondelete="SET NULL"), index=True
    )
    system_prompt: Mapped[str | None] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    n_responses: Mapped[int]
    # How an arena pair was drawn (sampler, weights, candidates), so the draw can be audited; null in
    # named mode and before revision 0002.
    sampling: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Which conversation the answers replied to (records.History); rows before revision 0003 are "own".
    history: Mapped[str] = mapped_column(String(16), server_default="own")
    # The response whose answer a shared history continues from. use_alter: responses refer to
    # comparisons too, and the cycle needs one constraint made after both tables. SET NULL: removing an
    # answer must not remove the turns that followed it.
    continued_from: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("responses.id", ondelete="SET NULL", use_alter=True), index=True
    )
    # Revision 0005: a salted hash of the asker's address (never the address), for per-visitor limits
    # and abuse removal; and when a comparison was found unfinished after its server stopped.
    visitor: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["visitor"]))
    interrupted_at: Mapped[datetime | None]

    # foreign_keys: continued_from is a second path between the two tables; this one is the answers'.
    responses: Mapped[list[Response]] = relationship(
        back_populates="comparison",
        order_by="Response.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
        foreign_keys="Response.comparison_id",
    )
    rating: Mapped[Rating | None] = relationship(
        back_populates="comparison", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint(_one_of("mode", MODES), name="mode"),
        CheckConstraint("turn >= 0", name="turn"),
        CheckConstraint("n_responses >= 2", name="n_responses"),
        CheckConstraint(_one_of("history", HISTORIES), name="history"),
        Index("ix_comparisons_visitor_created_at", "visitor", "created_at"),
    )


class Response(Base):
    """One contender's answer to a comparison, with its provenance (weights, prompt, parameters, seed)."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    comparison_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("comparisons.id", ondelete="CASCADE"))
    position: Mapped[int]  # 0-based pane position as shown (shuffled), not the lineup order
    contender: Mapped[str] = mapped_column(String(MAX_NAME_CHARS["contender"]), index=True)
    weights_id: Mapped[str] = mapped_column(String(MAX_NAME_CHARS["weights_id"]))
    weights_revision: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["weights_revision"]))
    messages: Mapped[list[dict[str, str]]] = mapped_column(Json)
    prompt_rendered: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(Json)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int]
    completion_tokens: Mapped[int]
    time_to_first_token_s: Mapped[float | None]
    duration_s: Mapped[float]
    tokens_per_s: Mapped[float | None]
    created_at: Mapped[datetime]
    # Remote contenders (revision 0004; null for local weights): the server's base URL without
    # credentials, the model name it reported, its fingerprint, the request as sent less the messages
    # or prompt (api, template, body) and the server's own usage counts.
    endpoint: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["endpoint"]))
    served_model: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["served_model"]))
    system_fingerprint: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["system_fingerprint"]))
    request: Mapped[dict[str, Any] | None] = mapped_column(Json)
    usage: Mapped[dict[str, Any] | None] = mapped_column(Json)

    comparison: Mapped[Comparison] = relationship(back_populates="responses", foreign_keys=[comparison_id])

    __table_args__ = (
        UniqueConstraint("comparison_id", "position"),
        UniqueConstraint("comparison_id", "contender"),
        CheckConstraint("position >= 0", name="position"),
        CheckConstraint(_one_of("finish_reason", FINISH_REASONS), name="finish_reason"),
        CheckConstraint(
            "(finish_reason = 'error' AND error IS NOT NULL) OR (finish_reason <> 'error' AND error IS NULL)",
            name="error_iff_failed",
        ),
    )


class Rating(Base):
    """A person's judgement of a whole comparison; at most one per comparison."""

    __tablename__ = "ratings"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    # unique: this constraint is what refuses the second of two concurrent votes.
    comparison_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("comparisons.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))
    choice: Mapped[str | None] = mapped_column(String(16))
    strength: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    blind: Mapped[bool]  # were the contenders' names hidden when the person voted
    # Who rated: an annotator name or a browser session id, for agreement studies; null when unknown.
    rater: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["rater"]))

    comparison: Mapped[Comparison] = relationship(back_populates="rating")
    judgements: Mapped[list[AnswerJudgement]] = relationship(
        back_populates="rating", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint(_one_of("kind", RATING_KINDS), name="kind"),
        CheckConstraint(_one_of("choice", CHOICES, nullable=True), name="choice"),
        CheckConstraint(_one_of("strength", STRENGTHS, nullable=True), name="strength"),
        CheckConstraint(
            "(kind = 'pairwise' AND choice IS NOT NULL) OR (kind <> 'pairwise' AND choice IS NULL)",
            name="choice_iff_pairwise",
        ),
        CheckConstraint("strength IS NULL OR choice IN ('a', 'b')", name="strength_only_for_a_or_b"),
        # Exports and the leaderboard page through ratings in (created_at, id) order (reading.py).
        Index("ix_ratings_created_at_id", "created_at", "id"),
    )


class AnswerJudgement(Base):
    """What a rating says about one answer: its 1-5 score or its rank (1 = best), and the unsafe flag.

    Every response of a rated comparison gets one row, so "not flagged" is stored, not inferred.
    """

    __tablename__ = "answer_judgements"

    rating_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("ratings.id", ondelete="CASCADE"), primary_key=True
    )
    response_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    score: Mapped[int | None]
    unsafe: Mapped[bool]
    unsafe_reason: Mapped[str | None] = mapped_column(Text)
    rank: Mapped[int | None]  # kind "ranking": 1 is best, equal ranks are ties

    rating: Mapped[Rating] = relationship(back_populates="judgements")
    response: Mapped[Response] = relationship()

    __table_args__ = (
        CheckConstraint(f"score IS NULL OR (score >= {SCORE_MIN} AND score <= {SCORE_MAX})", name="score"),
        CheckConstraint("unsafe_reason IS NULL OR unsafe", name="reason_only_if_unsafe"),
        CheckConstraint("rank IS NULL OR rank >= 1", name="rank"),
    )
