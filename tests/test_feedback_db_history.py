"""Multi-turn provenance in the store: which history a turn used, and which answer it continued from."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import delete

from feedback_db import (
    ComparisonRecord,
    Database,
    Response,
    ResponseRecord,
    add_comparison,
    add_response,
    get_comparison,
    new_id,
    responses_of,
)

QUESTION = [{"role": "user", "content": "Capital of France?"}]


def turn(number: int = 0, parent_id: str | None = None, **fields: object) -> ComparisonRecord:
    return ComparisonRecord(
        lineup="demo",
        session_id="sess-1",
        prompt=f"question {number}",
        n_responses=2,
        turn=number,
        parent_id=parent_id,
        **fields,
    )


def answer(comparison_id: str, position: int, **fields: object) -> ResponseRecord:
    return ResponseRecord(
        comparison_id=comparison_id,
        position=position,
        contender="xy"[position],
        weights_id="org/m",
        messages=QUESTION,
        prompt_rendered="",
        params={},
        text=f"answer {position}",
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=2,
        duration_s=0.1,
        **fields,
    )


def stored_turn(db: Database, record: ComparisonRecord) -> list[ResponseRecord]:
    """Store a comparison and its two answers; returns the answers' records."""
    answers = [answer(record.id, 0), answer(record.id, 1)]
    with db.session() as session:
        add_comparison(session, record)
        for response in answers:
            add_response(session, response)
    return answers


def test_a_shared_turn_stores_the_answer_it_continued_from(any_db: Database) -> None:
    first = turn()
    answers = stored_turn(any_db, first)
    second = turn(1, first.id, history="shared", continued_from=answers[1].id)
    stored_turn(any_db, second)
    with any_db.session() as session:
        assert [r.id for r in responses_of(session, first.id)] == [a.id for a in answers]  # the caller's ids
        assert (get_comparison(session, first.id).history, get_comparison(session, first.id).continued_from) == (
            "own",
            None,
        )
        stored = get_comparison(session, second.id)
        assert (stored.history, stored.continued_from) == ("shared", answers[1].id)


def test_deleting_the_answer_a_turn_continued_from_keeps_the_turn(any_db: Database) -> None:
    first = turn()
    preferred = stored_turn(any_db, first)[0]
    second = turn(1, first.id, history="shared", continued_from=preferred.id)
    stored_turn(any_db, second)
    with any_db.session() as session:  # a data-removal request for one answer
        session.execute(delete(Response).where(Response.id == preferred.id))
    with any_db.session() as session:
        stored = get_comparison(session, second.id)
        assert (stored.history, stored.continued_from) == ("shared", None)
        assert len(responses_of(session, second.id)) == 2


def test_continuing_from_an_answer_that_is_not_the_previous_turns_is_refused(any_db: Database) -> None:
    first = turn()
    first_answers = stored_turn(any_db, first)
    second = turn(1, first.id, history="shared", continued_from=first_answers[0].id)
    second_answers = stored_turn(any_db, second)
    with any_db.session() as session, pytest.raises(ValueError, match="which is not stored; pass the id of"):
        add_comparison(session, turn(2, second.id, history="shared", continued_from=new_id()))
    with (
        any_db.session() as session,
        pytest.raises(ValueError, match=f"of comparison {first.id}, but this turn follows comparison {second.id}"),
    ):
        add_comparison(session, turn(2, second.id, history="shared", continued_from=first_answers[0].id))
    with any_db.session() as session:
        add_comparison(session, turn(2, second.id, history="shared", continued_from=second_answers[1].id))


def test_a_response_id_is_stored_once(any_db: Database) -> None:
    first = turn()
    taken = stored_turn(any_db, first)[0].id
    other = turn()
    with any_db.session() as session:
        add_comparison(session, other)
    with any_db.session() as session, pytest.raises(ValueError, match=f"response {taken} is already stored"):
        add_response(session, answer(other.id, 0, id=taken))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: turn(history="mine"), "history must be one of 'own', 'shared', got 'mine'"),
        (
            lambda: turn(1, "a" * 32, continued_from="b" * 32),
            "given with history 'own': only a shared history continues from one answer",
        ),
        (lambda: turn(history="shared", continued_from="b" * 32), "the first turn has no earlier answer"),
        (lambda: turn(1, "a" * 32, history="shared", continued_from="r1"), "continued_from must be an id"),
        (lambda: answer("a" * 32, 0, id="response-1"), "id must be an id made by new_id()"),
    ],
)
def test_provenance_fields_refuse_bad_values_with_a_clear_message(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_a_shared_turn_may_leave_continued_from_out() -> None:
    # A tie or a both-bad vote prefers no answer; the core still continues from one, or names none.
    assert turn(1, "a" * 32, history="shared").continued_from is None
    assert answer("a" * 32, 0).id != answer("a" * 32, 0).id
