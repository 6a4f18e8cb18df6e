"""The store, exports and concurrent votes on SQLite and on a real PostgreSQL server (marked postgres)."""

from __future__ import annotations

import threading
from datetime import timezone

import pytest
from sqlalchemy import event

from feedback_db import (
    ComparisonRecord,
    Database,
    ExportOptions,
    RatingRecord,
    RatingRefused,
    add_comparison,
    add_rating,
    count_rows,
    get_comparison,
    iter_rows,
    leaderboard_of,
    open_database,
    rating_of,
)
from tests.databases import rate, seed_golden, store_comparison
from tests.test_export import expected_dpo


def test_every_kind_of_rating_round_trips_with_rater_and_sampling(any_db: Database) -> None:
    record = ComparisonRecord(
        lineup="demo",
        session_id="s",
        prompt="Hi",
        n_responses=3,
        mode="arena",
        sampling={"sampler": "uniform", "candidates": ["x", "y", "z"], "weights": [1, 1, 0.5]},
    )
    with any_db.session() as session:
        add_comparison(session, record)
    store_comparison(any_db, ["x", "y", "z"], comparison_id="e" * 32)
    ranked = rate(
        any_db, "e" * 32, "ranking", ranks={0: 2, 1: 1, 2: 2}, unsafe={2: "dosage"}, rater=" ann ", blind=True
    )
    scored_id = store_comparison(any_db, ["x", "y"])
    rate(any_db, scored_id, "scores", scores={0: 5, 1: 1}, rater="session-9f")
    with any_db.session() as session:
        assert get_comparison(session, record.id).sampling == dict(record.sampling)
        rating = rating_of(session, "e" * 32)
        assert (rating.id, rating.kind, rating.rater, rating.blind, rating.choice) == (
            ranked,
            "ranking",
            "ann",
            True,
            None,
        )
        assert rating.created_at.tzinfo == timezone.utc
        judged = sorted((j.response.contender, j.rank, j.score, j.unsafe, j.unsafe_reason) for j in rating.judgements)
        assert judged == [("x", 2, None, False, None), ("y", 1, None, False, None), ("z", 2, None, True, "dosage")]
        assert rating_of(session, scored_id).rater == "session-9f"


@pytest.mark.parametrize(
    ("ranks", "errored", "message"),
    [
        ({0: 1}, (), r"give a rank to every answer \(1 for the best\); positions \[1\] have none"),
        ({0: 1, 1: 3}, (), r"ranks \{1: 3\} are out of range: with 2 answers, ranks go from 1 to 2"),
        ({0: 1, 5: 2}, (), r"ranks names positions \[5\]"),
    ],
)
def test_rankings_that_do_not_fit_are_refused(any_db: Database, ranks: dict, errored: tuple, message: str) -> None:
    comparison_id = store_comparison(any_db, ["x", "y"], errored=errored)
    with pytest.raises(RatingRefused, match=message):
        rate(any_db, comparison_id, "ranking", ranks=ranks)


def test_a_ranking_may_leave_out_a_failed_answer(any_db: Database) -> None:
    comparison_id = store_comparison(any_db, ["x", "y", "z"], errored=["z"])
    rate(any_db, comparison_id, "ranking", ranks={0: 2, 1: 1})
    with any_db.session() as session:
        assert {j.response.contender: j.rank for j in rating_of(session, comparison_id).judgements} == {
            "x": 2,
            "y": 1,
            "z": None,
        }


def test_eight_threads_writing_ratings_at_once_lose_none(any_db: Database) -> None:
    threads, per_thread = 8, 15
    ids = [store_comparison(any_db, ["x", "y", "z"]) for _ in range(threads * per_thread)]
    kinds = [("scores", {"scores": {0: 1, 1: 2, 2: 3}}), ("ranking", {"ranks": {0: 3, 1: 1, 2: 2}})]
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def vote(mine: list[str]) -> None:
        start.wait()
        try:
            for n, comparison_id in enumerate(mine):
                kind, fields = kinds[n % 2]
                rate(any_db, comparison_id, kind, rater=threading.current_thread().name, **fields)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    workers = [threading.Thread(target=vote, args=(ids[i::threads],), name=f"rater-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with any_db.session() as session:
        counts = count_rows(session)
        assert (counts["ratings"], counts["answer_judgements"]) == (threads * per_thread, 3 * threads * per_thread)
        assert all(rating_of(session, comparison_id) is not None for comparison_id in ids)


def test_two_votes_racing_on_one_comparison_store_exactly_one(any_db: Database) -> None:
    for _ in range(5):
        comparison_id = store_comparison(any_db, ["x", "y"])
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def vote(choice: str) -> None:
            start.wait()
            try:
                rate(any_db, comparison_id, choice=choice)
                outcomes.append("stored")
            except RatingRefused as e:
                outcomes.append(f"refused: {e}")

        workers = [threading.Thread(target=vote, args=(choice,)) for choice in ("a", "b")]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(outcomes) == [
            "refused: this comparison was already rated; ask a new question to vote again",
            "stored",
        ]
    with any_db.session() as session:
        assert (count_rows(session)["ratings"], count_rows(session)["answer_judgements"]) == (5, 10)


def test_golden_export_and_leaderboard_are_the_same_on_each_backend(any_db: Database) -> None:
    ids = seed_golden(any_db)
    with any_db.snapshot() as session:
        assert list(iter_rows(session, ExportOptions("dpo"))) == expected_dpo(ids)
        board = leaderboard_of(session, rounds=20)
    # The golden rating of a comparison with a failed answer is set aside ("errored") by the default rules.
    assert [(r.contender, r.battles, r.wins) for r in board.rows] == [("x", 8, 4), ("z", 4, 2), ("y", 8, 1)]
    assert board.set_aside.reasons == {"errored": 1}


def test_a_long_export_does_not_block_votes(any_db: Database) -> None:
    seed_golden(any_db)
    late = store_comparison(any_db, ["x", "y"])
    with any_db.snapshot() as session:
        rows = iter_rows(session, ExportOptions("dpo"))
        next(rows)  # the export is reading, mid-stream
        # Another transaction votes meanwhile, and is done while the export still reads: had the reader
        # held a lock, the vote would have failed with "database is locked" after the busy timeout.
        outcome: list[str] = []
        voter = threading.Thread(target=lambda: outcome.append(_outcome(lambda: rate(any_db, late, choice="a"))))
        voter.start()
        voter.join(timeout=120)
        assert outcome == ["stored"]
        assert len(list(rows)) == 6  # the export's snapshot does not see the new vote
    with any_db.session() as session:
        assert rating_of(session, late) is not None


@pytest.mark.postgres
def test_postgres_vote_that_loses_the_race_after_its_checks_is_refused(postgres_url: str) -> None:
    # READ COMMITTED: both votes pass add_rating's checks; the unique comparison_id must then refuse one,
    # and only its savepoint is rolled back. The rival commits between the checks and the insert.
    database = open_database(postgres_url)
    comparison_id = store_comparison(database, ["x", "y"])
    rival: list[str] = []
    with database.session() as session:

        @event.listens_for(session, "before_flush")
        def rival_votes_first(*_: object) -> None:
            if not rival:
                rival.append(rate(database, comparison_id, choice="b"))

        with pytest.raises(RatingRefused, match="this comparison was already rated"):
            add_rating(session, RatingRecord(comparison_id, "pairwise", choice="a"))
        assert session.is_active
    with database.session() as session:
        rating = rating_of(session, comparison_id)
        assert (rating.id, rating.choice, count_rows(session)["ratings"]) == (rival[0], "b", 1)
    database.dispose()


UNSTORABLE = "nul \x00 here, lone \ud800 surrogate, then \udfff"


def test_nul_and_lone_surrogates_are_stored_alike_on_every_backend(any_db: Database) -> None:
    """PostgreSQL refuses NUL in text and JSON, UTF-8 cannot encode a lone surrogate: both are stored as
    U+FFFD, the same on SQLite and PostgreSQL, and nothing a visitor or a model produced is lost."""
    from feedback_db import ResponseRecord, add_response, responses_of, storable

    expected = "nul \ufffd here, lone \ufffd surrogate, then \ufffd"
    assert storable(UNSTORABLE) == expected and storable("ok 😀") == "ok 😀"  # a real pair stays
    comparison = ComparisonRecord(
        lineup="l", session_id="s", prompt=UNSTORABLE, system_prompt=UNSTORABLE, n_responses=2
    )
    with any_db.session() as session:
        add_comparison(session, comparison)
        for position in range(2):
            failed = position == 1
            add_response(
                session,
                ResponseRecord(
                    comparison_id=comparison.id,
                    position=position,
                    contender=f"c{position}",
                    weights_id="m",
                    messages=[{"role": "system", "content": UNSTORABLE}, {"role": "user", "content": UNSTORABLE}],
                    prompt_rendered=UNSTORABLE,
                    params={"stop": [UNSTORABLE]},
                    text=UNSTORABLE,
                    finish_reason="error" if failed else "stop",
                    error=UNSTORABLE if failed else None,
                    prompt_tokens=1,
                    completion_tokens=1,
                    duration_s=0.1,
                    usage={"note": UNSTORABLE},
                ),
            )
    add_rating_with_comment = RatingRecord(
        comparison_id=comparison.id, kind="pairwise", choice="a", comment=UNSTORABLE, unsafe={1: UNSTORABLE}
    )
    with any_db.session() as session:
        add_rating(session, add_rating_with_comment)
    with any_db.session() as session:
        stored = get_comparison(session, comparison.id)
        assert (stored.prompt, stored.system_prompt) == (expected, expected)
        answers = responses_of(session, comparison.id)
        assert [a.text for a in answers] == [expected, expected] and answers[1].error == expected
        assert answers[0].messages == [{"role": "system", "content": expected}, {"role": "user", "content": expected}]
        assert answers[0].prompt_rendered == expected and answers[0].params == {"stop": [expected]}
        assert answers[0].usage == {"note": expected}
        rating = rating_of(session, comparison.id)
        assert rating.comment == expected.strip()
        assert sorted((j.unsafe, j.unsafe_reason) for j in rating.judgements) == [(False, None), (True, expected)]


def _outcome(write) -> str:
    try:
        write()
    except Exception as error:  # noqa: BLE001 - the test reports whatever failed
        return f"failed: {error}"
    return "stored"
