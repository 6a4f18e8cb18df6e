"""Ratings people can trust, through the plain core: one run per conversation, forms that never carry
over, per-pane Stop, shared histories that train, rankings, and the conversation store."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from feedback_db import count_rows, get_comparison, rating_of, responses_of
from playground.comparison import Playground
from playground.conversations import ConversationStore
from playground.errors import PlaygroundError
from playground.view import vote_hint
from playground.voting import FormError, RatingForm, Vote, preferred_position, vote_from_form
from tests.conftest import REPO
from tests.fakes import lineup, run, words_streamer
from tests.waiting import until


def test_many_requests_on_one_conversation_start_exactly_one_run(database):
    core = Playground(lineup(2), words_streamer(delay=0.01), database)
    conversation = core.new_conversation()
    start, outcomes = threading.Barrier(50), []

    def send() -> None:
        start.wait()
        try:
            for _ in core.ask(conversation, "one two three", form_token=""):
                pass
            outcomes.append("ran")
        except PlaygroundError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=send) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ran") == 1
    assert all("still streaming" in o or "page is behind" in o for o in outcomes if o != "ran")
    with database.session() as db:
        assert count_rows(db)["comparisons"] == 1 and count_rows(db)["responses"] == 2


def test_requests_without_a_token_still_run_one_at_a_time(database):
    core = Playground(lineup(2), words_streamer(delay=0.005), database)
    conversation = core.new_conversation()
    start, ran = threading.Barrier(12), []

    def send(n: int) -> None:
        start.wait()
        try:
            for _ in core.ask(conversation, f"question {n}"):
                pass
            ran.append(n)
        except PlaygroundError:
            pass

    threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(3):  # and later turns, one after the other, each continuing the one before
        for _ in core.ask(conversation, "next"):
            pass
    with database.session() as db:
        chain, current = [], get_comparison(db, conversation.comparison_id)
        while current is not None:
            chain.append(current)
            answers = responses_of(db, current.id)
            # Each answer's history is the previous turn's prompt and that pane's own answer.
            parent = get_comparison(db, current.parent_id) if current.parent_id else None
            if parent is not None:
                before = {r.contender: r for r in responses_of(db, parent.id)}
                for answer in answers:
                    previous = before[answer.contender]
                    assert answer.messages[:-1] == previous.messages + [{"role": "assistant", "content": previous.text}]
            current = parent
        assert [c.turn for c in reversed(chain)] == list(range(len(chain)))
        assert count_rows(db)["comparisons"] == len(chain) == len(ran) + 3


def test_a_rating_form_from_an_earlier_comparison_is_refused(database):
    core = Playground(lineup(2), words_streamer(), database)
    conversation = core.new_conversation()
    run(core, conversation, "first")
    first_token = conversation.form_token
    core.rate(conversation, Vote(choice="a", strength="better", unsafe={1: "rude"}, comment="turn one"), first_token)
    for _ in core.regenerate(conversation, form_token=first_token):
        pass
    assert conversation.form_token != first_token
    with pytest.raises(PlaygroundError, match="filled in for earlier answers"):
        core.rate(conversation, Vote(choice="a", unsafe={1: "rude"}, comment="turn one"), first_token)
    with pytest.raises(PlaygroundError, match="page is behind"):
        next(core.ask(conversation, "from an old tab", form_token=first_token))
    core.rate(conversation, Vote(choice="b"), conversation.form_token)
    with database.session() as db:
        rating = rating_of(db, conversation.comparison_id)
        assert (rating.choice, rating.comment) == ("b", None)
        assert not any(j.unsafe for j in rating.judgements)  # nothing carried over from turn one


def test_one_panes_stop_ends_only_that_answer_and_opens_the_vote(database):
    def streamer(contender, messages, params, *, stop, seed):
        slow = contender.name == "c1"
        yield from words_streamer(delay=0.2 if slow else 0.0)(contender, messages, params, stop=stop, seed=seed)

    core = Playground(lineup(2), streamer, database)
    conversation = core.new_conversation()
    snapshots = core.ask(conversation, "one two three four five six seven eight nine ten", form_token="")
    slow = next(p for p in conversation.panes if p.contender.name == "c1")
    fast = conversation.panes[1 - slow.position]
    for _ in snapshots:
        if fast.finished and slow.text:
            break
    hint = vote_hint(conversation)
    assert f"Press Stop under {'AB'[slow.position]} to vote now" in hint
    core.stop(conversation, slow.position)
    for _ in snapshots:
        pass
    assert (fast.status, slow.status) == ("done", "stopped") and vote_hint(conversation) == ""
    assert conversation.can_rate
    core.rate(conversation, Vote(choice="tie"), conversation.form_token)
    with database.session() as db:
        reasons = {r.contender: (r.finish_reason, r.text) for r in responses_of(db, conversation.comparison_id)}
    assert reasons["c0"][0] == "stop" and reasons["c1"][0] == "stopped"
    assert reasons["c1"][1] == slow.text and len(slow.text) < len(fast.text)
    with pytest.raises(PlaygroundError, match="no answer 5"):
        core.stop(conversation, 5)


def test_shared_history_continues_every_pane_from_the_preferred_answer(database):
    calls = []
    core = Playground(lineup(2), words_streamer(calls), database, history="shared")
    conversation = core.new_conversation()
    run(core, conversation, "first")
    with pytest.raises(PlaygroundError, match="vote first, or pick the answer"):
        next(core.ask(conversation, "second"))
    winner = conversation.panes[1]
    core.rate(conversation, Vote(choice="b"), conversation.form_token)
    first_id, continued, chosen = conversation.comparison_id, winner.response_id, winner.text
    calls.clear()
    run(core, conversation, "second")
    expected = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": chosen},
        {"role": "user", "content": "second"},
    ]
    assert [messages for _, messages, _, _ in calls] == [expected, expected]
    assert all(p.history == expected[:2] for p in conversation.panes)
    # A tie continues from the first answer unless the person picks another.
    core.rate(conversation, Vote(choice="tie"), conversation.form_token)
    assert conversation.continue_from == 0
    core.continue_with(conversation, 1, conversation.form_token)
    picked = conversation.panes[1].response_id
    run(core, conversation, "third")
    with database.session() as db:
        second = get_comparison(db, conversation.parent_id)
        third = get_comparison(db, conversation.comparison_id)
        assert (second.history, second.continued_from, second.parent_id) == ("shared", continued, first_id)
        assert third.continued_from == picked
        assert get_comparison(db, first_id).history == "own"  # turn 0 has no history to share
        answers = responses_of(db, third.id)
        assert answers[0].messages == answers[1].messages


def test_arena_shares_history_by_default_and_named_keeps_its_own(database):
    assert Playground(lineup(2), words_streamer(), database, mode="arena").new_conversation().history_mode == "shared"
    assert Playground(lineup(2), words_streamer(), database).new_conversation().history_mode == "own"


def test_three_answers_can_be_ranked_with_ties(database):
    core = Playground(lineup(3), words_streamer(), database, history="shared")
    conversation = core.new_conversation()
    run(core, conversation, "hi")
    with pytest.raises(PlaygroundError, match="score or a rank"):
        core.rate(conversation, Vote(choice="a"), conversation.form_token)
    vote = vote_from_form(3, RatingForm(method="ranking", ranks=[2, 1, 2], unsafe=[False, False, True]))
    assert "continues from answer B" in core.rate(conversation, vote, conversation.form_token)
    with database.session() as db:
        rating = rating_of(db, conversation.comparison_id)
        assert rating.kind == "ranking"
        assert {j.response.position: (j.rank, j.unsafe) for j in rating.judgements} == {
            0: (2, False),
            1: (1, False),
            2: (2, True),
        }


def test_form_rules():
    assert vote_from_form(2, RatingForm(choice="tie", strength="better")) == Vote(choice="tie")  # no strength
    assert vote_from_form(2, RatingForm(choice="a")) == Vote(choice="a")  # a quick vote
    assert vote_from_form(
        2,
        RatingForm(choice="b", strength="slightly_better", unsafe=[True, False], reasons=[" rude ", "x"], comment="  "),
    ) == Vote(choice="b", strength="slightly_better", unsafe={0: "rude"})
    assert vote_from_form(3, RatingForm(scores=[5, "3", None], method="scores")).scores == {0: 5, 1: 3}
    for n, form, message in (
        (2, RatingForm(), "pick a verdict"),
        (2, RatingForm(choice="A is better"), "not one of"),
        (2, RatingForm(choice="a", strength=True), "not one of"),
        (3, RatingForm(scores=[6, 1, 1]), "must be one of 1, 2, 3, 4, 5"),
        (3, RatingForm(scores=[True, 1, 1]), "must be one of"),
        (3, RatingForm(method="ranking", ranks=[None, None, None]), "give each answer a rank"),
        (3, RatingForm(method="ranking", ranks=[1, 4, 2]), "must be one of 1, 2, 3"),
        (3, RatingForm(method="elo"), "not one of"),
        (2, RatingForm(choice="a", comment=["x"]), "must be text"),
    ):
        with pytest.raises(FormError, match=message):
            vote_from_form(n, form)
    assert preferred_position(Vote(choice="b"), 2) == 1
    assert preferred_position(Vote(choice="both_bad"), 2) == 0
    assert preferred_position(Vote(choice="a"), 2, failed={0}) == 1
    assert preferred_position(Vote(scores={0: 3, 1: 5, 2: 5}), 3) == 1
    assert preferred_position(Vote(ranks={0: 2, 1: 2, 2: 1}), 3) == 2


def test_store_keeps_one_conversation_per_page_and_forgets_idle_ones(database):
    core = Playground(lineup(2), words_streamer(), database)
    now = [0.0]
    store = ConversationStore(core.new_conversation, ttl_s=60, clock=lambda: now[0])
    first = store.get("page-1")
    assert store.get("page-1") is first and store.get("page-2") is not first
    run(core, first, "hi")
    now[0] = 61
    kept = store.get("page-2")  # touched now; page-1 idled past its time to live
    assert len(store) == 1 and store.get("page-2") is kept
    assert store.get("page-1") is not first  # a fresh one
    store.drop("page-1")
    assert len(store) == 1
    with pytest.raises(PlaygroundError, match="no session"):
        store.get(None)


def test_busy_conversations_are_not_evicted_and_unload_stops_their_streams(database):
    core = Playground(lineup(2), words_streamer(delay=0.05), database)
    now = [0.0]
    store = ConversationStore(core.new_conversation, ttl_s=1, clock=lambda: now[0])
    conversation = store.get("page")
    snapshots = core.ask(conversation, "one two three four five six seven eight")
    next(snapshots)
    now[0] = 5
    store.get("other")
    assert store.get("page") is conversation
    store.drop("page")
    for _ in snapshots:
        pass
    until(lambda: not conversation.busy, 5, every_s=0.01, what="the dropped page's streams to stop")
    assert {p.status for p in conversation.panes} == {"stopped"}


def test_the_core_loads_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "import playground.comparison, playground.conversations, playground.voting, playground.view\n"
        "import tests.test_comparison\nprint('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
