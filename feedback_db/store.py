"""Writing and reading comparisons, responses and ratings.

Every function takes a Session and never commits: the caller owns the transaction, one per user action
(`with database.session() as session: add_rating(session, record)`). Writers flush, so a refused or
conflicting write fails inside the call that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import EllipsisType

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from .records import ComparisonRecord, RatingRecord, ResponseRecord, new_id
from .schema import AnswerJudgement, Base, Comparison, Rating, Response, utc_now


class RatingRefused(ValueError):
    """A vote the store will not keep; the message is meant for the person who voted."""


class LimitReached(ValueError):
    """A visitor has asked as many comparisons in `window` as `limit` allows (`used` so far)."""

    def __init__(self, window: str, used: int, limit: int) -> None:
        super().__init__(f"{used} comparisons in the last {window}; the limit is {limit}")
        self.window, self.used, self.limit = window, used, limit


def add_comparison_within(
    session: Session, record: ComparisonRecord, limits: Sequence[tuple[str, int, datetime]] = ()
) -> None:
    """Store a new comparison unless its visitor has reached a limit: (window name, limit, window start).

    Counting and storing happen in one transaction that no other admission of the same visitor can
    interleave with, in this process or another: SQLite's writers hold the file's lock from BEGIN
    IMMEDIATE on; PostgreSQL takes an advisory lock on the visitor until the transaction ends. Without
    it, 60 asks at once from one visitor all counted 0 before any was stored (issue 15).
    """
    if record.visitor and limits:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"visitor:{record.visitor}"}
            )
        check_visitor_limits(session, record.visitor, limits)
    add_comparison(session, record)


def check_visitor_limits(session: Session, visitor: str, limits: Sequence[tuple[str, int, datetime]]) -> None:
    """Raise LimitReached for the first limit (window name, limit, window start) `visitor` has reached."""
    for window, limit, start in limits:
        used = comparisons_by_visitor(session, visitor, start)
        if used >= limit:
            raise LimitReached(window, used, limit)


def add_comparison(session: Session, record: ComparisonRecord) -> None:
    """Store a new comparison; its parent (the previous turn), and the answer it continues from, must be stored."""
    if session.get(Comparison, record.id) is not None:
        raise ValueError(f"comparison {record.id} is already stored; make a fresh id with new_id()")
    if record.parent_id is not None:
        parent = session.get(Comparison, record.parent_id)
        if parent is None:
            raise ValueError(f"parent comparison {record.parent_id} is not stored; store the previous turn first")
        if parent.session_id != record.session_id or parent.turn != record.turn - 1:
            raise ValueError(
                f"comparison {record.id} (session {record.session_id!r}, turn {record.turn}) cannot follow "
                f"{parent.id} (session {parent.session_id!r}, turn {parent.turn}): "
                "a parent is the previous turn of the same session"
            )
    if record.continued_from is not None:
        _check_continued_from(session, record)
    session.add(
        Comparison(
            id=record.id,
            created_at=utc_now(),
            lineup=record.lineup,
            mode=record.mode,
            session_id=record.session_id,
            visitor=record.visitor,
            turn=record.turn,
            parent_id=record.parent_id,
            system_prompt=record.system_prompt,
            prompt=record.prompt,
            n_responses=record.n_responses,
            sampling=dict(record.sampling) if record.sampling is not None else None,
            history=record.history,
            continued_from=record.continued_from,
            asked_by=record.asked_by,
            gold_position=record.gold_position,
        )
    )
    session.flush()


def _check_continued_from(session: Session, record: ComparisonRecord) -> None:
    """A shared history continues from an answer of the previous turn, the parent comparison."""
    continued = session.get(Response, record.continued_from)
    if continued is None:
        raise ValueError(
            f"continued_from names response {record.continued_from}, which is not stored; "
            "pass the id of the previous turn's preferred answer (ResponseRecord.id) after storing it"
        )
    if continued.comparison_id != record.parent_id:
        raise ValueError(
            f"continued_from names response {continued.id} of comparison {continued.comparison_id}, "
            f"but this turn follows comparison {record.parent_id}: continue from an answer of the previous turn"
        )


def add_response(session: Session, record: ResponseRecord) -> None:
    """Store one contender's answer under `record.id`; answers of one comparison may arrive in any order."""
    comparison = session.get(Comparison, record.comparison_id)
    if comparison is None:
        raise ValueError(f"comparison {record.comparison_id} is not stored; call add_comparison first")
    if record.position >= comparison.n_responses:
        raise ValueError(
            f"position {record.position} is out of range: comparison {comparison.id} "
            f"expects {comparison.n_responses} answers, at positions 0-{comparison.n_responses - 1}"
        )
    if session.get(Response, record.id) is not None:
        raise ValueError(f"response {record.id} is already stored; make a fresh id with new_id()")
    for existing in responses_of(session, comparison.id):
        if record.position == existing.position or record.contender == existing.contender:
            raise ValueError(
                f"comparison {comparison.id} already has an answer from {existing.contender!r} at position "
                f"{existing.position}; each position and each contender answers once"
            )
    row = _response_row(record)
    session.add(row)
    session.flush()
    answered = session.scalar(select(func.count()).where(Response.comparison_id == comparison.id))
    if answered == comparison.n_responses:  # the last answer: the comparison can be reviewed from now on
        comparison.complete_at = row.created_at
        session.flush()


def _response_row(record: ResponseRecord) -> Response:
    return Response(
        id=record.id,
        comparison_id=record.comparison_id,
        position=record.position,
        contender=record.contender,
        weights_id=record.weights_id,
        weights_revision=record.weights_revision,
        messages=list(record.messages),
        prompt_rendered=record.prompt_rendered,
        params=dict(record.params),
        seed=record.seed,
        text=record.text,
        finish_reason=record.finish_reason,
        error=record.error,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        time_to_first_token_s=record.time_to_first_token_s,
        duration_s=record.duration_s,
        tokens_per_s=record.tokens_per_s,
        endpoint=record.endpoint,
        served_model=record.served_model,
        system_fingerprint=record.system_fingerprint,
        request=dict(record.request) if record.request is not None else None,
        usage=dict(record.usage) if record.usage is not None else None,
        created_at=utc_now(),
    )


ALREADY_RATED = "this comparison was already rated; ask a new question to vote again"
ALREADY_YOURS = "you have rated this comparison already: a comparison takes one rating from each rater"


def add_rating(session: Session, record: RatingRecord) -> str:
    """Store a rating and one judgement per answer; return the rating id, or raise RatingRefused.

    A comparison holds at most one rating per rater (and one without a rater). Its set-aside reasons are
    computed by the stored rules (rules.py); a rating of a known-answer item updates its rater's others.
    """
    comparison = session.get(Comparison, record.comparison_id)
    if comparison is None:
        raise RatingRefused(f"comparison {record.comparison_id} is unknown; rate an answer this server showed you")
    if rating_of(session, comparison.id, record.rater) is not None:
        raise RatingRefused(ALREADY_RATED if record.rater is None else ALREADY_YOURS)
    responses = responses_of(session, comparison.id)
    _check_rating_fits(record, comparison, responses)
    rating = _rating_row(record, responses)
    try:
        # A SAVEPOINT, so that losing a race rolls back only this rating and the caller's session lives on.
        with session.begin_nested():
            session.add(rating)
            session.flush()
            # In SQL, not in Python: two raters' votes at once both count.
            session.execute(
                update(Comparison).where(Comparison.id == comparison.id).values(n_ratings=Comparison.n_ratings + 1)
            )
    except IntegrityError:
        # Two votes of one rater passed the check above at once (PostgreSQL, READ COMMITTED); the
        # unique (comparison_id, rater), or for votes without a rater the partial unique index on
        # comparison_id, let exactly one in. Any other integrity error is a bug.
        if rating_of(session, comparison.id, record.rater) is None:
            raise
        raise RatingRefused(ALREADY_RATED if record.rater is None else ALREADY_YOURS) from None
    from .rules import rules_after_rating  # rules reads the store's rows; imported here, not at the top

    rules_after_rating(session, rating, comparison)
    return rating.id


def _check_rating_fits(record: RatingRecord, comparison: Comparison, responses: list[Response]) -> None:
    """Refuse a rating that does not fit the stored comparison."""
    if len(responses) < comparison.n_responses:
        raise RatingRefused(
            f"only {len(responses)} of {comparison.n_responses} answers are in; "
            "wait until every answer has finished, then vote"
        )
    if record.kind == "pairwise" and len(responses) != 2:
        raise RatingRefused(
            f"a pairwise vote compares exactly 2 answers and this comparison has {len(responses)}; "
            "give each answer a 1-5 score (kind='scores') or a rank (kind='ranking') instead"
        )
    positions = {r.position for r in responses}
    for name, keys in (("scores", record.scores), ("ranks", record.ranks), ("unsafe", record.unsafe)):
        strays = sorted(set(keys) - positions)
        if strays:
            raise RatingRefused(
                f"{name} names positions {strays}, but the answers are at positions {sorted(positions)}"
            )
    # Design choice: a rating of nothing but failures teaches a reward model nothing, so it is refused.
    if all(r.finish_reason == "error" for r in responses):
        raise RatingRefused("every answer failed with an error, so there is nothing to rate; ask again")
    _check_every_answer_judged(record, responses)


def _check_every_answer_judged(record: RatingRecord, responses: list[Response]) -> None:
    """A scores or ranking rating covers every answer that did not fail; ranks run from 1 to the count."""
    given = record.scores if record.kind == "scores" else record.ranks
    missing = sorted(r.position for r in responses if r.finish_reason != "error" and r.position not in given)
    if record.kind == "scores" and missing:
        raise RatingRefused(f"give a 1-5 score to every answer; positions {missing} have none")
    if record.kind == "ranking" and missing:
        raise RatingRefused(f"give a rank to every answer (1 for the best); positions {missing} have none")
    out_of_range = {p: rank for p, rank in record.ranks.items() if rank > len(responses)}
    if out_of_range:
        raise RatingRefused(
            f"ranks {out_of_range} are out of range: with {len(responses)} answers, ranks go from 1 to {len(responses)}"
        )


def _rating_row(record: RatingRecord, responses: list[Response]) -> Rating:
    rating = Rating(
        id=new_id(),
        comparison_id=record.comparison_id,
        created_at=utc_now(),
        kind=record.kind,
        choice=record.choice,
        strength=record.strength,
        comment=record.comment,
        blind=record.blind,
        rater=record.rater,
        source=record.source,
        shown_order=list(record.shown_order) if record.shown_order is not None else None,
        seconds_to_vote=record.seconds_to_vote,
        terms_version=record.terms_version,
        guidelines_version=record.guidelines_version,
    )
    rating.judgements = [
        AnswerJudgement(
            response_id=response.id,
            score=record.scores.get(response.position),
            rank=record.ranks.get(response.position),
            unsafe=response.position in record.unsafe,
            unsafe_reason=record.unsafe.get(response.position),
        )
        for response in responses
    ]
    return rating


def get_comparison(session: Session, comparison_id: str) -> Comparison | None:
    """The stored comparison with this id, or None."""
    return session.get(Comparison, comparison_id)


def responses_of(session: Session, comparison_id: str) -> list[Response]:
    """The stored answers of a comparison, by pane position."""
    query = select(Response).where(Response.comparison_id == comparison_id).order_by(Response.position)
    return list(session.scalars(query))


def rating_of(session: Session, comparison_id: str, rater: str | None | EllipsisType = ...) -> Rating | None:
    """A comparison's first rating, or with `rater`, that rater's (None: the one given without a rater),
    with its judgements and their responses loaded; None if there is none."""
    return next((r for r in ratings_of(session, comparison_id) if rater is ... or r.rater == rater), None)


def ratings_of(session: Session, comparison_id: str) -> list[Rating]:
    """Every rating of a comparison, oldest first, with judgements and their responses loaded."""
    # Eager, so the result stays readable after its session closes (lazy loads would fail there).
    query = (
        select(Rating)
        .where(Rating.comparison_id == comparison_id)
        .order_by(Rating.created_at, Rating.id)
        .options(selectinload(Rating.judgements).joinedload(AnswerJudgement.response))
    )
    return list(session.scalars(query))


def count_rows(session: Session) -> dict[str, int]:
    """Rows per table, by table name."""
    return {
        table.name: session.scalar(select(func.count()).select_from(table)) or 0
        for table in Base.metadata.sorted_tables
    }


def comparisons_by_visitor(session: Session, visitor: str, since: datetime) -> int:
    """How many comparisons `visitor` (a salted address hash) asked since `since` (the per-visitor limits)."""
    query = (
        select(func.count())
        .select_from(Comparison)
        .where(Comparison.visitor == visitor, Comparison.created_at >= since)
    )
    return session.scalar(query) or 0


def mark_interrupted(session: Session, before: datetime) -> int:
    """Mark comparisons made before `before` that lack answers as interrupted; return how many.

    Called when an app starts: a server killed mid-generation leaves such comparisons behind. With
    several app processes on one database, `before` must leave out comparisons another one still runs.
    """
    answered = (
        select(func.count())
        .select_from(Response)
        .where(Response.comparison_id == Comparison.id)
        .correlate(Comparison)
        .scalar_subquery()
    )
    unfinished = select(Comparison).where(
        Comparison.created_at < before, Comparison.interrupted_at.is_(None), answered < Comparison.n_responses
    )
    found = list(session.scalars(unfinished))
    now = utc_now()
    for comparison in found:
        comparison.interrupted_at = now
    session.flush()
    return len(found)


def session_data(session: Session, session_ids: list[str], visitor: str | None = None) -> list[Comparison]:
    """What is stored about these conversations: their comparisons, oldest first, answers and rating loaded;
    with `visitor`, only the comparisons that visitor asked."""
    if not session_ids:
        return []
    query = (
        select(Comparison)
        .where(Comparison.session_id.in_(session_ids))
        .order_by(Comparison.created_at)
        .options(selectinload(Comparison.responses), selectinload(Comparison.ratings))
    )
    if visitor is not None:
        query = query.where(Comparison.visitor == visitor)
    return list(session.scalars(query))


def delete_session_data(
    session: Session,
    session_ids: list[str],
    *,
    ratings_only: bool,
    visitor: str | None = None,
    rater: str | None = None,
) -> int:
    """Delete these conversations' ratings, or everything stored about them; return the rows' count.

    A visitor's own request: comparisons (with their answers and every rating of them, by cascade) or
    only the ratings the visitor gave go: the asker's own (or rater-less) ratings of these conversations'
    comparisons, and `rater`'s on any comparison (its reviews). Nothing of any other conversation, or
    with `visitor` of any other visitor, and no other rater's opinion is touched by ratings_only.
    """
    found = session_data(session, session_ids, visitor)
    if ratings_only:
        ratings = [r for c in found for r in c.ratings if r.rater in (None, c.asked_by, rater)]
        if rater is not None:
            ratings += [r for r in session.scalars(select(Rating).where(Rating.rater == rater)) if r not in ratings]
        for rating in ratings:
            session.execute(
                update(Comparison)
                .where(Comparison.id == rating.comparison_id)
                .values(n_ratings=Comparison.n_ratings - 1)
            )
            session.delete(rating)
        session.flush()
        return len(ratings)
    for comparison in reversed(found):  # later turns first: they point at earlier ones
        session.delete(comparison)
    session.flush()
    return len(found)
