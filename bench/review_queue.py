"""The Review tab's "Next" on a large database: from the press to an item on screen.

  .venv/bin/python bench/review_queue.py [--comparisons 100000] [--rated 5000] [--calls 200]

Fills a SQLite file with N stored comparisons of two answers each (ratings spread over them as a
running campaign has them: most with 0-2, some at the overlap of 3 or beyond) and a rater who has
already reviewed `--rated` of those nearest the overlap, the ones the queue would offer first. Then
times, for that rater:
- the queue's query alone (feedback_db.review.next_to_review);
- Reviewer.next, what the handler calls (the query, the answers, the shuffle);
- the page's /review_next through the real server, read to its end as a browser reads it.
The goal is under 100 ms at p95 for the page. Numbers: bench/README.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from feedback_db import open_database, sqlite_url  # noqa: E402
from feedback_db.raters import invite  # noqa: E402
from feedback_db.review import next_to_review  # noqa: E402
from feedback_db.schema import Comparison, Rating, Response  # noqa: E402

BATCH = 5_000


def fill(database, comparisons: int, rated: int, seed: int = 0) -> str:
    """N comparisons with their answers and ratings; returns the reviewing rater's id."""
    rng = random.Random(seed)
    with database.session() as session:
        rater = invite(session, "bench")[0].id
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    # Ratings per comparison as a campaign with an overlap of 3 leaves them: most below it.
    counts = rng.choices([0, 1, 2, 3, 4], weights=[40, 30, 15, 10, 5], k=comparisons)
    nearest = sorted(range(comparisons), key=lambda i: (-min(counts[i], 2), i))[:rated]  # what the queue offers first
    mine = set(nearest)
    for first in range(0, comparisons, BATCH):
        rows, answers, ratings = [], [], []
        for i in range(first, min(first + BATCH, comparisons)):
            cid, when = uuid.uuid4().hex, start + timedelta(seconds=i)
            n_ratings = counts[i] + (i in mine)
            rows.append(
                {
                    "id": cid,
                    "created_at": when,
                    "lineup": "bench",
                    "mode": "arena",
                    "session_id": f"s{i}",
                    "turn": 0,
                    "prompt": f"Question {i}?",
                    "n_responses": 2,
                    "history": "own",
                    "n_ratings": n_ratings,
                    "complete_at": when,
                    "asked_by": None,
                }
            )
            for position in (0, 1):
                answers.append(
                    {
                        "id": uuid.uuid4().hex,
                        "comparison_id": cid,
                        "position": position,
                        "contender": f"c{position}",
                        "weights_id": "org/m",
                        "messages": [{"role": "user", "content": f"Question {i}?"}],
                        "prompt_rendered": "",
                        "params": {},
                        "text": f"Answer {position} to question {i}. " * 20,
                        "finish_reason": "stop",
                        "prompt_tokens": 5,
                        "completion_tokens": 60,
                        "duration_s": 1.0,
                        "created_at": when,
                    }
                )
            if i in mine:
                ratings.append(
                    {
                        "id": uuid.uuid4().hex,
                        "comparison_id": cid,
                        "created_at": when,
                        "kind": "pairwise",
                        "choice": "a",
                        "blind": True,
                        "rater": rater,
                        "source": "review",
                    }
                )
        with database.session() as session:
            session.execute(insert(Comparison), rows)
            session.execute(insert(Response), answers)
            if ratings:
                session.execute(insert(Rating), ratings)
    return rater


def timed(call, times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def report(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p95 = ms[max(0, int(len(ms) * 0.95) - 1)]
    print(f"{name}: p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms ({len(ms)} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comparisons", type=int, default=100_000)
    parser.add_argument("--rated", type=int, default=5_000, help="items the rater has reviewed already")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-review-"))
    database = open_database(sqlite_url(folder / "feedback.sqlite3"))
    started = time.perf_counter()
    rater = fill(database, args.comparisons, args.rated)
    print(
        f"{args.comparisons} comparisons, the rater has reviewed {args.rated}: filled in "
        f"{time.perf_counter() - started:.0f} s ({folder})"
    )

    def query() -> None:
        with database.snapshot() as session:
            assert next_to_review(session, rater, overlap=3) is not None

    report("queue query", timed(query, args.calls))

    from playground.conversation import Conversation
    from playground.raters import RaterPolicy, Raters, Seat
    from playground.review import Reviewer

    reviewer = Reviewer(database, Raters(database, RaterPolicy(gold_rate=0.0)))
    page = Conversation(panes=[])
    page.seat = Seat(rater, "invited")
    report("Reviewer.next", timed(lambda: reviewer.next(page), args.calls))
    database.dispose()
    through_page(folder, rater, args.calls)


def through_page(folder: Path, rater: str, calls: int) -> None:
    """/review_next through the launched page, one session seated as the rater."""
    import httpx
    from gradio_client import Client

    from app import settings_from
    from playground.raters import Seat
    from playground.server import create_app
    from tests.fakes import words_streamer
    from tests.raw_api import call
    from tests.servers import free_port

    settings = settings_from(
        ["--data-dir", str(folder), "--port", str(free_port()), "--model", "org/c0", "--model", "org/c1"], {}
    )
    with create_app(settings, streamer=words_streamer(), log=lambda m: None) as app:
        fn = Client(app.url, verbose=False)._infer_fn_index("/review_next", None)
        session = uuid.uuid4().hex[:11]
        app.conversations.get(session).seat = Seat(rater, "invited")
        with httpx.Client():
            spent = timed(lambda: call(app.url, fn, [], session)["success"] or sys.exit("review_next failed"), calls)
    report("page /review_next, press to item on screen", spent)


if __name__ == "__main__":
    main()
