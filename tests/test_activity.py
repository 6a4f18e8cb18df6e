"""feedback_db.activity on known rows, on SQLite and PostgreSQL: comparisons per hour, ratings per day,
time to first token percentiles, the share of verdicts for the answer shown first, and rating counts."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from feedback_db import Comparison, Database, Rating, Response
from feedback_db.activity import DayLatency, DayRatings, DayShare, activity_of, rating_counts
from tests.databases import rate, store_comparison

NOW = datetime(2026, 12, 10, 15, 30, tzinfo=timezone.utc)


def stored(db: Database, ago: timedelta, ttft: dict[str, float | None], errored: tuple[str, ...] = ()) -> str:
    """A comparison of x and y (x at position 0) made `ago` before NOW, its answers' times to first token."""
    comparison_id = store_comparison(db, ["x", "y"], errored=errored)
    with db.session() as session:
        session.execute(update(Comparison).where(Comparison.id == comparison_id).values(created_at=NOW - ago))
        for contender, seconds in ttft.items():
            session.execute(
                update(Response)
                .where(Response.comparison_id == comparison_id, Response.contender == contender)
                .values(created_at=NOW - ago, time_to_first_token_s=seconds)
            )
    return comparison_id


def rated(db: Database, comparison_id: str, ago: timedelta, shown: list[int] | None = None, **fields) -> None:
    rating_id = rate(db, comparison_id, **fields)
    with db.session() as session:
        session.execute(update(Rating).where(Rating.id == rating_id).values(created_at=NOW - ago, shown_order=shown))


@pytest.fixture
def seeded(any_db: Database) -> Database:
    minutes, days = (lambda n: timedelta(minutes=n)), (lambda n: timedelta(days=n))
    # Today: five comparisons, x's first token after 0.1-1.0 s, y's after 2 s (one y answer has none).
    today = [stored(any_db, minutes(10 + i), {"x": s, "y": 2.0}) for i, s in enumerate([0.1, 0.2, 0.3, 0.4, 1.0])]
    any_db_none = stored(any_db, minutes(75), {"x": 0.5, "y": None})
    rated(any_db, today[0], minutes(5), choice="a", strength="better")  # A, as stored
    rated(any_db, today[1], minutes(5), shown=[1, 0], choice="a", strength="better")  # stored A shown right: B
    rated(any_db, today[2], minutes(5), shown=[1, 0], choice="b", strength="better")  # stored B shown left: A
    rated(any_db, today[3], minutes(5), choice="tie")  # no definite choice
    rated(any_db, any_db_none, minutes(70), kind="scores", scores={0: 4, 1: 2})  # not a verdict
    # Three days ago, and 40 days ago (outside every window).
    three = stored(any_db, days(3), {"x": 3.0, "y": 4.0})
    rated(any_db, three, days(3), choice="b", strength="better")
    failed = stored(any_db, days(3) + minutes(1), {"x": 0.2}, errored=("y",))
    rated(any_db, failed, days(3), choice="a", strength="better")  # set aside: an answer failed
    old = stored(any_db, days(40), {"x": 9.0, "y": 9.0})
    rated(any_db, old, days(40), choice="a", strength="better")
    return any_db


def test_activity_buckets_and_percentiles(seeded: Database):
    with seeded.snapshot() as session:
        seen = activity_of(session, NOW)
    hours = seen.comparisons_per_hour
    assert len(hours) == 48 and hours[-1].hour == datetime(2026, 12, 10, 15, tzinfo=timezone.utc)
    assert hours[0].hour == datetime(2026, 12, 8, 16, tzinfo=timezone.utc)
    # 15:20, 15:19, ... 15:16 are this hour; 14:15 the one before; three days ago is outside 48 hours
    assert [h.comparisons for h in hours[-2:]] == [1, 5] and sum(h.comparisons for h in hours) == 6

    days = seen.ratings_per_day
    assert len(days) == 30 and days[-1] == DayRatings(date(2026, 12, 10), 5, 0)
    assert days[-4] == DayRatings(date(2026, 12, 7), 1, 1)
    assert sum(d.counted + d.set_aside for d in days) == 7  # the one 40 days ago is outside

    today, three_days = date(2026, 12, 10), date(2026, 12, 7)
    assert seen.first_token == [
        DayLatency(three_days, "x", pytest.approx(1.6), pytest.approx(2.86), 2),  # 0.2 and 3.0
        DayLatency(three_days, "y", 4.0, 4.0, 1),  # the failed answer has no first token
        # 0.1 0.2 0.3 0.4 0.5 1.0: the median between 0.3 and 0.4, the 95th between 0.5 and 1.0
        DayLatency(today, "x", pytest.approx(0.35), pytest.approx(0.875), 6),
        DayLatency(today, "y", 2.0, 2.0, 5),
    ]
    assert seen.first_choice == [DayShare(three_days, 0, 1), DayShare(today, 2, 3)]
    assert seen.first_choice[-1].share == pytest.approx(2 / 3)
    assert not seen.empty


def test_rating_counts_group_the_reasons(seeded: Database):
    with seeded.snapshot() as session:
        counts = rating_counts(session)
    assert (counts.stored, counts.set_aside) == (8, 1)
    assert counts.reasons == {"identity_leak": 0, "errored": 1, "too_fast": 0, "gold": 0, "revoked": 0}


def test_an_empty_database_has_no_activity(any_db: Database):
    with any_db.snapshot() as session:
        seen = activity_of(session, NOW)
        counts = rating_counts(session)
    assert seen.empty and not seen.first_token and not seen.first_choice
    assert (counts.stored, counts.set_aside) == (0, 0)


def test_the_admin_tab_shows_a_sentence_where_a_plot_has_nothing(any_db: Database):
    from playground.ui_activity import shown

    with any_db.snapshot() as session:
        outputs = shown(activity_of(session, NOW))
    summary, *plots = outputs
    assert summary.startswith("**0** comparisons in the last 48 hours; **0** ratings in the last 30 days.")
    updates, sentences = plots[0::2], plots[1::2]
    assert all(u["visible"] is False and "value" not in u for u in updates)
    assert sentences == [
        "No comparisons in the last 48 hours.",
        "No ratings in the last 30 days.",
        "No answers with a first token in the last 30 days.",
        "No A or B verdicts in the last 30 days.",
    ]


def test_the_admin_tab_plots_what_was_seeded(seeded: Database):
    from playground.ui_activity import shown

    with seeded.snapshot() as session:
        summary, *plots = shown(activity_of(session, NOW))
    assert summary.startswith("**6** comparisons in the last 48 hours; **7** ratings in the last 30 days, 1 of them")
    hourly, daily, latency, share = (plots[i]["value"] for i in (0, 2, 4, 6))
    assert plots[1::2] == ["", "", "", ""]
    assert len(hourly) == 48 and hourly["comparisons"].sum() == 6
    assert len(daily) == 60 and daily.groupby("ratings that")["ratings"].sum().to_dict() == {
        "counted": 6,
        "set aside": 1,
    }
    assert sorted(latency["contender"].unique()) == ["x p50", "x p95", "y p50", "y p95"]
    assert plots[4]["color_map"]["x p50"] != plots[4]["color_map"]["x p95"]
    assert share[share["verdicts"] == "chose A"]["share"].tolist() == [0.0, pytest.approx(2 / 3)]
