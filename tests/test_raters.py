"""Raters in the store: one rating per rater, second opinions that all land, invites, terms, set-aside reasons."""

from __future__ import annotations

import threading

import pytest

from feedback_db import open_database
from feedback_db.migrate import current_revision, downgrade, head_revision
from feedback_db.raters import RaterRefused, accept, accepted, invite, list_raters, redeem, returning, revoke
from feedback_db.records import RatingRecord
from feedback_db.rules import Rules, apply_rules, current_rules, gold_right
from feedback_db.schema import Comparison, Rating
from feedback_db.store import RatingRefused, add_rating, ratings_of
from tests.databases import rate, store_comparison


def raters(database, *names: str) -> list[str]:
    with database.session() as session:
        return [invite(session, name)[0].id for name in names]


def test_two_raters_at_once_both_land_and_one_rater_twice_lands_once(any_db):
    comparison_id = store_comparison(any_db, ["x", "y"])
    ann, bob = raters(any_db, "ann", "bob")
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def vote(rater: str, choice: str) -> None:
        start.wait()
        try:
            rate(any_db, comparison_id, choice=choice, rater=rater)
            outcomes.append(f"{rater}: stored")
        except RatingRefused as refused:
            outcomes.append(f"{rater}: {refused}")

    threads = [threading.Thread(target=vote, args=args) for args in ((ann, "a"), (bob, "b"), (ann, "b"), (bob, "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.split(": ")[1] for o in outcomes).count("stored") == 2, outcomes
    assert all("a comparison takes one rating from each rater" in o for o in outcomes if "stored" not in o)
    with any_db.session() as session:
        stored = ratings_of(session, comparison_id)
        assert sorted(r.rater for r in stored) == sorted([ann, bob])
        assert session.get(Comparison, comparison_id).n_ratings == 2


def test_a_comparison_is_reviewable_once_its_last_answer_is_stored(any_db):
    comparison_id = store_comparison(any_db, ["x", "y"])
    with any_db.session() as session:
        comparison = session.get(Comparison, comparison_id)
        assert comparison.complete_at is not None and comparison.n_ratings == 0


def test_a_downgrade_refuses_while_a_comparison_holds_two_ratings(db_url):
    database = open_database(db_url)
    comparison_id = store_comparison(database, ["x", "y"])
    ann, bob = raters(database, "ann", "bob")
    rate(database, comparison_id, choice="a", rater=ann)
    rate(database, comparison_id, choice="b", rater=bob)
    with pytest.raises(RuntimeError, match="1 comparisons hold more than one rating"):
        downgrade(database.engine, "0005")
    assert current_revision(database.engine) == head_revision()
    with database.session() as session:
        session.delete(next(r for r in ratings_of(session, comparison_id) if r.rater == bob))
    downgrade(database.engine, "0005")
    assert current_revision(database.engine) == "0005"
    database.dispose()


def test_invites_forged_revoked_or_opened_in_another_browser_are_refused(any_db):
    with any_db.session() as session:
        rater, secret = invite(session, "ann")
        with pytest.raises(RaterRefused, match="exists already"):
            invite(session, "ann")
    with any_db.session() as session:
        with pytest.raises(RaterRefused, match="not valid"):
            redeem(session, secret[:-1] + ("x" if secret[-1] != "x" else "y"), None)
        found, key = redeem(session, secret, None)  # the first browser gets a key of its own
        assert found.id == rater.id and key
    with any_db.session() as session:
        assert redeem(session, secret, key) == (session.get(type(found), rater.id), None)  # the same browser again
        assert returning(session, key).id == rater.id  # back without the link
        with pytest.raises(RaterRefused, match="already opened in another browser"):
            redeem(session, secret, "another browser's key")
        with pytest.raises(RaterRefused, match="already opened in another browser"):
            redeem(session, secret, None)
    with any_db.session() as session:
        revoke(session, "ann")
    with any_db.session() as session:
        with pytest.raises(RaterRefused, match="revoked"):
            redeem(session, secret, key)
        assert returning(session, key) is None
        assert [(r.name, r.claimed, r.revoked_at is not None) for r in list_raters(session)] == [("ann", True, True)]
        with pytest.raises(RaterRefused, match="no rater is called 'bob'"):
            revoke(session, "bob")


def test_acceptance_of_a_version_of_the_terms_is_stored_once(any_db):
    (ann,) = raters(any_db, "ann")
    with any_db.session() as session:
        assert not accepted(session, ann, "terms", "a" * 64)
        accept(session, ann, "terms", "a" * 64)
        accept(session, ann, "terms", "a" * 64)
    with any_db.session() as session:
        assert accepted(session, ann, "terms", "a" * 64) and not accepted(session, ann, "terms", "b" * 64)


def reasons(database, rating_id: str) -> list[str]:
    with database.session() as session:
        return list(session.get(Rating, rating_id).set_aside or [])


def test_each_reason_sets_a_rating_aside_and_changed_rules_recompute_them(any_db):
    (ann,) = raters(any_db, "ann")
    leak = store_comparison(any_db, ["llama", "other"], texts={"llama": "As an AI made by Meta, I think so."})
    blind_leak = rate(any_db, leak, choice="a", blind=True, rater=ann)
    named = store_comparison(any_db, ["llama", "other"], texts={"llama": "As an AI made by Meta, I think so."})
    named_leak = rate(any_db, named, choice="a", blind=False, rater=ann)
    failed = rate(any_db, store_comparison(any_db, ["x", "y"], errored=["y"]), choice="a", rater=ann)
    quick = rate(any_db, store_comparison(any_db, ["x", "y"]), choice="a", rater=ann, seconds_to_vote=0.4)
    assert reasons(any_db, failed) == ["errored"] and reasons(any_db, blind_leak) == []  # the defaults
    with any_db.session() as session:
        assert apply_rules(session, Rules(identity_words={"llama": ("Llama", "Meta")}, min_seconds_to_vote=2)) == 4
        assert apply_rules(session, current_rules(session)) == 0  # the same rules: nothing to do
    assert reasons(any_db, blind_leak) == ["identity_leak"]
    assert reasons(any_db, named_leak) == []  # names were shown: nothing leaked
    assert reasons(any_db, quick) == ["too_fast"]
    # A new rating is judged by the stored rules as it is stored.
    assert reasons(any_db, rate(any_db, store_comparison(any_db, ["x", "y"]), choice="b", seconds_to_vote=1)) == [
        "too_fast"
    ]


def test_a_rater_who_fails_gold_items_has_every_rating_set_aside(any_db):
    ann, bob = raters(any_db, "ann", "bob")
    with any_db.session() as session:
        apply_rules(session, Rules(min_gold_accuracy=0.8))
    ordinary = rate(any_db, store_comparison(any_db, ["x", "y"]), choice="a", rater=ann)
    golds = []
    for n in range(5):
        gold = store_comparison(any_db, ["good", "bad"])
        with any_db.session() as session:
            session.get(Comparison, gold).gold_position = 0
        golds.append(gold)
        rate(any_db, gold, choice="a", rater=bob)  # right
        assert reasons(any_db, ordinary) == []  # fewer than 5 gold items: not judged yet
        rate(any_db, gold, choice="b" if n < 2 else "a", rater=ann)  # 3 of 5 right: 0.6 < 0.8
    assert reasons(any_db, ordinary) == ["gold"]
    with any_db.session() as session:
        assert all(r.set_aside == ["gold"] for g in golds for r in ratings_of(session, g) if r.rater == ann)
        assert all(not r.set_aside for g in golds for r in ratings_of(session, g) if r.rater == bob)


def test_gold_is_right_when_the_known_answer_is_chosen_scored_highest_or_ranked_first():
    assert gold_right("pairwise", "b", {}, 1) and not gold_right("pairwise", "tie", {}, 1)
    assert gold_right("scores", None, {0: (2, None), 1: (5, None), 2: (4, None)}, 1)
    assert not gold_right("scores", None, {0: (5, None), 1: (5, None)}, 1)  # a tie is not right
    assert gold_right("ranking", None, {0: (None, 2), 1: (None, 1)}, 1)
    assert not gold_right("ranking", None, {0: (None, 1), 1: (None, 1)}, 1)


def test_a_rating_records_order_shown_timing_and_versions(any_db):
    comparison_id = store_comparison(any_db, ["x", "y", "z"])
    (ann,) = raters(any_db, "ann")
    with any_db.session() as session:
        add_rating(
            session,
            RatingRecord(
                comparison_id,
                "scores",
                scores={0: 1, 1: 5, 2: 3},
                rater=ann,
                source="review",
                shown_order=(2, 0, 1),
                seconds_to_vote=7.5,
                terms_version="a" * 64,
                guidelines_version="b" * 64,
            ),
        )
    with any_db.session() as session:
        (stored,) = ratings_of(session, comparison_id)
        assert (stored.source, stored.shown_order, stored.seconds_to_vote) == ("review", [2, 0, 1], 7.5)
        assert (stored.terms_version, stored.guidelines_version) == ("a" * 64, "b" * 64)
    with pytest.raises(ValueError, match="shown_order must list every position"):
        RatingRecord(comparison_id, "pairwise", choice="a", shown_order=(0, 0))
    with pytest.raises(ValueError, match="terms_version must be a sha256"):
        RatingRecord(comparison_id, "pairwise", choice="a", terms_version="v1")
