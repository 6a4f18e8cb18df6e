"""Memory per browser session: many new session hashes that only load the page (or ask "Your data"),
the server's RSS as they come, and after they expire (issue 15).

    .venv/bin/python bench/sessions.py --sessions 10000
    .venv/bin/python bench/sessions.py --sessions 2000 --unlean   # Gradio's own session state, for the ratio

The app runs in a child process (the RSS measured is the server's alone) on a plain streamer: a page
load makes no model call. A session is what a script can mint for nothing: a POST to the queue with a
new session hash for the page's load event, reading its result; every tenth asks "Your data" too.
After the last one, the child is told to sweep as its sweeper would once the sessions are idle (the
bench's idle time is 5 s, the app's 15 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
IDLE_S = 5.0


def serve(port: int, data_dir: str, lean: bool) -> None:
    """The child: the app on two plain contenders; prints READY, then sweeps when told on stdin."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app import settings_from
    from playground.server import create_app
    from tests.fakes import words_streamer

    settings = settings_from(
        ["--data-dir", data_dir, "--port", str(port), "--model", "org/one", "--model", "org/two"], {}
    )
    settings = type(settings)(**{**settings.__dict__, "unasked_ttl_s": IDLE_S})
    app = create_app(settings, streamer=words_streamer(), log=lambda m: None)
    demo = app.demo
    if not lean:  # Gradio's own StateHolder, as before issue 15
        import gradio.state_holder as holders

        import playground.server as server

        server.lean_sessions = lambda d: _plain(d, holders)
    app.launch(block=False)
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() == "sweep":
            gone = app.sweeper.run_once()
            print(
                json.dumps(
                    {
                        "swept": gone,
                        "conversations": len(app.conversations),
                        "gradio_sessions": len(demo.state_holder.session_data),
                    }
                ),
                flush=True,
            )
    app.close()


def _plain(demo, holders):
    """A stand-in for lean_sessions that keeps Gradio's StateHolder but can still be swept."""
    from playground.ui_sessions import LeanStateHolder

    class Swept(holders.StateHolder):
        forget, sweep = LeanStateHolder.forget, LeanStateHolder.sweep

    demo.state_holder.__class__ = Swept
    return demo.state_holder


def session(http: httpx.Client, url: str, fn_index: int, session_hash: str, data: list | None = None) -> None:
    """One event of a session through the queue, read to its end."""
    from tests.raw_api import join, messages

    join(http, url, fn_index, data or [], session_hash).raise_for_status()
    for _ in messages(http, url, session_hash):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--unlean", action="store_true", help="Gradio's own session state (the baseline)")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.data_dir, lean=not args.unlean)
        return
    sys.path.insert(0, str(REPO))
    from tests.servers import free_port

    port, data_dir = free_port(), tempfile.mkdtemp(prefix="bench-sessions-")
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(port),
            "--data-dir",
            data_dir,
            *(["--unlean"] if args.unlean else []),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert child.stdout.readline().strip() == "READY"
        server, url = psutil.Process(child.pid), f"http://127.0.0.1:{port}/"
        config = httpx.get(f"{url}config", timeout=30).json()
        names = {d.get("api_name"): i for i, d in enumerate(config["dependencies"])}
        load = next(i for i, d in enumerate(config["dependencies"]) if any(t[1] == "load" for t in d["targets"]))
        mine = names["my_data"]
        with httpx.Client(timeout=60) as http:
            for _ in range(20):  # warm up: imports, first renders
                session(http, url, load, uuid.uuid4().hex[:11])
            start_rss, started = server.memory_info().rss, time.perf_counter()
            print(f"{'lean' if not args.unlean else 'gradio'} session state; RSS at start {start_rss / 2**20:.0f} MB")
            for n in range(1, args.sessions + 1):
                key = uuid.uuid4().hex[:11]
                session(http, url, load, key)
                if n % 10 == 0:
                    session(http, url, mine, key)
                if n % max(1, args.sessions // 5) == 0:
                    rss = server.memory_info().rss
                    print(
                        f"{n:>6} sessions: RSS {rss / 2**20:.0f} MB (+{(rss - start_rss) / n / 1024:.1f} KB a "
                        f"session), {n / (time.perf_counter() - started):.0f} sessions/s"
                    )
        peak = server.memory_info().rss
        time.sleep(IDLE_S + 1)
        child.stdin.write("sweep\n")
        child.stdin.flush()
        swept = json.loads(child.stdout.readline())
        time.sleep(0.5)
        after = server.memory_info().rss
        print(
            f"after the sweep ({swept['swept']} sessions let go; {swept['conversations']} conversations and "
            f"{swept['gradio_sessions']} Gradio sessions held): RSS {after / 2**20:.0f} MB, "
            f"{(after - start_rss) / 2**20:+.0f} MB against the start, {(peak - after) / 2**20:.0f} MB given back"
        )
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    main()
