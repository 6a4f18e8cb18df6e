"""Arena mode: sampled groups, hidden names, reveal after the vote, blind only before it."""

from __future__ import annotations

import collections
import random

import pytest

from feedback_db import get_comparison, rating_of
from playground.arena import ArenaSampler, parse_avoid, parse_weights
from playground.comparison import Playground
from playground.view import pane_label
from playground.voting import Vote
from tests.fakes import lineup, run, words_streamer


def names(group):
    return frozenset(c.name for c in group)


def test_weights_and_avoided_pairs_shape_the_draws():
    contenders = lineup(4).contenders
    sampler = ArenaSampler(weights={"c0": 3.0, "c3": 0.0}, avoid=frozenset({frozenset({"c0", "c1"})}))
    rng = random.Random(0)
    counts = collections.Counter(names(sampler.sample(contenders, rng)) for _ in range(3000))
    assert set(counts) == {frozenset({"c0", "c2"}), frozenset({"c1", "c2"})}  # c3 weight 0, c0:c1 avoided
    # Weight of a pair is the product of its members' weights: 3 : 1.
    assert counts[frozenset({"c0", "c2"})] / counts[frozenset({"c1", "c2"})] == pytest.approx(3.0, rel=0.15)


def test_positions_within_a_group_are_shuffled():
    contenders = lineup(2).contenders
    sampler, rng = ArenaSampler(), random.Random(1)
    firsts = collections.Counter(sampler.sample(contenders, rng)[0].name for _ in range(400))
    assert 150 < firsts["c0"] < 250


def test_bad_arena_settings_are_explained():
    contenders = lineup(3).contenders
    with pytest.raises(ValueError, match="unknown contenders: nobody"):
        ArenaSampler(weights={"nobody": 1}).groups(contenders)
    with pytest.raises(ValueError, match="no group of 2"):
        ArenaSampler(avoid=parse_avoid("c0:c1,c0:c2,c1:c2")).groups(contenders)
    with pytest.raises(ValueError, match="NAME=2.0"):
        parse_weights("c0=lots")
    with pytest.raises(ValueError, match="NAME:OTHER"):
        parse_avoid("c0-c1")
    assert parse_weights("c0=2, c1=0.5") == {"c0": 2.0, "c1": 0.5}


def test_arena_hides_names_until_the_vote_then_marks_later_votes_not_blind(database):
    core = Playground(lineup(4), words_streamer(), database, mode="arena", rng=random.Random(3))
    session = core.new_conversation()
    assert len(session.panes) == 2 and core.pane_count == 2
    run(core, session, "first")
    assert [pane_label(p, session) for p in session.panes] == ["Model A", "Model B"]
    message = core.rate(session, Vote(choice="a", strength="better"))
    assert f"A was {session.panes[0].contender.name}" in message
    assert pane_label(session.panes[0], session) == f"A: {session.panes[0].contender.name}"
    first = session.comparison_id
    run(core, session, "second")
    core.rate(session, Vote(choice="tie"))
    with database.session() as db:
        assert get_comparison(db, first).sampling == {"size": 2, "weights": {}, "avoid": []}
        assert rating_of(db, first).blind is True
        assert rating_of(db, session.comparison_id).blind is False
    assert core.clear(session).blind  # a new conversation draws a new, hidden group


def test_named_mode_refuses_more_panes_than_fit():
    with pytest.raises(ValueError, match="at most 4 side by side"):
        Playground(lineup(5), words_streamer(), None)


def test_an_arena_larger_than_the_page_is_refused(database):
    with pytest.raises(ValueError, match="at most 4 answers"):
        Playground(lineup(6), words_streamer(), database, mode="arena", sampler=ArenaSampler(size=5))
