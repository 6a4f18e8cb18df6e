"""Export throughput and memory on synthetic ratings (issue 4's "1,000,000 ratings need not fit in memory").

  python bench/export_throughput.py [--ratings 100000] [--keep PATH]
Builds a SQLite feedback database of synthetic ratings (bulk inserts; 70% pairwise votes, 20% 1-5 scores
of three answers, 10% rankings of three), then runs `python -m feedback_db export` once per format and
file type, each in its own process, and prints rows/s, ratings/s and the process's peak RSS. A run
over the first tenth of the ratings (--until) shows whether memory grows with the export's size.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from feedback_db import AnswerJudgement, Comparison, Rating, Response, open_database, sqlite_url  # noqa: E402
from feedback_db.records import STRENGTHS  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
WORDS = "the sky is blue because air scatters short wavelengths of sunlight more than long ones".split()
CHUNK = 5_000  # comparisons per insert transaction


def synthetic_database(path: Path, ratings: int, contenders: int = 10, seed: int = 0) -> str:
    """A feedback database at `path` with `ratings` rated comparisons; returns its URL."""
    url = sqlite_url(path)
    database = open_database(url)
    rng = random.Random(seed)
    names = [f"model-{i}" for i in range(contenders)]
    for first in range(0, ratings, CHUNK):
        rows: dict[str, list[dict]] = {"comparisons": [], "responses": [], "ratings": [], "judgements": []}
        for n in range(first, min(first + CHUNK, ratings)):
            _one_comparison(rng, n, names, rows)
        with database.engine.begin() as connection:
            connection.execute(insert(Comparison), rows["comparisons"])
            connection.execute(insert(Response), rows["responses"])
            connection.execute(insert(Rating), rows["ratings"])
            connection.execute(insert(AnswerJudgement), rows["judgements"])
    database.dispose()
    return url


def _one_comparison(rng: random.Random, n: int, names: list[str], rows: dict[str, list[dict]]) -> None:
    roll = rng.random()
    kind = "pairwise" if roll < 0.7 else "scores" if roll < 0.9 else "ranking"
    shown = rng.sample(names, 2 if kind == "pairwise" else 3)
    when = START + timedelta(seconds=n)
    comparison_id, rating_id = f"{n:032x}", f"{n:031x}f"
    question = " ".join(rng.choices(WORDS, k=12)) + "?"
    messages = [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": question}]
    rows["comparisons"].append(
        dict(
            id=comparison_id,
            created_at=when,
            lineup="bench",
            mode="arena",
            session_id=f"s{n % 997}",
            turn=0,
            prompt=question,
            n_responses=len(shown),
        )
    )
    choice = rng.choice(["a", "a", "b", "b", "tie", "both_bad"]) if kind == "pairwise" else None
    strength = rng.choice(STRENGTHS) if choice in ("a", "b") and rng.random() < 0.8 else None
    rows["ratings"].append(
        dict(
            id=rating_id,
            comparison_id=comparison_id,
            created_at=when,
            kind=kind,
            choice=choice,
            strength=strength,
            blind=True,
        )
    )
    ranks = rng.sample(range(1, len(shown) + 1), len(shown))
    for position, contender in enumerate(shown):
        response_id = f"{n:030x}{position:02x}"
        rows["responses"].append(
            dict(
                id=response_id,
                comparison_id=comparison_id,
                position=position,
                contender=contender,
                weights_id=f"org/{contender}",
                messages=messages,
                prompt_rendered="",
                params={"temperature": 0.7},
                seed=n,
                text=" ".join(rng.choices(WORDS, k=80)),
                finish_reason="stop",
                prompt_tokens=30,
                completion_tokens=100,
                duration_s=1.0,
                created_at=when,
            )
        )
        rows["judgements"].append(
            dict(
                rating_id=rating_id,
                response_id=response_id,
                unsafe=rng.random() < 0.02,
                score=rng.randint(1, 5) if kind == "scores" else None,
                rank=ranks[position] if kind == "ranking" else None,
            )
        )


def run_export(url: str, export_format: str, output: Path, extra: list[str]) -> tuple[float, int, str]:
    """One export in a fresh process: (seconds, peak RSS in MiB, summary line)."""
    command = [
        sys.executable,
        "-m",
        "feedback_db",
        "export",
        "--db-url",
        url,
        "--format",
        export_format,
        "--output",
        str(output),
        *extra,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    summary = process.stderr.read().strip() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"export failed: {summary}")
    return elapsed, usage.ru_maxrss // 1024, summary  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the database here instead of a temp folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="export-bench-"))
    path = args.keep or folder / "feedback.sqlite3"
    started = time.perf_counter()
    url = sqlite_url(path) if path.exists() else synthetic_database(path, args.ratings)
    print(
        f"database: {args.ratings} ratings, {path.stat().st_size / 2**20:.0f} MiB, "
        f"built in {time.perf_counter() - started:.1f} s"
    )
    print(f"{'format':<7} {'file':<12} {'rows':>8} {'seconds':>8} {'rows/s':>9} {'ratings/s':>10} {'peak RSS':>9}")
    tenth = (START + timedelta(seconds=args.ratings // 10)).isoformat()
    for export_format in ("dpo", "reward", "kto", "sft"):
        for suffix, extra in (
            (".jsonl", []),
            (".parquet", []),
            (".jsonl", ["--until", tenth]),
            (".parquet", ["--until", tenth]),
        ):
            seconds, rss, summary = run_export(url, export_format, folder / f"out{suffix}", extra)
            rows, ratings = (int(summary.split()[i]) for i in (1, 5))
            label = suffix.lstrip(".") + (" 1/10" if extra else "")
            print(
                f"{export_format:<7} {label:<12} {rows:>8} {seconds:>8.2f} {rows / seconds:>9.0f} "
                f"{ratings / seconds:>10.0f} {rss:>6} MiB"
            )
    print("(seconds include starting Python and opening the database, about 1 s; peak RSS is the whole process)")


if __name__ == "__main__":
    main()
