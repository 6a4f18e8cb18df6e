"""Time of the leaderboard with 1,000 bootstrap rounds (issue 4).

  python bench/leaderboard_time.py [--contenders 10] [--battles 20000] [--rounds 1000]
1. In memory: `battles` battles among `contenders` contenders drawn from known Bradley-Terry ratings
   (10% ties); times the fit alone and the fit plus the bootstrap. A second draw without ties (ties as
   half wins pull ratings toward the mean, so only then is the truth the target) checks the numbers.
2. End to end: a SQLite database of `battles` synthetic ratings (bench/export_throughput.py's mix of
   votes, scores and rankings) read and fitted by `leaderboard_of`, as `python -m feedback_db leaderboard`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export_throughput import synthetic_database  # noqa: E402

from feedback_db import Battle, build_leaderboard, leaderboard_of, open_database  # noqa: E402


def synthetic_battles(
    contenders: int, count: int, ties: float = 0.1, seed: int = 0
) -> tuple[list[Battle], dict[str, float]]:
    """Battles drawn from Bradley-Terry with ratings spread like an arena's (sd 100 points)."""
    rng = np.random.default_rng(seed)
    true = {f"model-{i}": 1000 + 100 * z for i, z in enumerate(rng.normal(size=contenders))}
    names = list(true)
    battles = []
    for _ in range(count):
        a, b = rng.choice(names, 2, replace=False)
        if rng.random() < ties:
            battles.append(Battle(a, b, tie=True))
            continue
        p = 1 / (1 + 10 ** ((true[b] - true[a]) / 400))
        battles.append(Battle(a, b) if rng.random() < p else Battle(b, a))
    mean = sum(true.values()) / len(true)
    return battles, {name: rating - mean + 1000 for name, rating in true.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contenders", type=int, default=10)
    parser.add_argument("--battles", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()

    battles, _ = synthetic_battles(args.contenders, args.battles)
    started = time.perf_counter()
    build_leaderboard(battles, rounds=0)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    board = build_leaderboard(battles, rounds=args.rounds)
    total_s = time.perf_counter() - started
    print(
        f"in memory: {args.contenders} contenders, {len(battles)} battles: fit {fit_s * 1000:.1f} ms; "
        f"fit + {args.rounds} bootstrap rounds {total_s:.2f} s"
    )
    untied, true = synthetic_battles(args.contenders, args.battles, ties=0.0, seed=1)
    board = build_leaderboard(untied, rounds=args.rounds)
    error = max(abs(row.rating - true[row.contender]) for row in board.rows)
    width = sum(row.upper - row.lower for row in board.rows) / len(board.rows)
    inside = sum(row.lower <= true[row.contender] <= row.upper for row in board.rows)
    print(
        f"  check, no ties: largest error against the true ratings {error:.1f} points; mean 95% interval "
        f"width {width:.1f}; true rating inside the interval for {inside} of {len(board.rows)}"
    )

    with tempfile.TemporaryDirectory() as folder:
        url = synthetic_database(Path(folder) / "feedback.sqlite3", args.battles, args.contenders)
        database = open_database(url)
        started = time.perf_counter()
        with database.snapshot() as session:
            board = leaderboard_of(session, rounds=args.rounds)
        end_to_end_s = time.perf_counter() - started
        database.dispose()
    print(
        f"end to end from SQLite: {board.ratings_used} ratings -> {board.battles_total} battles, "
        f"read + fit + {args.rounds} rounds {end_to_end_s:.2f} s"
    )


if __name__ == "__main__":
    main()
