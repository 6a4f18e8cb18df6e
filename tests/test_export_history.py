"""Exports of multi-turn conversations, stored as the core stores them: shared history and each pane's own."""

from __future__ import annotations

from typing import Any

from feedback_db import (
    ComparisonRecord,
    Database,
    ExportOptions,
    History,
    RatingRecord,
    ResponseRecord,
    add_comparison,
    add_rating,
    add_response,
    get_comparison,
    iter_rows,
)
from feedback_db.export import Tally

SYSTEM = {"role": "system", "content": "Be brief."}
QUESTIONS = ["Capital of France?", "And of Spain?", "And of Italy?"]
CHOICES = ["a", "b", "a"]  # the pane the person preferred at each turn
CONTENDERS = ("x", "y")  # by pane position, the same at every turn


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def store_conversation(database: Database, history: History) -> list[tuple[ComparisonRecord, list[ResponseRecord]]]:
    """Three rated turns through the store, with the conversations the core would send each pane.

    "shared": every pane gets one history, continued from the preferred answer of the turn before.
    "own": each pane gets its own earlier answers.
    """
    panes: list[list[dict[str, str]]] = [[SYSTEM], [SYSTEM]]
    parent_id = continued_from = None
    turns = []
    for number, (question, choice) in enumerate(zip(QUESTIONS, CHOICES)):
        record = ComparisonRecord(
            lineup="demo",
            session_id="sess-1",
            prompt=question,
            n_responses=2,
            mode="arena",
            turn=number,
            parent_id=parent_id,
            system_prompt=SYSTEM["content"],
            history=history,
            continued_from=continued_from,
        )
        panes = [pane + [user(question)] for pane in panes]
        answers = [
            ResponseRecord(
                comparison_id=record.id,
                position=position,
                contender=contender,
                weights_id=f"org/{contender}",
                messages=panes[position],
                prompt_rendered="",
                params={},
                text=f"{contender} on {question}",
                finish_reason="stop",
                prompt_tokens=9,
                completion_tokens=4,
                duration_s=0.1,
            )
            for position, contender in enumerate(CONTENDERS)
        ]
        with database.session() as session:  # one transaction per user action, as the app does
            add_comparison(session, record)
            for response in answers:
                add_response(session, response)
        with database.session() as session:
            add_rating(session, RatingRecord(record.id, "pairwise", choice=choice, strength="better", blind=True))
        preferred = answers["ab".index(choice)]
        if history == "shared":
            panes = [panes[0] + [assistant(preferred.text)]] * 2
            continued_from = preferred.id
        else:
            panes = [pane + [assistant(response.text)] for pane, response in zip(panes, answers)]
        parent_id = record.id
        turns.append((record, answers))
    return turns


def export(database: Database, export_format: str) -> tuple[list[dict[str, Any]], Tally]:
    tally = Tally()
    with database.snapshot() as session:
        rows = list(iter_rows(session, ExportOptions(export_format), tally))
    return rows, tally


def test_three_shared_turns_give_dpo_rows_whose_prompts_grow_by_the_chosen_answer(database: Database) -> None:
    turns = store_conversation(database, "shared")
    rows, tally = export(database, "dpo")
    assert len(rows) == 3 and dict(tally.skipped) == {}
    assert rows[0]["prompt"] == [SYSTEM, user(QUESTIONS[0])]
    for previous, row, question in zip(rows, rows[1:], QUESTIONS[1:]):
        assert row["prompt"] == previous["prompt"] + previous["chosen"] + [user(question)]
    assert [row["chosen_contender"] for row in rows] == ["x", "y", "x"]
    assert [row["chosen"] for row in rows] == [[assistant(f"{c} on {q}")] for c, q in zip("xyx", QUESTIONS)]
    with database.snapshot() as session:  # each later turn names the answer it continued from
        stored = [get_comparison(session, record.id) for record, _ in turns]
        assert [(c.history, c.continued_from) for c in stored] == [
            ("shared", None),
            ("shared", turns[0][1][0].id),
            ("shared", turns[1][1][1].id),
        ]


def test_own_histories_give_sft_rows_for_every_turn_but_dpo_rows_only_for_the_first(database: Database) -> None:
    store_conversation(database, "own")
    pairs, pair_tally = export(database, "dpo")
    assert len(pairs) == 1 and dict(pair_tally.skipped) == {"different_prompts": 2}
    rows, tally = export(database, "sft")
    assert dict(tally.skipped) == {}
    # Each winner with the conversation it replied to: its own pane's, whatever the loser saw.
    x_pane = [SYSTEM, user(QUESTIONS[0]), assistant("x on Capital of France?"), user(QUESTIONS[1])]
    y_pane = [SYSTEM, user(QUESTIONS[0]), assistant("y on Capital of France?"), user(QUESTIONS[1])]
    assert [row["messages"] for row in rows] == [
        [SYSTEM, user(QUESTIONS[0]), assistant("x on Capital of France?")],
        y_pane + [assistant("y on And of Spain?")],
        x_pane + [assistant("x on And of Spain?"), user(QUESTIONS[2]), assistant("x on And of Italy?")],
    ]


def test_shared_and_own_histories_label_the_same_kto_answers(database: Database) -> None:
    store_conversation(database, "shared")
    store_conversation(database, "own")
    rows, _ = export(database, "kto")
    # KTO labels answers one at a time, so which history they saw changes the prompts, not the labels.
    labels = [(row["contender"], row["label"]) for row in rows]
    assert labels[:6] == labels[6:] == [("x", True), ("y", False), ("x", False), ("y", True), ("x", True), ("y", False)]
