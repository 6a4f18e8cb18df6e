"""The comparison core with generation injected as plain functions, and a real SQLite file."""

from __future__ import annotations

import random
import time

import pytest

from feedback_db import count_rows, get_comparison, rating_of, responses_of
from models.streaming import GenerationResult, PromptReady, StreamFailure
from playground.comparison import Playground, snapshot_interval
from playground.errors import PlaygroundError
from playground.view import chat_messages, pane_label, pane_params, pane_stats
from playground.voting import Vote
from tests.fakes import lineup, run, words_streamer
from tests.waiting import until


def test_all_contenders_answer_and_are_stored(database):
    calls = []
    core = Playground(lineup(3), words_streamer(calls), database, rng=random.Random(1))
    session = core.new_conversation()
    run(core, session, "  What is the capital of France?  ")
    assert all(p.status == "done" for p in session.panes)
    assert {p.text for p in session.panes} == {f"c{i} says: What is the capital of France?" for i in range(3)}
    with database.session() as db:
        comparison = get_comparison(db, session.comparison_id)
        rows = responses_of(db, session.comparison_id)
        assert comparison.prompt == "What is the capital of France?" and comparison.n_responses == 3
        assert [r.position for r in rows] == [0, 1, 2]
        for row, pane in zip(rows, session.panes):
            assert row.contender == pane.contender.name and row.weights_id == "org/model"
            assert row.weights_revision == "main" and row.finish_reason == "stop"
            assert row.prompt_rendered == "PROMPT[What is the capital of France?]"
            assert row.params == pane.contender.params.as_dict() and row.seed is not None
            assert row.messages == [{"role": "user", "content": "What is the capital of France?"}]
            assert row.completion_tokens == 8 and row.time_to_first_token_s == 0.01


def test_streams_run_at_the_same_time(database):
    seen: list[str] = []

    def stream(contender, messages, params, *, stop, seed):
        yield PromptReady("p", 1)
        for i in range(5):
            seen.append(contender.name)
            time.sleep(0.01)
            yield "x"
        yield GenerationResult("xxxxx", "stop", 1, 5, 0.01, 0.05, seed)

    core = Playground(lineup(2), stream, database)
    run(core, core.new_conversation(), "hi")
    first_c1 = seen.index("c1")
    assert "c0" in seen[first_c1:] and "c1" in seen[: seen.index("c0") + 5]  # interleaved, not in turn


def test_positions_are_shuffled_per_conversation(database):
    core = Playground(lineup(3), words_streamer(), database, rng=random.Random(0))
    orders = {tuple(p.contender.name for p in core.new_conversation().panes) for _ in range(30)}
    assert len(orders) > 1


def test_one_failing_contender_does_not_stop_the_others(database):
    core = Playground(lineup(3), words_streamer(fail="c1"), database)
    session = core.new_conversation()
    run(core, session, "hello")
    status = {p.contender.name: p.status for p in session.panes}
    assert status == {"c0": "done", "c1": "error", "c2": "done"}
    failed = next(p for p in session.panes if p.contender.name == "c1")
    shown = chat_messages(failed, session)[-1]["content"]
    # The page gets a plain sentence, never an exception's class or text; the record keeps them.
    assert "this answer failed on the server; the other answers went on" in shown
    assert "RuntimeError" not in shown and "CUDA" not in shown
    with database.session() as db:
        reasons = {r.contender: (r.finish_reason, r.error) for r in responses_of(db, session.comparison_id)}
    assert reasons["c1"] == ("error", "RuntimeError: CUDA out of memory")
    assert reasons["c0"] == ("stop", None)


def test_an_engine_failure_is_shown_and_stored_as_its_plain_sentence(database):
    sentence = "the model ran out of memory on this answer; the other answers went on"
    core = Playground(lineup(2), words_streamer(fail="c0", failure=StreamFailure(sentence)), database)
    session = core.new_conversation()
    run(core, session, "hello")
    failed = next(p for p in session.panes if p.contender.name == "c0")
    assert failed.error == sentence and sentence in chat_messages(failed, session)[-1]["content"]
    with database.session() as db:
        reasons = {r.contender: (r.finish_reason, r.error) for r in responses_of(db, session.comparison_id)}
    assert reasons == {"c0": ("error", sentence), "c1": ("stop", None)}


def test_stop_ends_every_stream(database):
    core = Playground(lineup(2), words_streamer(delay=0.05), database)
    session = core.new_conversation()
    stream = core.ask(session, "one two three four five six seven eight")
    next(stream)
    core.stop(session)
    for _ in stream:
        pass
    assert {p.status for p in session.panes} == {"stopped"}
    with database.session() as db:
        assert {r.finish_reason for r in responses_of(db, session.comparison_id)} == {"stopped"}


def test_multi_turn_keeps_each_panes_conversation(database):
    calls = []
    core = Playground(lineup(2), words_streamer(calls), database)
    session = core.new_conversation()
    run(core, session, "first", system="be brief")
    first_id = session.comparison_id
    run(core, session, "second", system="be brief")
    messages = {name: msgs for name, msgs, _, _ in calls[2:]}
    for name, msgs in messages.items():
        assert msgs == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": f"{name} says: first"},
            {"role": "user", "content": "second"},
        ]
    with database.session() as db:
        second = get_comparison(db, session.comparison_id)
        assert (second.turn, second.parent_id) == (1, first_id)
    pane = session.panes[0]
    assert [m["role"] for m in chat_messages(pane, session)] == ["user", "assistant", "user", "assistant"]


def test_regenerate_is_a_new_comparison_of_the_same_turn(database):
    calls = []
    core = Playground(lineup(2), words_streamer(calls), database)
    session = core.new_conversation()
    run(core, session, "first")
    run(core, session, "second")
    before = session.comparison_id
    for _ in core.regenerate(session):
        pass
    assert session.comparison_id != before
    assert calls[-1][1] == calls[-3][1]  # the same conversation sent again
    with database.session() as db:
        assert get_comparison(db, session.comparison_id).turn == 1
        assert count_rows(db)["comparisons"] == 3


def test_clear_starts_over(database):
    core = Playground(lineup(2), words_streamer(), database)
    session = core.new_conversation()
    run(core, session, "first")
    fresh = core.clear(session)
    assert fresh.id != session.id and fresh.comparison_id is None
    assert all(p.history == [] for p in fresh.panes)
    with pytest.raises(PlaygroundError, match="nothing to regenerate"):
        next(core.regenerate(fresh))


def test_overrides_are_explicit_checked_and_shown(database):
    calls = []
    core = Playground(lineup(2), words_streamer(calls), database)
    session = core.new_conversation()
    assert [pane_params(p, session).startswith("preset: ") for p in session.panes] == [True, True]
    core.set_overrides(session, {"temperature": 0.0, "max_new_tokens": 64.0})  # sliders send floats
    assert session.overrides == {"temperature": 0.0, "max_new_tokens": 64}
    assert all(pane_params(p, session).startswith("your override: greedy") for p in session.panes)
    run(core, session, "hi")
    params = {name: p for name, _, p, _ in calls}
    assert params["c1"].max_new_tokens == 64 and params["c1"].temperature == 0.0
    assert all("max 64 tokens" in pane_params(p, session) for p in session.panes)
    core.set_overrides(session, None)  # back to each contender's preset
    assert "next answer: preset" in pane_params(next(p for p in session.panes if p.contender.name == "c1"), session)
    calls.clear()
    run(core, session, "again")
    assert {name: p.temperature for name, _, p, _ in calls} == pytest.approx({"c0": 0.0, "c1": 0.1})
    for bad, message in (
        ({"top_p": 0}, "top_p must be between"),
        ({"top_k": 40.5}, "whole number"),
        ({"temperature": True}, "must be a number"),
        ({"temperature": float("nan")}, "number"),
        ({"temperature": "1"}, "must be a number"),
        ({"beam_width": 3}, "unknown parameter"),
        ({"max_new_tokens": 10**9}, "between"),
    ):
        with pytest.raises(PlaygroundError, match=message):
            core.set_overrides(session, bad)
    assert session.overrides == {}


def test_sliders_and_server_checks_share_one_source():
    from playground.params import PARAM_FIELDS, PARAM_RANGES, checked_overrides

    assert PARAM_FIELDS == ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")
    for name, bounds in PARAM_RANGES.items():
        assert checked_overrides({name: bounds.minimum}) and checked_overrides({name: bounds.maximum})
        assert checked_overrides({name: bounds.default})[name] == bounds.default
        with pytest.raises(PlaygroundError):
            checked_overrides({name: bounds.maximum + 1})


def test_pairwise_rating_is_stored_by_position(database):
    core = Playground(lineup(2), words_streamer(), database)
    session = core.new_conversation()
    run(core, session, "hi")
    vote = Vote(choice="b", strength="slightly_better", unsafe={0: "rude"}, comment=" fine ")
    assert "stored" in core.rate(session, vote)
    with database.session() as db:
        rating = rating_of(db, session.comparison_id)
        assert (rating.kind, rating.choice, rating.strength, rating.comment, rating.blind) == (
            "pairwise",
            "b",
            "slightly_better",
            "fine",
            False,
        )
        flagged = {j.response.position: (j.unsafe, j.unsafe_reason) for j in rating.judgements}
        assert flagged == {0: (True, "rude"), 1: (False, None)}


def test_scores_rating_for_three_answers(database):
    core = Playground(lineup(3), words_streamer(), database)
    session = core.new_conversation()
    run(core, session, "hi")
    core.rate(session, Vote(scores={0: 5, 1: 3, 2: 1}))
    with database.session() as db:
        rating = rating_of(db, session.comparison_id)
        assert rating.kind == "scores"
        assert {j.response.position: j.score for j in rating.judgements} == {0: 5, 1: 3, 2: 1}


def test_ratings_refused_with_a_message(database):
    core = Playground(lineup(2), words_streamer(delay=0.05), database)
    session = core.new_conversation()
    with pytest.raises(PlaygroundError, match="nothing to rate yet"):
        core.rate(session, Vote(choice="a"))
    stream = core.ask(session, "one two three four")
    next(stream)
    with pytest.raises(PlaygroundError, match="wait until every answer has finished"):
        core.rate(session, Vote(choice="a"))
    for _ in stream:
        pass
    with pytest.raises(PlaygroundError, match="choice"):
        core.rate(session, Vote())
    core.rate(session, Vote(choice="tie"))
    with pytest.raises(PlaygroundError, match="already rated"):
        core.rate(session, Vote(choice="a", strength="better"))
    with database.session() as db:
        assert rating_of(db, session.comparison_id).choice == "tie"
        assert count_rows(db)["ratings"] == 1


def test_bad_prompts_and_busy_sessions(database):
    core = Playground(lineup(2), words_streamer(delay=0.05), database)
    session = core.new_conversation()
    with pytest.raises(PlaygroundError, match="prompt is empty"):
        next(core.ask(session, "   "))
    with pytest.raises(PlaygroundError, match="limit is 8000"):
        next(core.ask(session, "x" * 9000))
    stream = core.ask(session, "one two three")
    next(stream)
    with pytest.raises(PlaygroundError, match="still streaming"):
        next(core.ask(session, "again"))
    stream.close()  # the page went away: the streams are told to stop ...
    with pytest.raises(PlaygroundError, match="still streaming"):
        next(core.ask(session, "again"))  # ... and until they have, no new run may share their panes
    until(lambda: not session.busy, 5, every_s=0.01, what="the told streams to stop")
    assert {p.status for p in session.panes} == {"stopped"}
    run(core, session, "again")
    with database.session() as db:
        first, second = (get_comparison(db, i) for i in (session.parent_id, session.comparison_id))
        assert [r.finish_reason for r in responses_of(db, first.id)] == ["stopped", "stopped"]
        assert [r.text for r in responses_of(db, second.id)] == [
            f"{p.contender.name} says: again" for p in session.panes
        ]


def test_view_labels_and_stats(database):
    core = Playground(lineup(2), words_streamer(), database, mode="arena")
    session = core.new_conversation()
    run(core, session, "hi")
    assert [pane_label(p, session) for p in session.panes] == ["Model A", "Model B"]
    assert "tok/s" in pane_stats(session.panes[0]) and "3 tokens" in pane_stats(session.panes[0])
    core.rate(session, Vote(choice="a", strength="better"))
    assert pane_label(session.panes[0], session).startswith("A: c")


def test_a_failed_comparison_write_changes_nothing(database):
    core = Playground(lineup(2), words_streamer(), database)
    session = core.new_conversation()
    run(core, session, "first")
    before = (session.comparison_id, session.turn, [list(p.history) for p in session.panes])
    broken = core.database
    core.database = None  # the next write fails
    with pytest.raises(PlaygroundError, match="could not be stored, so nothing was sent"):
        next(core.ask(session, "second"))
    assert (session.comparison_id, session.turn, [list(p.history) for p in session.panes]) == before
    core.database = broken
    run(core, session, "second")
    with database.session() as db:
        assert get_comparison(db, session.comparison_id).turn == 1


def test_stop_pressed_while_the_comparison_is_stored_is_kept(database):
    core = Playground(lineup(2), words_streamer(delay=0.05), database)
    session = core.new_conversation()
    original = core.database.session

    def session_then_stop():
        core.stop(session)  # the person presses Stop while the comparison row is written
        return original()

    core.database.session = session_then_stop
    try:
        stream = core.ask(session, "one two three four")
        next(stream)
    finally:
        core.database.session = original
    for _ in stream:
        pass
    assert {p.status for p in session.panes} == {"stopped"}


def test_snapshots_come_less_often_the_more_comparisons_stream():
    assert snapshot_interval(0.05, 0) == snapshot_interval(0.05, 1) == 0.05
    assert snapshot_interval(0.05, 12) == pytest.approx(0.6)


def test_the_streaming_count_follows_runs_and_returns_to_zero(database):
    core = Playground(lineup(2), words_streamer(delay=0.01), database)
    seen = []
    for _ in core.ask(core.new_conversation(), "hello"):
        seen.append(core.streaming)
    assert set(seen) == {1} and core.streaming == 0
    run = core.ask(core.new_conversation(), "hello again")
    next(run)
    run.close()  # the page went away mid-stream
    assert core.streaming == 0


def test_a_nul_answer_and_a_lone_surrogate_prompt_are_stored_on_every_backend(any_db):
    """A model can emit NUL (Llama's <0x00> byte token) and a visitor can send a lone surrogate: the
    comparison and every answer are stored, with U+FFFD in their place, on SQLite and PostgreSQL."""

    def nul_streamer(contender, messages, params, *, stop, seed):
        yield PromptReady(text=messages[-1]["content"], tokens=3)
        yield "a\x00b"
        yield GenerationResult("a\x00b", "stop", 3, 2, 0.01, 0.02, seed)

    core = Playground(lineup(2), nul_streamer, any_db, rng=random.Random(0))
    session = core.new_conversation()
    run(core, session, "half a pair \ud83d here", "system \x00 too")
    assert [p.status for p in session.panes] == ["done", "done"]
    with any_db.session() as db:
        stored = get_comparison(db, session.comparison_id)
        assert (stored.prompt, stored.system_prompt) == ("half a pair \ufffd here", "system \ufffd too")
        assert [r.text for r in responses_of(db, session.comparison_id)] == ["a\ufffdb", "a\ufffdb"]


def test_left_out_exchanges_are_shown_and_stored_as_sent(database):
    def trimming_streamer(contender, messages, params, *, stop, seed):
        dropped = 1 if len(messages) > 2 else 0  # a model with room for one exchange less
        yield PromptReady(text="PROMPT", tokens=3, dropped_exchanges=dropped)
        yield GenerationResult(f"answer to {messages[-1]['content']}", "stop", 3, 2, 0.01, 0.02, seed)

    core = Playground(lineup(2), trimming_streamer, database, rng=random.Random(0))
    session = core.new_conversation()
    run(core, session, "first", "Be brief.")
    run(core, session, "second", "Be brief.")
    assert all("the 1 oldest exchange was left out to fit the model's context" in pane_stats(p) for p in session.panes)
    with database.session() as db:
        stored = responses_of(db, session.comparison_id)
    assert [m["content"] for m in stored[0].messages] == ["Be brief.", "second"]


def test_a_conversation_has_at_most_max_turns(database, monkeypatch):
    import playground.comparison as comparison

    monkeypatch.setattr(comparison, "MAX_TURNS", 3)
    core = Playground(lineup(2), words_streamer(), database, rng=random.Random(0))
    session = core.new_conversation()
    for n in range(3):
        run(core, session, f"turn {n}")
    with pytest.raises(
        PlaygroundError,
        match="this conversation has 3 turns, the most one may have is 3: press Clear to start a new one",
    ):
        run(core, session, "one too many")


def test_a_huge_system_prompt_is_refused_with_the_numbers_and_nothing_is_stored(database):
    core = Playground(lineup(2), words_streamer(), database, rng=random.Random(0))
    session = core.new_conversation()
    with pytest.raises(PlaygroundError, match="the system prompt is 100000 characters; the limit is 8000"):
        run(core, session, "hello", "x" * 100_000)
    with pytest.raises(PlaygroundError, match="the prompt is 8001 characters; the limit is 8000"):
        run(core, session, "y" * 8001)
    with database.session() as db:
        assert count_rows(db)["comparisons"] == 0
    run(core, session, "hello", "Be brief.")  # the conversation is not stuck
    assert all(p.status == "done" for p in session.panes)
