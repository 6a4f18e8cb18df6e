"""A public page under a flood (issue 15): abandoned asks, a burst against the per-minute limit, spoofed
X-Forwarded-For, and wrong admin tokens; each counted, on a plain streamer (no model is needed).

    .venv/bin/python bench/flood.py            # 1,000 abandoned asks, a burst of 60, 5 spoofed asks
    .venv/bin/python bench/flood.py --abandoned 200
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import settings_from  # noqa: E402
from playground.server import App, create_app  # noqa: E402
from tests.fakes import words_streamer  # noqa: E402
from tests.raw_api import call, join  # noqa: E402
from tests.servers import free_port  # noqa: E402


def app(*argv: str) -> App:
    """The app on two plain contenders that answer in about 0.2 s, with `argv`: `with` it to serve it."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    settings = settings_from(
        ["--data-dir", str(data_dir), "--port", str(free_port()), "--model", "org/one", "--model", "org/two", *argv], {}
    )
    return create_app(settings, streamer=words_streamer(delay=0.05), log=lambda m: None)


def stored(served: App) -> int:
    with sqlite3.connect(served.settings.data_dir / "feedback.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0]


def ask_index(url: str) -> int:
    config = httpx.get(f"{url}config", timeout=30).json()
    return next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "ask")


def abandoned(count: int) -> None:
    """`count` asks joined from distinct sessions that never read their stream, then one real visitor."""
    with app("--queue-size", str(count + 10), "--max-concurrent", "4") as served:
        url = served.url
        fn = ask_index(url)
        started = time.perf_counter()
        with httpx.Client(timeout=60) as http:
            codes = [join(http, url, fn, [f"abandoned {n}", "", ""]).status_code for n in range(count)]
        joined_s = time.perf_counter() - started
        answer = call(url, fn, ["Is anyone there?", "", ""], uuid.uuid4().hex[:11], timeout=600)
        served_s = time.perf_counter() - started
        print(
            f"abandoned asks: {codes.count(200)} of {count} joined in {joined_s:.1f} s; comparisons stored: "
            f"{stored(served) - 1} of them; a real visitor after them answered "
            f"{'yes' if answer['success'] else 'NO'}, {served_s - joined_s:.1f} s after the last join"
        )


def burst(count: int, limit: int) -> None:
    """`count` asks at once from one address against a limit of `limit` a minute, each read to its end."""
    with app("--limit-per-minute", str(limit), "--queue-size", str(count + 10)) as served:
        url = served.url
        fn, results = ask_index(url), []
        gate = threading.Barrier(count)

        def one(n: int) -> None:
            gate.wait()
            results.append(call(url, fn, [f"burst {n}", "", ""], uuid.uuid4().hex[:11], timeout=120)["success"])

        threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(
            f"burst of {count} at once, limit {limit} a minute: {sum(results)} answered, "
            f"{stored(served)} comparisons stored"
        )


def spoofed(count: int, limit: int) -> None:
    """Asks from loopback, each with a new made-up X-Forwarded-For, without --trusted-proxy."""
    with app("--limit-per-minute", str(limit)) as served:
        url = served.url
        fn = ask_index(url)
        answered = sum(
            call(
                url,
                fn,
                [f"spoofed {n}", "", ""],
                uuid.uuid4().hex[:11],
                timeout=120,
                headers={"X-Forwarded-For": f"198.51.100.{n + 1}"},
            )["success"]
            for n in range(count)
        )
        print(
            f"spoofed X-Forwarded-For, {count} asks, limit {limit} a minute: {answered} answered, "
            f"{stored(served)} stored"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--abandoned", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=60)
    args = parser.parse_args()
    abandoned(args.abandoned)
    burst(args.burst, 2)
    spoofed(5, 2)


if __name__ == "__main__":
    main()
