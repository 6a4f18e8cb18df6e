"""The feedback database on real SQLite files: schema, store, refusals, concurrency."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.orm import Session

from feedback_db import (
    ComparisonRecord,
    Database,
    RatingRecord,
    RatingRefused,
    ResponseRecord,
    add_comparison,
    add_rating,
    add_response,
    count_rows,
    get_comparison,
    open_database,
    rating_of,
    responses_of,
    sqlite_url,
)

TABLES = {"comparisons", "responses", "ratings", "answer_judgements", "raters", "acceptances", "rating_rules"}
NO_RATERS = {"raters": 0, "acceptances": 0, "rating_rules": 0}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(sqlite_url(tmp_path / "feedback.sqlite3"))
    yield database
    database.dispose()


def comparison(n: int = 2, **overrides: object) -> ComparisonRecord:
    fields: dict = {"lineup": "demo", "session_id": "sess-1", "prompt": "Why is the sky blue?", "n_responses": n}
    return ComparisonRecord(**(fields | overrides))


def response(comparison_id: str, position: int, **overrides: object) -> ResponseRecord:
    fields: dict = {
        "comparison_id": comparison_id,
        "position": position,
        "contender": f"contender-{position}",
        "weights_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "weights_revision": "abc123",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}],
        "prompt_rendered": "<|im_start|>system\nBe brief.<|im_end|>\n...",
        "params": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64},
        "seed": 1234 + position,
        "text": f"Rayleigh scattering ({position}).",
        "finish_reason": "stop",
        "prompt_tokens": 21,
        "completion_tokens": 9,
        "time_to_first_token_s": 0.05,
        "duration_s": 0.5,
        "tokens_per_s": 18.0,
    }
    return ResponseRecord(**(fields | overrides))


def stored_comparison(db: Database, n: int = 2, finished: int | None = None, **response_overrides: object) -> str:
    """A comparison with `finished` (default all n) answers stored; returns its id."""
    record = comparison(n)
    with db.session() as session:
        add_comparison(session, record)
        for position in range(n if finished is None else finished):
            add_response(session, response(record.id, position, **response_overrides))
    return record.id


def rate(db: Database, record: RatingRecord) -> str:
    with db.session() as session:
        return add_rating(session, record)


# --- opening ---------------------------------------------------------------------------------------


def test_first_open_creates_tables_and_second_open_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "feedback.sqlite3"  # the folder does not exist yet
    first = open_database(sqlite_url(path))
    assert set(inspect(first.engine).get_table_names()) == TABLES | {"alembic_version"}
    comparison_id = stored_comparison(first)
    rate(first, RatingRecord(comparison_id, "pairwise", choice="tie"))
    first.dispose()

    second = open_database(sqlite_url(path))
    with second.session() as session:
        assert (
            count_rows(session) == {"comparisons": 1, "responses": 2, "ratings": 1, "answer_judgements": 2} | NO_RATERS
        )
        assert get_comparison(session, comparison_id) is not None
    second.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(db: Database) -> None:
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 10_000


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "the database URL is empty"),
        ("data/feedback.sqlite3", "prefix it with sqlite:///"),
        ("postgres://user:secret@host/db", "postgresql+psycopg://"),
        ("nosuchdb://host/db", "unknown database kind 'nosuchdb'"),
        ("mysql://user:secret@host/db", "is not installed"),
    ],
)
def test_bad_url_says_what_is_wrong_and_shows_an_example(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///data/feedback.sqlite3") as caught:
        open_database(url)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


def test_sqlite_url_is_absolute(tmp_path: Path, db: Database) -> None:
    assert db.url == sqlite_url(tmp_path / "feedback.sqlite3")
    assert sqlite_url(Path("rel.sqlite3")).startswith("sqlite:////")


# --- round trips ---------------------------------------------------------------------------------


def test_scores_rating_round_trip_with_every_field(db: Database) -> None:
    record = comparison(3, mode="arena", system_prompt="Be brief.")
    answers = [
        response(record.id, 0),
        response(record.id, 1, finish_reason="length", seed=None, weights_revision=None, tokens_per_s=None),
        response(record.id, 2, finish_reason="error", error="CUDA out of memory", text="", time_to_first_token_s=None),
    ]
    with db.session() as session:
        add_comparison(session, record)
        for answer in reversed(answers):  # answers arrive in any order
            add_response(session, answer)
    rating_id = rate(
        db,
        RatingRecord(
            record.id,
            "scores",
            scores={0: 5, 1: 2},
            unsafe={1: "  gives dosage  ", 2: None},
            comment="  0 was best ",
            blind=True,
        ),
    )

    with db.session() as session:
        stored = get_comparison(session, record.id)
        assert stored is not None
        assert (stored.lineup, stored.mode, stored.session_id, stored.turn, stored.parent_id) == (
            "demo",
            "arena",
            "sess-1",
            0,
            None,
        )
        assert (stored.system_prompt, stored.prompt, stored.n_responses) == ("Be brief.", record.prompt, 3)
        assert stored.created_at.tzinfo == timezone.utc
        rows = responses_of(session, record.id)
        assert [row.position for row in rows] == [0, 1, 2]
        for row, answer in zip(rows, answers):
            for name in (
                "contender",
                "weights_id",
                "weights_revision",
                "prompt_rendered",
                "seed",
                "text",
                "finish_reason",
                "error",
                "prompt_tokens",
                "completion_tokens",
                "time_to_first_token_s",
                "duration_s",
                "tokens_per_s",
            ):
                assert getattr(row, name) == getattr(answer, name), name
            assert row.messages == list(answer.messages)
            assert row.params == answer.params
            assert row.created_at.tzinfo == timezone.utc and len(row.id) == 32
        rating = rating_of(session, record.id)
        assert rating is not None and rating.id == rating_id
        assert (rating.kind, rating.choice, rating.strength, rating.comment, rating.blind) == (
            "scores",
            None,
            None,
            "0 was best",
            True,
        )
        assert rating.created_at.tzinfo == timezone.utc
        judged = {j.response.position: (j.score, j.unsafe, j.unsafe_reason) for j in rating.judgements}
        assert judged == {0: (5, False, None), 1: (2, True, "gives dosage"), 2: (None, True, None)}


def test_pairwise_rating_with_strength_and_a_second_turn(db: Database) -> None:
    first_id = stored_comparison(db)
    second = comparison(2, turn=1, parent_id=first_id, prompt="And at sunset?")
    with db.session() as session:
        add_comparison(session, second)
        for position in (1, 0):
            add_response(session, response(second.id, position))
    rate(db, RatingRecord(second.id, "pairwise", choice="b", strength="slightly_better", unsafe={0: None}))
    with db.session() as session:
        assert get_comparison(session, second.id).parent_id == first_id
        assert rating_of(session, first_id) is None
        rating = rating_of(session, second.id)
    # Read after the session closed: rating_of loads judgements and their responses up front.
    assert (rating.kind, rating.choice, rating.strength, rating.blind, rating.comment) == (
        "pairwise",
        "b",
        "slightly_better",
        False,
        None,
    )
    assert sorted((j.response.position, j.score, j.unsafe) for j in rating.judgements) == [
        (0, None, True),
        (1, None, False),
    ]


# --- refusals --------------------------------------------------------------------------------------


def test_rating_an_unknown_comparison_is_refused(db: Database) -> None:
    with pytest.raises(RatingRefused, match="is unknown"):
        rate(db, RatingRecord("0" * 32, "pairwise", choice="a"))


def test_vote_before_every_answer_finished_is_refused(db: Database) -> None:
    comparison_id = stored_comparison(db, n=3, finished=2)
    with pytest.raises(RatingRefused, match="only 2 of 3 answers are in; wait until every answer has finished"):
        rate(db, RatingRecord(comparison_id, "scores", scores={0: 1, 1: 2}))


def test_second_vote_is_refused_and_the_first_is_unchanged(db: Database) -> None:
    comparison_id = stored_comparison(db)
    first_id = rate(db, RatingRecord(comparison_id, "pairwise", choice="a", strength="better", comment="A"))
    with db.session() as session:
        before = count_rows(session)
    with pytest.raises(RatingRefused, match="this comparison was already rated"):
        rate(db, RatingRecord(comparison_id, "pairwise", choice="b", unsafe={0: "x"}, comment="B"))
    with db.session() as session:
        assert count_rows(session) == before
        rating = rating_of(session, comparison_id)
        assert (rating.id, rating.choice, rating.strength, rating.comment) == (first_id, "a", "better", "A")
        assert not any(j.unsafe for j in rating.judgements)


def test_a_refusal_leaves_the_callers_session_usable(db: Database) -> None:
    comparison_id = stored_comparison(db)
    with db.session() as session:
        with pytest.raises(RatingRefused):
            add_rating(session, RatingRecord(comparison_id, "pairwise", choice="a", unsafe={5: None}))
        add_rating(session, RatingRecord(comparison_id, "pairwise", choice="tie"))
    with db.session() as session:
        assert rating_of(session, comparison_id).choice == "tie"


@pytest.mark.parametrize(
    ("n", "rating", "message"),
    [
        (
            3,
            {"kind": "pairwise", "choice": "a"},
            "a pairwise vote compares exactly 2 answers and this comparison has 3",
        ),
        (2, {"kind": "scores", "scores": {0: 3, 2: 4}}, r"scores names positions \[2\]"),
        (2, {"kind": "pairwise", "choice": "a", "unsafe": {7: None}}, r"unsafe names positions \[7\]"),
        (3, {"kind": "scores", "scores": {0: 3}}, r"positions \[1, 2\] have none"),
    ],
)
def test_rating_that_does_not_fit_the_comparison_is_refused(db: Database, n: int, rating: dict, message: str) -> None:
    comparison_id = stored_comparison(db, n=n)
    with pytest.raises(RatingRefused, match=message):
        rate(db, RatingRecord(comparison_id, **rating))
    with db.session() as session:
        assert count_rows(session)["ratings"] == 0


def test_rating_when_every_answer_failed_is_refused(db: Database) -> None:
    comparison_id = stored_comparison(db, finish_reason="error", error="timeout", text="")
    with pytest.raises(RatingRefused, match="every answer failed"):
        rate(db, RatingRecord(comparison_id, "pairwise", choice="both_bad"))


def test_bad_comparisons_and_responses_are_refused(db: Database) -> None:
    comparison_id = stored_comparison(db)
    with db.session() as session, pytest.raises(ValueError, match="is already stored"):
        add_comparison(session, comparison(id=comparison_id))
    with db.session() as session, pytest.raises(ValueError, match="store the previous turn first"):
        add_comparison(session, comparison(turn=1, parent_id="f" * 32))
    with db.session() as session, pytest.raises(ValueError, match="previous turn of the same session"):
        add_comparison(session, comparison(turn=1, parent_id=comparison_id, session_id="other"))
    with db.session() as session, pytest.raises(ValueError, match="call add_comparison first"):
        add_response(session, response("f" * 32, 0))
    with db.session() as session, pytest.raises(ValueError, match=r"position 2 is out of range.*positions 0-1"):
        add_response(session, response(comparison_id, 2))
    with db.session() as session, pytest.raises(ValueError, match="already has an answer from 'contender-0'"):
        add_response(session, response(comparison_id, 1, contender="contender-0"))
    with db.session() as session:
        assert (
            count_rows(session) == {"comparisons": 1, "responses": 2, "ratings": 0, "answer_judgements": 0} | NO_RATERS
        )


# --- record validation ---------------------------------------------------------------------------

ID = "a" * 32


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RatingRecord(ID, "pairwise", choice="tie", strength="better"), "leave it out for tie"),
        (lambda: RatingRecord(ID, "pairwise"), "a pairwise rating needs a choice"),
        (lambda: RatingRecord(ID, "pairwise", choice="left"), "choice must be one of"),
        (lambda: RatingRecord(ID, "pairwise", choice="a", strength="much"), "strength must be one of"),
        (lambda: RatingRecord(ID, "pairwise", choice="a", scores={0: 3}), "scores belong to kind='scores'"),
        (lambda: RatingRecord(ID, "scores", scores={0: 6}), "score for position 0 must be an integer between 1 and 5"),
        (lambda: RatingRecord(ID, "scores", scores={0: 0}), "between 1 and 5"),
        (lambda: RatingRecord(ID, "scores", scores={-1: 3}), "position must be an integer >= 0"),
        (lambda: RatingRecord(ID, "scores"), "needs scores"),
        (lambda: RatingRecord(ID, "scores", choice="a", scores={0: 1}), "not choice='a'"),
        (lambda: RatingRecord(ID, "ranked"), "kind must be one of"),
        (lambda: RatingRecord(ID, "ranking"), "kind='ranking' needs ranks"),
        (lambda: RatingRecord(ID, "ranking", ranks={0: 0}), "rank for position 0 must be an integer >= 1"),
        (lambda: RatingRecord(ID, "ranking", ranks={0: 1}, scores={0: 1}), "give scores with kind='scores'"),
        (lambda: RatingRecord(ID, "pairwise", choice="a", ranks={0: 1}), "ranks to kind='ranking'"),
        (lambda: RatingRecord(ID, "pairwise", choice="a", rater="r" * 65), "rater is 65 characters; at most 64"),
        (lambda: RatingRecord("Llama-2-7b-chat", "pairwise", choice="a"), "comparison_id must be an id"),
        (lambda: RatingRecord(ID, "pairwise", choice="a", comment="x" * 10_001), "at most 10000"),
        (lambda: comparison(n=1), "n_responses must be an integer >= 2"),
        (lambda: comparison(mode="blind"), "mode must be one of 'named', 'arena'"),
        (lambda: comparison(turn=1), "every later turn names the previous comparison"),
        (lambda: comparison(prompt="  "), "prompt must not be empty"),
        (lambda: response(ID, 0, finish_reason="eos"), "finish_reason must be one of"),
        (lambda: response(ID, 0, finish_reason="error"), "needs the error message"),
        (lambda: response(ID, 0, error="boom"), "use finish_reason 'error'"),
        (lambda: response(ID, -1), "position must be an integer >= 0"),
        (lambda: response(ID, 0, seed=2**64 - 1), "seed must be an integer between 0 and"),
        (lambda: response(ID, 0, duration_s=float("nan")), "duration_s must be a finite number"),
        (lambda: response(ID, 0, params={"temperature": float("nan")}), "params must hold only JSON values"),
        (lambda: response(ID, 0, params={"dtype": object()}), "params must hold only JSON values"),
        (lambda: response(ID, 0, messages=[]), "messages must be a non-empty list"),
        (
            lambda: response(ID, 0, messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
            "flatten Gradio's content parts",
        ),
        (
            lambda: response(ID, 0, messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]),
            "only the first message may be one",
        ),
        (
            lambda: response(ID, 0, messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
            "must be the user's new message",
        ),
        (lambda: response(ID, 0, contender="x" * 201), "contender is 201 characters; at most 200"),
    ],
)
def test_records_refuse_bad_values_with_a_clear_message(make, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_records_copy_what_the_caller_passed() -> None:
    params = {"temperature": 0.7}
    messages = [{"role": "user", "content": "hi", "metadata": {}}]
    record = response(ID, 0, params=params, messages=messages)
    params["temperature"] = 2.0
    messages.append({"role": "assistant", "content": "later"})
    assert record.params == {"temperature": 0.7}
    assert record.messages == ({"role": "user", "content": "hi"},)
    assert RatingRecord(ID, "pairwise", choice="a", comment="   ").comment is None


# --- concurrency -----------------------------------------------------------------------------------


def test_eight_threads_rating_different_comparisons_lose_nothing(db: Database) -> None:
    threads, per_thread = 8, 25
    records = [comparison() for _ in range(threads * per_thread)]
    with db.session() as session:  # setup in one transaction; only the votes race
        for record in records:
            add_comparison(session, record)
            for position in (0, 1):
                add_response(session, response(record.id, position))
    ids = [record.id for record in records]
    errors: list[BaseException] = []

    def vote(mine: list[str]) -> None:
        try:
            for comparison_id in mine:
                with db.session() as session:  # one session per action, never shared between threads
                    add_rating(session, RatingRecord(comparison_id, "pairwise", choice="a", strength="better"))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    workers = [threading.Thread(target=vote, args=(ids[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with db.session() as session:
        counts = count_rows(session)
    assert (counts["ratings"], counts["answer_judgements"]) == (threads * per_thread, 2 * threads * per_thread)


def test_two_threads_racing_to_rate_one_comparison_store_exactly_one(db: Database) -> None:
    for _ in range(5):
        comparison_id = stored_comparison(db)
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def vote(choice: str) -> None:
            start.wait()
            try:
                rate(db, RatingRecord(comparison_id, "pairwise", choice=choice))
                outcomes.append("stored")
            except RatingRefused as e:
                outcomes.append(f"refused: {e}")

        workers = [threading.Thread(target=vote, args=(choice,)) for choice in ("a", "b")]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(outcomes)[0] == "refused: this comparison was already rated; ask a new question to vote again"
        assert sorted(outcomes)[1] == "stored"
        with db.session() as session:
            assert rating_of(session, comparison_id) is not None
    with db.session() as session:
        assert count_rows(session)["ratings"] == 5


def test_a_vote_that_loses_the_race_after_the_checks_is_refused_by_the_unique_constraint(db: Database) -> None:
    # Under PostgreSQL (READ COMMITTED) two votes can both pass add_rating's checks; then the unique
    # comparison_id decides. A plain engine on the same file, without BEGIN IMMEDIATE, takes no lock on
    # reads, so a rival vote can commit between the checks and the insert, as it could there.
    comparison_id = stored_comparison(db)
    plain = create_engine(db.engine.url)
    rival_ids: list[str] = []
    with Session(plain) as session:

        @event.listens_for(session, "before_flush")
        def rival_votes_first(*_: object) -> None:
            if not rival_ids:
                rival_ids.append(rate(db, RatingRecord(comparison_id, "pairwise", choice="b")))

        with pytest.raises(RatingRefused, match="this comparison was already rated"):
            add_rating(session, RatingRecord(comparison_id, "pairwise", choice="a"))
        assert session.is_active  # only the savepoint was rolled back
    plain.dispose()
    with db.session() as session:
        rating = rating_of(session, comparison_id)
        assert (rating.id, rating.choice, len(rating.judgements)) == (rival_ids[0], "b", 2)
        assert count_rows(session)["ratings"] == 1
