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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .records import (
    CHOICES,
    DIGEST_LENGTH,
    FINISH_REASONS,
    HISTORIES,
    ID_LENGTH,
    MAX_NAME_CHARS,
    MODES,
    RATER_KINDS,
    RATING_KINDS,
    RATING_SOURCES,
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
    # Revision 0006, for second opinions: the rater who asked (null before, or outside the page), how
    # many ratings it holds (kept by add_rating, read by the review queue), when its last answer was
    # stored (null until then: not reviewable), and for a known-answer (gold) item, the better answer's
    # position.
    asked_by: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["rater"]))
    n_ratings: Mapped[int] = mapped_column(server_default="0")
    complete_at: Mapped[datetime | None]
    gold_position: Mapped[int | None]

    # foreign_keys: continued_from is a second path between the two tables; this one is the answers'.
    responses: Mapped[list[Response]] = relationship(
        back_populates="comparison",
        order_by="Response.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
        foreign_keys="Response.comparison_id",
    )
    ratings: Mapped[list[Rating]] = relationship(
        back_populates="comparison", cascade="all, delete-orphan", passive_deletes=True, order_by="Rating.created_at"
    )

    __table_args__ = (
        CheckConstraint(_one_of("mode", MODES), name="mode"),
        CheckConstraint("turn >= 0", name="turn"),
        CheckConstraint("n_responses >= 2", name="n_responses"),
        CheckConstraint(_one_of("history", HISTORIES), name="history"),
        Index("ix_comparisons_visitor_created_at", "visitor", "created_at"),
        CheckConstraint("n_ratings >= 0", name="n_ratings"),
        CheckConstraint("gold_position IS NULL OR gold_position >= 0", name="gold_position"),
        # The review queue: ordinary (gold_position IS NULL) or gold items, the one nearest to its overlap
        # first, oldest first: a scan of this index in its order, no sort.
        Index("ix_comparisons_review", "gold_position", n_ratings.desc(), "created_at"),
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
    """A person's judgement of a whole comparison; a comparison holds at most one per rater."""

    __tablename__ = "ratings"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    comparison_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("comparisons.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))
    choice: Mapped[str | None] = mapped_column(String(16))
    strength: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    blind: Mapped[bool]  # were the contenders' names hidden when the person voted
    # Who rated: a pseudonymous raters.id (revision 0006); before it, an annotator name or a browser
    # session id as stored then; null when unknown.
    rater: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["rater"]))
    # Revision 0006: where it was given (records.RatingSource), the stored positions in the order the
    # rater saw them (null: as stored), the seconds from the last answer finishing to the vote, the
    # sha256 of the terms and guidelines in force, and the reasons it does not count (rules.py; empty
    # or null: it counts).
    source: Mapped[str] = mapped_column(String(16), server_default="page")
    shown_order: Mapped[list[int] | None] = mapped_column(Json)
    seconds_to_vote: Mapped[float | None]
    terms_version: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH))
    guidelines_version: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH))
    set_aside: Mapped[list[str] | None] = mapped_column(Json)

    comparison: Mapped[Comparison] = relationship(back_populates="ratings")
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
        # One rating per rater: what refuses the second of one rater's two concurrent votes, while two
        # raters' votes on the same comparison both land.
        UniqueConstraint("comparison_id", "rater"),
        # NULLs are distinct in a unique constraint: ratings without a rater get one per comparison here.
        Index(
            "uq_ratings_comparison_id_without_rater",
            "comparison_id",
            unique=True,
            sqlite_where=text("rater IS NULL"),
            postgresql_where=text("rater IS NULL"),
        ),
        CheckConstraint(_one_of("source", RATING_SOURCES), name="source"),
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


class Rater(Base):
    """Who rates, under a pseudonym (the id ratings carry); the name is for the admin only."""

    __tablename__ = "raters"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # An invitee's or Hugging Face account's name, or an imported file's rater; null for a browser session.
    name: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS["rater"]), unique=True)
    # sha256 of the invite's secret: the secret itself is shown once and never stored.
    invite_hash: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH), unique=True)
    # sha256 of the key the browser that first opened the invite keeps: the invite works in that browser
    # only, so a forwarded link does not make a second person the same rater.
    browser_hash: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    acceptances: Mapped[list[Acceptance]] = relationship(
        back_populates="rater", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (CheckConstraint(_one_of("kind", RATER_KINDS), name="kind"),)


class Acceptance(Base):
    """A rater accepted a version (sha256) of a document, such as the terms, at a time."""

    __tablename__ = "acceptances"

    rater_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("raters.id", ondelete="CASCADE"), primary_key=True
    )
    document: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)
    accepted_at: Mapped[datetime]

    rater: Mapped[Rater] = relationship(back_populates="acceptances")


class RatingRules(Base):
    """The rules the stored set-aside reasons were computed by (one row): when an app starts with other
    rules, every rating's reasons are computed again."""

    __tablename__ = "rating_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(Json)
    changed_at: Mapped[datetime]
