"""Many simulated visitors against the launched app for a while: served, refused, failed, and no rating lost.

  .venv/bin/python bench/visitors.py --tiny --visitors 8 --seconds 20 [--kill] [--json]
  .venv/bin/python bench/visitors.py --visitors 32 --seconds 60          # the embedded demo lineup

Each visitor, in its own gradio_client session, asks a prompt, reads the answers as they stream,
rates them, and starts again with a new session, until the time is up. Reported: comparisons served,
busy refusals (the queue was full), errors, time to first text and to the last answer (p50 / p95),
and ratings the page confirmed against rating rows stored, which must be equal: a confirmed rating
is committed before the page says so. `--kill` SIGKILLs the app a third of the way in and starts it
again on the same port and database; visits cut by the kill are counted apart, the comparisons it
left unfinished must be marked interrupted at the restart, and SQLite's integrity_check must say ok.
Loopback only; bounded by --seconds (plus start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from concurrent_visitors import REPO, free_port, percentile, read_api, visit  # noqa: E402

from tests.servers import wait_until_serving  # noqa: E402

START_TIMEOUT_S = 300.0


@dataclass
class Tally:
    """What every visitor saw, added up under a lock."""

    served: int = 0
    busy: int = 0
    errors: list[str] = field(default_factory=list)
    cut_by_restart: int = 0
    confirmed: int = 0
    first_text_s: list[float] = field(default_factory=list)
    last_answer_s: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class App:
    """app.py on a fixed port, so that visitors find it again after a restart."""

    def __init__(self, argv: list[str], data_dir: Path, log: Path) -> None:
        self.port, self.argv, self.data_dir, self.log = free_port(), argv, data_dir, log
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen | None = None
        self.down = threading.Event()  # set while the app is being killed and restarted

    def start(self) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "app.py", "--port", str(self.port), "--data-dir", str(self.data_dir), *self.argv],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_serving(self.process, self.url, START_TIMEOUT_S, lambda: self.log.read_text()[-3000:])
        except AssertionError as error:
            raise SystemExit(f"app.py did not serve: {error}") from None

    def kill_and_restart(self) -> float:
        """SIGKILL, then start again; the seconds the page was down."""
        self.down.set()
        started = time.perf_counter()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.start()
        self.down.clear()
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def visitor(app: App, number: int, deadline: float, tally: Tally, start: threading.Barrier) -> None:
    """Visits until the deadline: each a new session that asks, streams and rates."""
    api, begun = None, False
    while time.monotonic() < deadline:
        try:
            api = api or read_api(app.url)
            gate = start if not begun else threading.Barrier(1)
            begun = True
            record = visit(app.url, api, number, gate)
        except Exception as error:  # the page was not there (restarting): try again shortly
            if not app.down.is_set():
                with tally.lock:
                    tally.errors.append(f"{type(error).__name__}: {error}"[:200])
            api = None  # the restarted app is read again
            time.sleep(0.5)
            continue
        restarting = app.down.is_set()
        with tally.lock:
            if record.error:
                if "busy" in record.error.lower() or "queue is full" in record.error.lower():
                    tally.busy += 1
                elif restarting or "Connect" in record.error:
                    tally.cut_by_restart += 1
                else:
                    tally.errors.append(record.error[:200])
                continue
            tally.served += 1
            if record.first_text is not None:
                tally.first_text_s.append(record.first_text - record.submitted)
            tally.last_answer_s.append(record.finished - record.submitted)
            if record.pane_errors:
                tally.errors.append(f"{record.pane_errors} pane(s) failed")
            if record.rated:
                tally.confirmed += 1
            elif not (restarting or "Connect" in record.rating_message):
                tally.errors.append(f"rating not stored: {record.rating_message}"[:200])


def stored(data_dir: Path) -> tuple[int, int, int, str]:
    """(comparisons, of them marked interrupted, ratings, integrity_check) of the app's SQLite file."""
    db = sqlite3.connect(data_dir / "feedback.sqlite3")
    try:
        comparisons = db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0]
        interrupted = db.execute("SELECT COUNT(*) FROM comparisons WHERE interrupted_at IS NOT NULL").fetchone()[0]
        ratings = db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    return comparisons, interrupted, ratings, integrity


def tiny_models(folder: Path) -> list[str]:
    """Two tiny random Llama checkpoints (the test suite's), built here: seconds per answer, not minutes."""
    from tests.checkpoints import tiny_llama

    return [
        "--model",
        str(tiny_llama(folder / "tiny-mha", kv_heads=4, seed=0)),
        "--model",
        str(tiny_llama(folder / "tiny-gqa", kv_heads=2, seed=1)),
        "--dtype",
        "float32",
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tiny", action="store_true", help="two tiny checkpoints instead of the demo lineup")
    parser.add_argument("--kill", action="store_true", help="SIGKILL the app halfway and start it again")
    parser.add_argument("--extra-args", default="", help="more app.py options")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="visitors-"))
    app_argv = (tiny_models(workdir) if args.tiny else []) + shlex.split(args.extra_args)
    app = App(app_argv, workdir / "data", workdir / "app.log")
    app.start()
    tally, down_s = Tally(), None
    try:
        deadline = time.monotonic() + args.seconds
        start = threading.Barrier(args.visitors)
        threads = [
            threading.Thread(target=visitor, args=(app, n, deadline, tally, start), daemon=True)
            for n in range(args.visitors)
        ]
        for thread in threads:
            thread.start()
        if args.kill:  # a third of the way in, so that visitors meet the restarted app too
            time.sleep(args.seconds / 3)
            down_s = app.kill_and_restart()
        for thread in threads:
            thread.join(timeout=args.seconds + 600)
    finally:
        app.stop()
    comparisons, interrupted, ratings, integrity = stored(workdir / "data")
    summary = {
        "visitors": args.visitors,
        "seconds": args.seconds,
        "lineup": "tiny" if args.tiny else "demo",
        "served": tally.served,
        "busy": tally.busy,
        "errors": len(tally.errors),
        "cut_by_restart": tally.cut_by_restart,
        "first_text_p50_s": _round(statistics.median(tally.first_text_s)) if tally.first_text_s else None,
        "first_text_p95_s": _round(percentile(tally.first_text_s, 0.95)),
        "last_answer_p50_s": _round(statistics.median(tally.last_answer_s)) if tally.last_answer_s else None,
        "last_answer_p95_s": _round(percentile(tally.last_answer_s, 0.95)),
        "ratings_confirmed": tally.confirmed,
        "ratings_stored": ratings,
        "comparisons_stored": comparisons,
        "comparisons_interrupted": interrupted,
        "lost_ratings": max(0, tally.confirmed - ratings),
        "integrity": integrity,
        "killed_and_restarted_in_s": _round(down_s),
        "first_errors": tally.errors[:3],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>26}: {value}")
    return summary


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


if __name__ == "__main__":
    main()
