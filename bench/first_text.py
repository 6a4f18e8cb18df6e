"""First text as the visitor sees it, against the panes' own first token.

  .venv/bin/python bench/first_text.py [--comparisons 12] [--app-dir DIR] [--extra-args "..."]

One visitor at a time asks the demo lineup one prompt after another against the launched app.py, each
comparison in a new session. Per comparison: the time from submit until the client holds the first
snapshot (the comparison exists) and until it holds the first answer text, and the stored time to
first token of the fastest pane (measured from the start of its stream). The gap between the client's
first text and that first token is what the page adds: queue, checks, the comparison write, thread
start, SSE. Two clients, in turn:
- gradio_client, which reads its message queue every 50 ms (so it adds up to 50 ms per message);
- the page's own protocol read as a browser does (POST queue/join, then the queue/data event stream
  read as bytes arrive), which shows what the server adds.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concurrent_visitors import (  # noqa: E402  (a sibling script, not a package)
    PROMPTS,
    REPO,
    answer_texts,
    app_options,
    describe,
    percentile,
    read_api,
    start_app,
    stop_app,
    supported_args,
)

POLL_S = 0.001


def one_comparison(client, api, prompt: str) -> tuple[float, float | None]:
    """Seconds from submit to the first snapshot and to the first answer text, as the client sees them."""
    submitted = time.perf_counter()
    job = client.submit(*api.ask_args(prompt), api_name="/ask")
    snapshot = text = None
    seen = 0
    while not job.done() or seen < len(job.outputs()):
        outputs = job.outputs()
        for output in outputs[seen:]:
            now = time.perf_counter()
            snapshot = snapshot or now
            if text is None and any(t.strip() for t in answer_texts(output, api.panes)):
                text = now
        seen = len(outputs)
        time.sleep(POLL_S)
    job.result()
    return snapshot - submitted, (text - submitted) if text else None


def one_comparison_raw(client, api, prompt: str) -> tuple[float, float | None]:
    """Like one_comparison, over the page's protocol read as bytes arrive (as a browser reads it)."""
    import httpx

    from tests.raw_api import join, messages, snapshots

    fn_index = client._infer_fn_index("/ask", None)
    session = uuid.uuid4().hex
    snapshot, text = None, None
    with httpx.Client(timeout=None) as http:
        submitted = time.perf_counter()
        join(http, client.src, fn_index, api.ask_args(prompt), session).raise_for_status()
        for message, state in snapshots(messages(http, client.src, session)):
            if message.get("msg") != "process_generating":
                continue
            now = time.perf_counter()
            snapshot = snapshot or now
            if text is None and any(t.strip() for t in answer_texts(state, api.panes)):
                text = now
    return snapshot - submitted, (text - submitted) if text else None


def fastest_first_tokens(data_dir: Path) -> list[float]:
    """Per stored comparison, in the order they were made: the smallest time to first token of its panes."""
    db = sqlite3.connect(f"file:{data_dir / 'feedback.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT MIN(r.time_to_first_token_s) FROM comparisons c JOIN responses r "
            "ON r.comparison_id = c.id GROUP BY c.id ORDER BY c.created_at"
        ).fetchall()
    finally:
        db.close()
    return [row[0] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comparisons", type=int, default=12)
    parser.add_argument("--app-dir", type=Path, default=REPO)
    parser.add_argument("--extra-args", default="")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "llm-playground")
    args = parser.parse_args()
    extra, dropped = supported_args(shlex.split(args.extra_args), app_options(args.app_dir))
    if dropped:
        print(f"not offered by this app.py, left out: {' '.join(dropped)}")
    print(describe(args.app_dir))
    from gradio_client import Client

    workdir = Path(tempfile.mkdtemp(prefix="first-text-"))
    process, url = start_app(args.app_dir, workdir / "data", args.cache_dir, extra, workdir / "app.log")
    try:
        api = read_api(url)
        # Warm-up: the first forward passes of each shape are slow. Each comparison is a new conversation
        # (a new session), so that every prompt is the same length as the visitors'.
        one_comparison(Client(url, verbose=False), api, "Hello!")
        runs = {}
        for name in ("gradio_client", "event stream"):
            runs[name] = []
            for i in range(args.comparisons):
                client = Client(url, verbose=False)
                prompt = PROMPTS[i % len(PROMPTS)]
                runs[name].append(
                    one_comparison(client, api, prompt)
                    if name == "gradio_client"
                    else one_comparison_raw(client, api, prompt)
                )
        firsts = fastest_first_tokens(workdir / "data")[1:]  # the warm-up comparison comes first
    finally:
        stop_app(process)
    shutil.rmtree(workdir, ignore_errors=True)
    for n, (name, seen) in enumerate(runs.items()):
        report(name, seen, firsts[n * args.comparisons : (n + 1) * args.comparisons])


def report(name: str, seen: list[tuple[float, float | None]], firsts: list[float]) -> None:
    print(f"\n{name}:\n| # | first snapshot ms | first text ms | fastest pane's first token ms | gap ms |")
    print("| --- | --- | --- | --- | --- |")
    gaps = []
    for n, ((snapshot, text), first) in enumerate(zip(seen, firsts), start=1):
        gap = (text - first) * 1000 if text is not None and first is not None else None
        if gap is not None:
            gaps.append(gap)
        print(
            f"| {n} | {snapshot * 1000:.0f} | {text * 1000 if text else float('nan'):.0f} | "
            f"{first * 1000 if first else float('nan'):.0f} | {gap if gap is not None else float('nan'):.0f} |"
        )
    snapshots = [s * 1000 for s, _ in seen]
    print(f"{name}: first snapshot p50 {statistics.median(snapshots):.0f} ms, p95 {percentile(snapshots, 0.95):.0f} ms")
    if gaps:
        print(
            f"{name}: first text after the fastest pane's first token: p50 {statistics.median(gaps):.0f} ms, "
            f"p95 {percentile(gaps, 0.95):.0f} ms, min {min(gaps):.0f} ms, max {max(gaps):.0f} ms"
        )


if __name__ == "__main__":
    main()
