"""What multi-turn conversations give each export, stored with each pane's own history and with a shared one.

  python bench/multiturn_exports.py [--conversations 200] [--turns 3] [--seed 0]
Seeds two fresh SQLite databases (in a temporary folder) through the store functions (one transaction
per conversation), with the same deterministic conversations, votes, unsafe flags and failed answers.
Only the history differs:
- own: each pane continues its own conversation, so from the second turn on the two answers replied
  to different prompts (how later turns were stored before the shared protocol);
- shared: every pane gets one history, continued from the preferred answer (Anthropic HH protocol).
Then prints each format's export summary line for both, to compare what each protocol yields.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from feedback_db import (  # noqa: E402
    FORMATS,
    ComparisonRecord,
    Database,
    ExportOptions,
    History,
    RatingRecord,
    ResponseRecord,
    add_comparison,
    add_rating,
    add_response,
    iter_rows,
    open_database,
    sqlite_url,
)
from feedback_db.export import Tally  # noqa: E402
from feedback_db.records import STRENGTHS  # noqa: E402

CONTENDERS = ["llama-2-7b-chat", "llama-2-13b-chat", "mistral-7b-instruct", "smollm2-135m"]
CHOICES = ["a"] * 7 + ["b"] * 7 + ["tie"] * 3 + ["both_bad"] * 3  # 35% / 35% / 15% / 15%
UNSAFE = 0.05  # chance that an answer is flagged unsafe
FAILED = 0.03  # chance that one answer of a turn fails
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def seed(database: Database, history: History, conversations: int, turns: int, rng: random.Random) -> None:
    """Store `conversations` rated conversations of `turns` turns, two answers each."""
    for number in range(conversations):
        with database.session() as session:  # one transaction per conversation: seconds, not a minute
            _conversation(session, history, number, turns, rng)


def _conversation(session: Session, history: History, number: int, turns: int, rng: random.Random) -> None:
    contenders = rng.sample(CONTENDERS, 2)  # by pane position, the same at every turn
    panes = [[SYSTEM], [SYSTEM]]
    parent_id = continued_from = None
    for turn in range(turns):
        question = f"Question {turn} of conversation {number}?"
        record = ComparisonRecord(
            lineup="bench",
            session_id=f"s{number}",
            prompt=question,
            n_responses=2,
            mode="arena",
            turn=turn,
            parent_id=parent_id,
            system_prompt=SYSTEM["content"],
            history=history,
            continued_from=continued_from if history == "shared" else None,
        )
        panes = [pane + [{"role": "user", "content": question}] for pane in panes]
        failed = rng.randrange(2) if rng.random() < FAILED else None
        answers = [
            _answer(record.id, position, contender, panes[position], failed == position)
            for position, contender in enumerate(contenders)
        ]
        add_comparison(session, record)
        for answer in answers:
            add_response(session, answer)
        rating = _vote(record.id, rng)
        add_rating(session, rating)
        # The preferred answer; for a tie or both-bad, one drawn among those that did not fail.
        drawn = rng.choice([a for a in answers if a.finish_reason != "error"])
        preferred = answers["ab".index(rating.choice)] if rating.choice in ("a", "b") else drawn
        if history == "shared":
            panes = [panes[0] + [{"role": "assistant", "content": preferred.text}]] * 2
        else:
            panes = [pane + [{"role": "assistant", "content": a.text}] for pane, a in zip(panes, answers)]
        parent_id, continued_from = record.id, preferred.id


def _answer(
    comparison_id: str, position: int, contender: str, messages: list[dict[str, str]], failed: bool
) -> ResponseRecord:
    return ResponseRecord(
        comparison_id=comparison_id,
        position=position,
        contender=contender,
        weights_id=f"org/{contender}",
        messages=messages,
        prompt_rendered="",
        params={"temperature": 0.7},
        seed=position,
        text="" if failed else f"{contender} answers: {messages[-1]['content']}",
        finish_reason="error" if failed else "stop",
        error="timeout" if failed else None,
        prompt_tokens=10 * len(messages),
        completion_tokens=0 if failed else 20,
        duration_s=1.0,
    )


def _vote(comparison_id: str, rng: random.Random) -> RatingRecord:
    choice = rng.choice(CHOICES)
    strength = rng.choice(STRENGTHS) if choice in ("a", "b") and rng.random() < 0.8 else None
    unsafe = {position: "harmful" for position in (0, 1) if rng.random() < UNSAFE}
    return RatingRecord(comparison_id, "pairwise", choice=choice, strength=strength, unsafe=unsafe, blind=True)


def summary_line(database: Database, export_format: str) -> str:
    tally = Tally()
    with database.snapshot() as session:
        for _ in iter_rows(session, ExportOptions(export_format), tally):
            pass
    return tally.summary(export_format).line()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="multiturn-bench-"))
    databases: dict[str, Database] = {}
    for history in ("own", "shared"):
        started = time.perf_counter()
        databases[history] = open_database(sqlite_url(folder / f"{history}.sqlite3"))
        # The same generator seed for both: identical votes, flags and failures; only the history differs.
        seed(databases[history], history, args.conversations, args.turns, random.Random(args.seed))
        print(
            f"{history:<6} seeded {args.conversations} conversations x {args.turns} turns in "
            f"{time.perf_counter() - started:.1f} s"
        )
    for export_format in FORMATS:
        print(f"\n{export_format}")
        for history, database in databases.items():
            started = time.perf_counter()
            line = summary_line(database, export_format)
            print(f"  {history:<6} {line} ({time.perf_counter() - started:.2f} s)")
    for database in databases.values():
        database.dispose()


if __name__ == "__main__":
    main()
