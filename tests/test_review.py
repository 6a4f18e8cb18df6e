"""Second opinions in the core: who may review what, the order shown, votes stored by stored position,
the overlap filled first, gold items, terms."""

from __future__ import annotations

import random
import uuid

import pytest

from feedback_db import open_database, sqlite_url
from feedback_db.raters import invite
from feedback_db.review import next_to_review
from feedback_db.schema import Comparison
from feedback_db.store import ratings_of
from playground.comparison import Playground
from playground.conversation import Conversation
from playground.errors import PlaygroundError
from playground.raters import Document, RaterPolicy, Seat
from playground.review import Reviewer
from playground.voting import Vote
from tests.databases import store_comparison
from tests.fakes import lineup, run, words_streamer


def app(database, **policy) -> tuple[Playground, Reviewer]:
    core = Playground(lineup(2), words_streamer(), database, rng=random.Random(1), raters=RaterPolicy(**policy))
    return core, Reviewer(database, core.raters, random.Random(2))


def invited(database, name: str) -> Conversation:
    with database.session() as session:
        rater, _ = invite(session, name)
    page = Conversation(panes=[])
    page.seat = Seat(rater.id, "invited")
    return page


def test_two_invited_raters_and_an_open_one_rate_one_comparison_as_each_saw_it(any_db):
    core, reviewer = app(any_db)
    asker = core.new_conversation()
    run(core, asker, "Which is better?")
    core.rate(asker, Vote(choice="a"))  # the asker's own rating: the first of the overlap
    ann, bob, carol = invited(any_db, "ann"), invited(any_db, "bob"), Conversation(panes=[])
    seen = {}
    for page in (ann, bob, carol):
        item = reviewer.next(page)
        assert item.comparison_id == asker.comparison_id
        seen[page.seat.id] = item.shown_order
        # "A" as shown: the answer at stored position shown_order[0]
        assert "stored" in reviewer.rate(page, Vote(choice="a", strength="better"), item.token)
        assert reviewer.next(page) is None  # nothing else to review
    with any_db.session() as session:
        ratings = ratings_of(session, asker.comparison_id)
        assert session.get(Comparison, asker.comparison_id).n_ratings == 4
    reviews = [r for r in ratings if r.source == "review"]
    assert len(reviews) == 3 and len({r.rater for r in reviews}) == 3
    for review in reviews:
        order = seen[review.rater]
        assert review.shown_order == list(order) and review.choice == "ab"[order[0]] and review.blind
        assert review.seconds_to_vote is not None and review.seconds_to_vote >= 0


def test_a_rater_never_reviews_what_they_asked_or_rated_and_the_overlap_fills_first(tmp_path):
    database = open_database(sqlite_url(tmp_path / "f.sqlite3"))
    old, nearly, mine = (store_comparison(database, ["x", "y"]) for _ in range(3))
    ann = invited(database, "ann")
    with database.session() as session:
        session.get(Comparison, nearly).n_ratings = 2  # one rating short of an overlap of 3
        session.get(Comparison, mine).asked_by = ann.seat.id
    with database.snapshot() as session:
        assert next_to_review(session, ann.seat.id, overlap=3) == nearly
        assert next_to_review(session, "someone else", overlap=3) == nearly
        assert next_to_review(session, ann.seat.id, overlap=2) == old  # nearly has its 2 already
    _, reviewer = app(database)
    assert reviewer.next(ann).comparison_id == nearly
    reviewer.rate(ann, Vote(choice="tie"), ann.review.token)
    assert reviewer.next(ann).comparison_id == old
    reviewer.rate(ann, Vote(choice="b"), ann.review.token)
    assert reviewer.next(ann) is None  # `mine` is ann's own question
    database.dispose()


def test_gold_items_come_at_the_gold_rate_and_look_like_any_other(any_db):
    ordinary = store_comparison(any_db, ["x", "y"])
    gold = store_comparison(any_db, ["good", "bad"])
    with any_db.session() as session:
        session.get(Comparison, gold).gold_position = 1
    _, always = app(any_db, gold_rate=1.0)
    _, never = app(any_db, gold_rate=0.0)
    ann, bob = invited(any_db, "ann"), invited(any_db, "bob")
    assert always.next(ann).comparison_id == gold
    assert never.next(bob).comparison_id == ordinary
    assert always.next(ann).comparison_id == gold  # not rated yet: the same item again


def test_invited_mode_refuses_open_seats_and_terms_come_first(any_db):
    store_comparison(any_db, ["x", "y"])
    _, reviewer = app(any_db, mode="invited")
    with pytest.raises(PlaygroundError, match="rating here needs an invite"):
        reviewer.next(Conversation(panes=[]))
    terms = Document("Be kind.", "a" * 64)
    core, reviewer = app(any_db, terms=terms)
    page = Conversation(panes=[])
    with pytest.raises(PlaygroundError, match="accept the terms above first"):
        reviewer.next(page)
    page.seat = core.raters.accept_terms(page.seat)
    item = reviewer.next(page)
    reviewer.rate(page, Vote(choice="a"), item.token)
    with any_db.session() as session:
        (rating,) = ratings_of(session, item.comparison_id)
        assert rating.terms_version == "a" * 64


def test_a_form_left_from_an_earlier_item_is_refused(any_db):
    store_comparison(any_db, ["x", "y"])
    _, reviewer = app(any_db)
    page = Conversation(panes=[])
    item = reviewer.next(page)
    with pytest.raises(PlaygroundError, match="no longer on your screen"):
        reviewer.rate(page, Vote(choice="a"), "an old token")
    with pytest.raises(PlaygroundError, match="two answers take a verdict"):
        reviewer.rate(page, Vote(scores={0: 1, 1: 2}), item.token)


def test_scores_ranks_and_flags_given_by_screen_position_are_stored_by_stored_position(any_db):
    comparison_id = store_comparison(any_db, ["x", "y", "z"])
    _, reviewer = app(any_db)
    for vote in (
        lambda order: Vote(scores={0: 5, 1: 3, 2: 1}, unsafe={2: "rude"}),
        lambda order: Vote(ranks={0: 1, 1: 2, 2: 2}),
    ):
        page = invited(any_db, f"rater-{uuid.uuid4().hex[:6]}")
        item = reviewer.next(page)
        order = item.shown_order
        reviewer.rate(page, vote(order), item.token)
        with any_db.session() as session:
            rating = next(r for r in ratings_of(session, comparison_id) if r.rater == page.seat.id)
            judged = {j.response.position: (j.score, j.rank, j.unsafe, j.unsafe_reason) for j in rating.judgements}
        if rating.kind == "scores":  # the first on screen got 5, the last 1 and the flag
            assert judged[order[0]][0] == 5 and judged[order[2]][0] == 1 and judged[order[2]][2:] == (True, "rude")
            assert judged[order[1]][2] is False
        else:
            assert judged[order[0]][1] == 1 and judged[order[1]][1] == judged[order[2]][1] == 2
        assert rating.shown_order == list(order)
