"""Many visitors at once: comparisons per minute, time to first text and to the last answer, ratings stored.

  .venv/bin/python bench/concurrent_visitors.py [--visitors 1,4,16] [--app-dir DIR] [--extra-args "--max-concurrent 16"]

Per visitor count: app.py from --app-dir on a fresh --data-dir, one unrated warm-up comparison, then every
visitor (own gradio_client session) asks one prompt via /ask at once and rates via /rate; the SQLite rows
are counted afterwards. The /ask and /rate shapes are read from view_api, so older checkouts work too.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.servers import free_port, wait_until_serving  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn rain.",
    "Give me three tips for a good night's sleep.",
    "What is photosynthesis?",
    "Name three primary colors.",
    "How many days are in a leap year?",
    "What does a thermometer measure?",
]
POLL_S = 0.01  # how often a visitor looks at its job's outputs (gradio_client's own iterator spins every 1 ms)
START_TIMEOUT_S = 300.0
CALIBRATION_TIMEOUT_S = 180.0


@dataclass
class Api:
    """What this app's /ask and /rate take, read from view_api."""

    ask_params: list[dict[str, Any]]
    rate_params: list[dict[str, Any]]
    panes: int
    token_index: int | None  # where /ask returns the form token, None when the app has no form token

    def ask_args(self, prompt: str) -> list[Any]:
        values = {"text": prompt, "system_prompt": "", "token": ""}
        return [values.get(p["parameter_name"], p.get("parameter_default")) for p in self.ask_params]

    def rate_args(self, token: str, visitor: int) -> list[Any]:
        args = []
        for p in self.rate_params:
            label, component = str(p.get("label") or ""), p.get("component")
            choices = (p.get("type") or {}).get("enum") or []
            if p["parameter_name"] == "token":
                args.append(token)
            elif label == "Verdict":  # two answers: "A is better" (the label or, on newer pages, its value "a")
                args.append(next((c for c in choices if c in ("A is better", "a")), choices[0]))
            elif label.startswith("How much better"):
                args.append(next((c for c in choices if str(c).lower() == "better"), choices[0]))
            elif label == "How to rate":
                args.append("scores")
            elif label.startswith("Score for "):  # more answers: a score each, varied between visitors
                position = ord(label[-1]) - ord("A")
                args.append(choices[(visitor + 2 * position) % len(choices)])
            elif label.startswith("Rank of "):
                args.append(None)
            elif component == "Checkbox":
                args.append(False)
            elif label.startswith("Comment"):
                args.append(f"bench visitor {visitor}")
            elif component == "Textbox":
                args.append("")
            else:
                args.append(p.get("parameter_default"))
        return args


@dataclass
class Visit:
    """One visitor's comparison and rating; times are perf_counter stamps."""

    visitor: int
    prompt: str
    submitted: float = 0.0
    first_text: float | None = None
    finished: float | None = None
    error: str | None = None  # the comparison was refused or failed
    pane_errors: int = 0
    pane_stats: list[str] = field(default_factory=list)  # the line under each pane, as the page shows it
    rated: bool = False
    rating_message: str = ""
    estimate_s: float | None = None  # the first wait the page estimated, when the comparison waited in line
    estimate_seen: float | None = None  # when the page first said it waits
    admitted: float | None = None  # when the page stopped saying so
    estimates: list[tuple[float, float]] = field(default_factory=list)  # (when, estimated wait) as shown

    @property
    def halfway_off_s(self) -> float | None:
        """How far the estimate shown halfway through the wait was from the rest of the real wait."""
        if not self.estimates or self.admitted is None or self.estimate_seen is None:
            return None
        middle = (self.estimate_seen + self.admitted) / 2
        seen, estimate = min(self.estimates, key=lambda e: abs(e[0] - middle))
        return (self.admitted - seen) - estimate

    @property
    def estimate_off_s(self) -> float | None:
        """How far the first estimate was from the real wait (positive: it waited longer)."""
        if self.estimate_s is None or self.estimate_seen is None or self.admitted is None:
            return None
        return (self.admitted - self.estimate_seen) - self.estimate_s

    @property
    def slowest_pane(self) -> float | None:
        """Tokens/s of its slowest pane, from the lines under the panes."""
        rates = [float(m.group(1)) for line in self.pane_stats if (m := re.search(r"([\d.]+) tok/s", line))]
        return min(rates) if rates else None

    @property
    def completed(self) -> bool:
        return self.error is None and self.finished is not None and self.pane_errors == 0


@dataclass
class Round:
    visitors: int
    visits: list[Visit]
    wall_s: float
    stored_ratings: int
    stored_comparisons: int
    answer_tokens: int
    client_cpu_s: float
    app_cpu_s: float | None
    max_concurrent: str
    notes: list[str] = field(default_factory=list)


def app_options(app_dir: Path) -> set[str]:
    """The --options app.py in `app_dir` accepts, read from its source (cheaper than importing torch for --help)."""
    return set(re.findall(r"add_argument\(\s*[\"'](--[a-z0-9-]+)", (app_dir / "app.py").read_text()))


def supported_args(extra: list[str], options: set[str]) -> tuple[list[str], list[str]]:
    """`extra` without the options this app does not have (and their values); also what was dropped."""
    kept, dropped, dropping = [], [], False
    for arg in extra:
        if arg.startswith("--"):
            dropping = arg.split("=", 1)[0] not in options
        (dropped if dropping else kept).append(arg)
    return kept, dropped


def default_concurrency(app_dir: Path, extra: list[str]) -> str:
    """--max-concurrent as given, else its default in app.py's source (for apps that do not print it)."""
    for n, arg in enumerate(extra):
        if arg.startswith("--max-concurrent="):
            return arg.split("=", 1)[1]
        if arg == "--max-concurrent" and n + 1 < len(extra):
            return extra[n + 1]
    found = re.search(r"[\"']--max-concurrent[\"'][^)]*?default=(\d+)", (app_dir / "app.py").read_text())
    return found.group(1) if found else "?"


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_app(
    app_dir: Path, data_dir: Path, cache_dir: Path, extra: list[str], log_path: Path
) -> tuple[subprocess.Popen, str]:
    """Start app.py on a free loopback port; return it and its URL once the page answers."""
    port = free_port()
    env = dict(os.environ, PLAYGROUND_CACHE_DIR=str(cache_dir), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    command = [sys.executable, "app.py", "--port", str(port), "--data-dir", str(data_dir), *extra]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(process, url, START_TIMEOUT_S, lambda: log_tail(log_path))
    except AssertionError as error:
        stop_app(process)
        raise SystemExit(f"app.py did not serve: {error}\n{log_tail(log_path)}") from None
    return process, url


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def calibrated(log_path: Path, timeout_s: float = CALIBRATION_TIMEOUT_S) -> None:
    """Wait until the app has measured its engines (it does so once serving, while nothing runs): a
    round measures a server that has been up a while, not its first minute."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "admission measured" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    print(f"  the app did not report its engines measured within {timeout_s:.0f} s; going on")


def read_api(url: str) -> Api:
    """The /ask and /rate parameters, the pane count and where /ask returns the form token."""
    from gradio_client import Client

    api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    endpoints = api["named_endpoints"]
    ask, rate = endpoints["/ask"], endpoints["/rate"]
    panes = sum(1 for r in ask["returns"] if r.get("component") == "Chatbot")
    token_index = None
    token = next((p for p in ask["parameters"] if p["parameter_name"] == "token"), None)
    if token is not None:  # an unlabelled input is "parameter_<id>", the same component as output "value_<id>"
        wanted = str(token.get("label", "")).replace("parameter_", "value_", 1)
        token_index = next((i for i, r in enumerate(ask["returns"]) if r.get("label") == wanted), None)
        if token_index is None:
            raise SystemExit(f"/ask takes a form token but none of its outputs is {wanted!r}")
    return Api(ask["parameters"], rate["parameters"], panes, token_index)


def answer_texts(output: Any, panes: int) -> list[str]:
    """The last assistant message of each pane in one /ask output ('' where a pane has none yet)."""
    texts = []
    for chatbot in list(output)[:panes]:
        messages = chatbot.get("value") if isinstance(chatbot, dict) else chatbot
        text = ""
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
            content = messages[-1].get("content")
            if isinstance(content, list):
                content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            text = str(content or "")
        texts.append(text)
    return texts


def visit(url: str, api: Api, number: int, start: threading.Barrier) -> Visit:
    """One visitor: its own session, one comparison streamed to the end, then a rating."""
    from gradio_client import Client

    record = Visit(visitor=number, prompt=PROMPTS[number % len(PROMPTS)])
    client = Client(url, verbose=False)
    start.wait()
    record.submitted = time.perf_counter()
    job = client.submit(*api.ask_args(record.prompt), api_name="/ask")
    seen = 0
    while True:
        done = job.done()
        outputs = job.outputs()
        for output in outputs[seen:]:
            note_wait(record, output, api.panes)
            if record.first_text is None and any(text.strip() for text in answer_texts(output, api.panes)):
                record.first_text = time.perf_counter()
        seen = len(outputs)
        if done:
            ended = time.perf_counter()
            break
        time.sleep(POLL_S)
    try:
        result = job.result()
    except Exception as error:  # refused (queue full, validation) or failed: the visitor sees a message
        record.error = f"{type(error).__name__}: {error}"
        return record
    record.finished = ended
    record.pane_errors = sum("This contender failed" in text for text in answer_texts(result, api.panes))
    record.pane_stats = [str(stats).strip("_* ") for stats in list(result)[api.panes : 2 * api.panes]]
    token = str(result[api.token_index]) if api.token_index is not None else ""
    try:
        message = client.predict(*api.rate_args(token, number), api_name="/rate")[-1]
    except Exception as error:
        record.rating_message = f"{type(error).__name__}: {error}"
        return record
    record.rating_message = str(message)
    record.rated = "stored" in record.rating_message.lower()
    return record


def note_wait(record: Visit, output: Any, panes: int) -> None:
    """The line under the answers (after chatbots, stats and parameters): a comparison waiting in line
    says its place and estimated wait there, and stops saying so when it starts."""
    hint = str(list(output)[3 * panes]) if len(list(output)) > 3 * panes else ""
    now = time.perf_counter()
    if "waits for a free place" in hint:
        found = re.search(r"about (\d+) (s|min) to wait", hint)
        estimate = (
            float(found.group(1)) * (60 if found.group(2) == "min" else 1)
            if found
            else 0.0
            if "any moment" in hint
            else None
        )
        if estimate is not None:
            record.estimates.append((now, estimate))
            if record.estimate_seen is None or record.estimate_s is None:
                record.estimate_s, record.estimate_seen = estimate, now
    elif record.estimate_seen is not None and record.admitted is None:
        record.admitted = now


def count_rows(data_dir: Path) -> dict[str, int]:
    """Rows in the comparisons and ratings tables of the app's SQLite file, and the answers' tokens."""
    files = sorted(data_dir.glob("*.sqlite3")) or sorted(data_dir.glob("*.db"))
    if not files:
        raise SystemExit(f"no SQLite file in {data_dir}")
    db = sqlite3.connect(f"file:{files[0]}?mode=ro", uri=True)
    try:
        counts = {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("comparisons", "ratings")
        }
        counts["tokens"] = db.execute("SELECT COALESCE(SUM(completion_tokens), 0) FROM responses").fetchone()[0]
    finally:
        db.close()
    return counts


def run_round(visitors: int, app_dir: Path, cache_dir: Path, extra: list[str], warmup: bool) -> Round:
    """Start the app, warm it up, run `visitors` at once, read the database, stop the app."""
    workdir = Path(tempfile.mkdtemp(prefix="concurrent-visitors-"))
    data_dir, log_path = workdir / "data", workdir / "app.log"
    process, url = start_app(app_dir, data_dir, cache_dir, extra, log_path)
    try:
        api = read_api(url)
        if warmup:  # the first forward passes of each shape are slow; no visitor should pay for them
            from gradio_client import Client

            Client(url, verbose=False).predict(*api.ask_args("Hello!"), api_name="/ask")
        if "--calibrate" in app_options(app_dir) and "--no-calibrate" not in extra:
            calibrated(log_path)
        before = count_rows(data_dir)
        start = threading.Barrier(visitors + 1)
        visits: list[Visit | None] = [None] * visitors

        def worker(n: int) -> None:
            try:
                visits[n] = visit(url, api, n, start)
            except threading.BrokenBarrierError:
                visits[n] = Visit(visitor=n, prompt=PROMPTS[n % len(PROMPTS)], error="never started")

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(visitors)]
        for thread in threads:
            thread.start()
        start.wait(timeout=120)  # every client has its session: go
        client_cpu, app_cpu = client_cpu_seconds(), cpu_seconds(process.pid)
        for thread in threads:
            thread.join()
        client_cpu = client_cpu_seconds() - client_cpu
        app_end = cpu_seconds(process.pid)
        after = count_rows(data_dir)
        done = [v for v in visits if v is not None]
        stamps = [v.finished for v in done if v.finished is not None]
        first = min((v.submitted for v in done if v.submitted), default=0.0)
        wall = (max(stamps) - first) if stamps else 0.0
        concurrent = re.search(
            r"comparisons generated at once: (?:at most )?(\d+)", log_path.read_text(errors="replace")
        )
        max_concurrent = concurrent.group(1) if concurrent else default_concurrency(app_dir, extra)
        return Round(
            visitors=visitors,
            visits=done,
            wall_s=wall,
            stored_ratings=after["ratings"] - before["ratings"],
            stored_comparisons=after["comparisons"] - before["comparisons"],
            answer_tokens=after["tokens"] - before["tokens"],
            client_cpu_s=client_cpu,
            app_cpu_s=(app_end - app_cpu) if app_end is not None and app_cpu is not None else None,
            max_concurrent=max_concurrent,
        )
    finally:
        stop_app(process)
        shutil.rmtree(workdir, ignore_errors=True)


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def summary(r: Round) -> dict[str, str]:
    completed = [v for v in r.visits if v.completed]
    ttft = [v.first_text - v.submitted for v in r.visits if v.first_text is not None]
    last = [v.finished - v.submitted for v in completed if v.finished is not None]
    per_minute = 60 * len(completed) / r.wall_s if r.wall_s > 0 else 0.0
    slowest = [v.slowest_pane for v in completed if v.slowest_pane is not None]
    off = [v.estimate_off_s for v in r.visits if v.estimate_off_s is not None]
    halfway = [abs(v.halfway_off_s) for v in r.visits if v.halfway_off_s is not None]
    return {
        "visitors": str(r.visitors),
        "max concurrent": r.max_concurrent,
        "completed": f"{len(completed)}/{r.visitors}",
        "wall s": f"{r.wall_s:.1f}",
        "comparisons/min": f"{per_minute:.1f}",
        "answer tokens": str(r.answer_tokens),
        "tok/s": f"{r.answer_tokens / r.wall_s:.1f}" if r.wall_s > 0 else "-",
        "first text p50 s": fmt(percentile(ttft, 0.5)),
        "first text p95 s": fmt(percentile(ttft, 0.95)),
        "last answer p50 s": fmt(percentile(last, 0.5)),
        "last answer p95 s": fmt(percentile(last, 0.95)),
        "slowest pane tok/s p50": fmt(percentile(slowest, 0.5)),
        "slowest pane tok/s min": fmt(min(slowest, default=None)),
        "waited": str(len(off)),
        "estimate off p50 s": fmt(percentile([abs(o) for o in off], 0.5)),
        "estimate off p95 s": fmt(percentile([abs(o) for o in off], 0.95)),
        "halfway off p50 s": fmt(percentile(halfway, 0.5)),
        "halfway off p95 s": fmt(percentile(halfway, 0.95)),
        "ratings confirmed": str(sum(v.rated for v in r.visits)),
        "ratings stored": str(r.stored_ratings),
        "comparisons stored": str(r.stored_comparisons),
        "app CPU s": fmt(r.app_cpu_s),
        "client CPU s": fmt(r.client_cpu_s),
    }


def describe(app_dir: Path) -> str:
    """The checkout's commit, and whether its tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(app_dir), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=REPO,
        help="checkout whose app.py is launched, with this venv's python (default: this repo)",
    )
    parser.add_argument("--visitors", default="1,4,16", help="visitor counts, one round each (default 1,4,16)")
    parser.add_argument(
        "--extra-args",
        default="",
        help='more options for app.py, e.g. "--max-concurrent 16"; '
        "options this checkout's app.py lacks are dropped with a note",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("PLAYGROUND_CACHE_DIR", "~/.cache/llm-playground")).expanduser(),
        help="PLAYGROUND_CACHE_DIR shared by every launch (default ~/.cache/llm-playground)",
    )
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one unrated comparison before each round (default on)",
    )
    args = parser.parse_args()
    app_dir = args.app_dir.resolve()
    counts = [int(n) for n in args.visitors.split(",") if n.strip()]
    options = app_options(app_dir)
    extra, dropped = supported_args(shlex.split(args.extra_args), options)
    print(f"app: {app_dir} ({describe(app_dir)}), app.py {' '.join(extra) or '(default options)'}")
    if dropped:
        print(f"  dropped, this app.py has no such option: {' '.join(dropped)}")
    if "--max-new-tokens" not in options:
        print("  app.py has no --max-new-tokens: every contender answers with its own preset")
    rows = []
    for visitors in counts:
        result = run_round(visitors, app_dir, args.cache_dir, extra, args.warmup)
        row = summary(result)
        rows.append(row)
        print(
            f"\n{visitors} visitor(s): {row['completed']} completed in {row['wall s']} s -> "
            f"{row['comparisons/min']} comparisons/min, {row['answer tokens']} answer tokens, {row['tok/s']} tok/s "
            f"(comparisons generated at once: {row['max concurrent']})"
        )
        print(
            f"  first text p50 {row['first text p50 s']} s, p95 {row['first text p95 s']} s; "
            f"last answer p50 {row['last answer p50 s']} s, p95 {row['last answer p95 s']} s"
        )
        print(
            f"  slowest pane tok/s p50 {row['slowest pane tok/s p50']}, min {row['slowest pane tok/s min']}; "
            f"{row['waited']} waited in line with an estimate, off by p50 {row['estimate off p50 s']} s, "
            f"p95 {row['estimate off p95 s']} s; halfway through the wait off by p50 {row['halfway off p50 s']} s, "
            f"p95 {row['halfway off p95 s']} s"
        )
        print(
            f"  ratings confirmed by /rate {row['ratings confirmed']}, rows in ratings {row['ratings stored']}, "
            f"rows in comparisons {row['comparisons stored']}; CPU s: app {row['app CPU s']}, "
            f"this client {row['client CPU s']}"
        )
        for v in result.visits:
            ttft = fmt(None if v.first_text is None else v.first_text - v.submitted)
            last = fmt(None if v.finished is None else v.finished - v.submitted)
            state = v.error or (f"{v.pane_errors} pane(s) failed; " if v.pane_errors else "") + (
                "rated" if v.rated else f"rating not confirmed: {v.rating_message}"
            )
            print(
                f"    visitor {v.visitor:2d} {v.prompt[:40]!r:44} first text {ttft:>6} s, last answer {last:>6} s, "
                f"{state}"
            )
            for letter, stats in zip("ABCDEFGH", v.pane_stats):
                print(f"      {letter}: {stats}")
    print(f"\n{app_dir.name} ({describe(app_dir)}), {' '.join(extra) or 'default options'}\n")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
