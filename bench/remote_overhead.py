"""What the app adds to a contender on a server: the same requests through the page and straight to the server.

  .venv/bin/python bench/remote_overhead.py [--comparisons 8] [--max-new-tokens 128] [--visitors 4]

Starts `transformers serve` on the embedded model's converted folder (CPU, float32) and app.py with a
lineup of two contenders on it: "served" (greedy, --max-new-tokens) and "probe" (one token, so that
the pair is a real comparison while the served answer is what is measured; it answers from a stub
server on loopback, so that the one request `transformers serve` gets per comparison is the one
measured). For each prompt, in turn:
- through the app: the page's protocol read as a browser does (queue/join, then the event stream as
  bytes arrive), and gradio_client (which reads its queue every 50 ms);
- straight to the server: the same request with the openai client.
Per run of the served answer: time to first text from the submit (or the request), and tokens/s from
the first text to the last (the server's usage gives the token count). Then `--visitors` at once,
each doing the same, against as many direct pairs at once. The server decodes one request at a time,
so both sides queue alike.

On a small machine the server and the app share the cores, so what the page costs in CPU slows the
server's decoding too; `--split-cores` puts the server on the first core and the app and clients on
the rest, as when the server has a machine of its own (the deployment this is for).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from concurrent_visitors import PROMPTS, REPO, percentile, start_app, stop_app  # noqa: E402

from tests.servers import Server, free_port  # noqa: E402  (the test suite's server launcher)

POLL_S = 0.001


@dataclass(frozen=True)
class Run:
    """One served answer as a client saw it: seconds to first text, to last text, and its token count."""

    first_s: float
    last_s: float
    tokens: int

    @property
    def tokens_per_s(self) -> float | None:
        span = self.last_s - self.first_s
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else None


def lineup_toml(base_url: str, model: str, max_new_tokens: int, probe_url: str) -> str:
    contender = """[[contenders]]
name = "{name}"
preset = "precise"
params = {{ max_new_tokens = {tokens} }}
[contenders.endpoint]
base_url = "{url}"
model = "{model}"
"""
    return (
        'name = "remote-overhead"\n\n'
        + contender.format(name="served", tokens=max_new_tokens, url=base_url, model=model)
        + "\n"
        + contender.format(name="probe", tokens=1, url=probe_url, model="hello")
    )


def body(model: str, prompt: str, max_tokens: int) -> dict:
    """The request the app sends for the precise preset (repetition penalty is not an OpenAI field)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def direct(client, model: str, prompt: str, max_tokens: int) -> Run:
    """The served request straight to the server, and its timings."""
    started = time.perf_counter()
    first = last = None
    tokens = chunks = 0
    for chunk in client.chat.completions.create(**body(model, prompt, max_tokens)):
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter() - started
            first = first if first is not None else last
            chunks += 1
    return Run(first, last, tokens or chunks)


def through_page(urls: tuple[str, int], prompt: str, tokens_of: callable) -> Run:
    """One comparison over the page's own protocol, read as bytes arrive."""
    import httpx

    from tests.raw_api import join, messages, snapshots

    url, fn_index = urls
    session, first, last, text, where = uuid.uuid4().hex, None, None, "", []
    with httpx.Client(timeout=None) as http:
        started = time.perf_counter()
        join(http, url, fn_index, [prompt, "", ""], session).raise_for_status()
        for message, state in snapshots(messages(http, url, session)):
            if message.get("msg") != "process_generating":
                continue
            now, served = time.perf_counter() - started, served_text(state, where)
            if served and served != text:
                first = first if first is not None else now
                last, text = now, served
    return Run(first, last, tokens_of(text))


def through_client(url: str, prompt: str, tokens_of: callable) -> Run:
    """One comparison through gradio_client, whose job outputs are read every millisecond."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    started = time.perf_counter()
    job = client.submit(prompt, "", "", api_name="/ask")
    first = last = None
    text, seen, where = "", 0, []
    while not job.done() or seen < len(job.outputs()):
        outputs = job.outputs()
        for output in outputs[seen:]:
            served = served_text(output, where)
            if served and served != text:
                now = time.perf_counter() - started
                first = first if first is not None else now
                last, text = now, served
        seen = len(outputs)
        time.sleep(POLL_S)
    job.result()
    return Run(first, last, tokens_of(text))


def served_text(output, where: list[int]) -> str:
    """The "served" pane's answer in one /ask output.

    Its label names the contender (named mode) only where the pane's properties are sent; later
    snapshots carry the value alone, so the position found first is kept in `where`.
    """
    panes = list(output)[:2]
    for n, pane in enumerate(panes):
        if isinstance(pane, dict) and "label" in pane:
            if str(pane["label"]).endswith("served"):
                where[:] = [n]
    if not where:
        return ""
    pane = panes[where[0]]
    messages = pane.get("value") if isinstance(pane, dict) else pane
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        content = messages[-1]["content"]
        return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    return ""


def stored_tokens(data_dir: Path) -> dict[str, int]:
    """Completion tokens of each stored "served" answer, by its text (greedy: a prompt's text repeats)."""
    db = sqlite3.connect(f"file:{data_dir / 'feedback.sqlite3'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT text, completion_tokens FROM responses WHERE contender = 'served'"))
    finally:
        db.close()


def at_once(count: int, work) -> list[Run]:
    runs: list[Run] = []
    lock, barrier = threading.Lock(), threading.Barrier(count)

    def one(n: int) -> None:
        barrier.wait()
        run = work(n)
        with lock:
            runs.append(run)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs


def report(name: str, runs: list[Run], baseline: list[Run]) -> None:
    ttft = [r.first_s * 1000 for r in runs]
    base_ttft = [r.first_s * 1000 for r in baseline]
    speed = [r.tokens_per_s for r in runs if r.tokens_per_s]
    base_speed = [r.tokens_per_s for r in baseline if r.tokens_per_s]
    added = statistics.median(ttft) - statistics.median(base_ttft)
    print(
        f"| {name} | {len(runs)} | {statistics.median(ttft):.0f} / {percentile(ttft, 0.95):.0f} | "
        f"{statistics.median(base_ttft):.0f} / {percentile(base_ttft, 0.95):.0f} | {added:+.0f} | "
        f"{statistics.mean(speed):.1f} | {statistics.mean(base_speed):.1f} | "
        f"{statistics.mean(speed) / statistics.mean(base_speed):.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comparisons", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--visitors", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "llm-playground")
    parser.add_argument("--extra-args", default="", help="more app.py options")
    parser.add_argument(
        "--split-cores", action="store_true", help="the server on the first core, the app and the clients on the others"
    )
    args = parser.parse_args()
    import os

    cores = sorted(os.sched_getaffinity(0))
    server_prefix: list[str] = []
    if args.split_cores:
        if len(cores) < 2:
            raise SystemExit("--split-cores needs at least two cores")
        server_prefix = ["taskset", "-c", str(cores[0])]
        os.sched_setaffinity(0, cores[1:])  # the app inherits this; the server gets the first core
    import openai
    from transformers import __version__ as transformers_version

    folder = args.cache_dir / "SmolLM2-135M-Instruct"
    if not (folder / "model.safetensors").is_file():
        raise SystemExit(f"{folder} is missing: run `make run` once (it converts the embedded model)")
    workdir = Path(tempfile.mkdtemp(prefix="remote-overhead-"))
    port = free_port()
    server = Server(
        [
            *server_prefix,
            str(Path(sys.executable).parent / "transformers"),
            "serve",
            folder.name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ],
        port,
        workdir / "serve.log",
        cwd=folder.parent,
    )
    model = folder.name
    lineup = workdir / "lineup.toml"
    from tests.stub_openai import StubServer

    probe_server = StubServer()
    lineup.write_text(lineup_toml(server.base_url, model, args.max_new_tokens, probe_server.base_url))
    app = None
    try:
        app, url = start_app(
            REPO,
            workdir / "data",
            args.cache_dir,
            ["--lineup-file", str(lineup), *shlex.split(args.extra_args)],
            workdir / "app.log",
        )
        from gradio_client import Client

        probe_client = Client(url, verbose=False)
        urls = (url, probe_client._infer_fn_index("/ask", None))
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        counts: dict[str, int] = {}

        def tokens_of(text: str) -> int:
            if text not in counts:
                counts.update(stored_tokens(workdir / "data"))
            return counts.get(text, 0)

        # Warm-up: the first forward passes of each shape are slow.
        direct(client, model, "Hello!", 8)
        through_page(urls, "Hello!", tokens_of)
        page, gradio, straight = [], [], []
        for i in range(args.comparisons):  # interleaved, so that drift hits all three alike
            prompt = PROMPTS[i % len(PROMPTS)]
            straight.append(direct(client, model, prompt, args.max_new_tokens))
            page.append(through_page(urls, prompt, tokens_of))
            gradio.append(through_client(url, prompt, tokens_of))
        crowd = at_once(args.visitors, lambda n: through_page(urls, PROMPTS[n % len(PROMPTS)], tokens_of))
        crowd_direct = at_once(
            args.visitors, lambda n: direct(client, model, PROMPTS[n % len(PROMPTS)], args.max_new_tokens)
        )
    finally:
        if app is not None:
            stop_app(app)
        server.stop()
        probe_server.close()
    shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"transformers {transformers_version} serve (CPU, float32) on SmolLM2-135M-Instruct; "
        f"{args.max_new_tokens} new tokens at most, greedy; "
        + (
            f"server on core {cores[0]}, app and clients on {cores[1:]}"
            if args.split_cores
            else f"server, app and clients sharing cores {cores}"
        )
    )
    print(
        "| client | answers | first text ms p50 / p95 | straight to the server ms p50 / p95 | added ms (p50) | "
        "tok/s | straight tok/s | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, runs in (("straight", straight), ("page", page), ("gradio_client", gradio)):
        print(name, " ".join(f"{r.first_s * 1000:.0f}ms/{r.tokens}t/{r.tokens_per_s or 0:.1f}" for r in runs))
    report("event stream (as a browser)", page, straight)
    report("gradio_client", gradio, straight)
    report(f"{args.visitors} visitors at once, event stream", crowd, crowd_direct)


if __name__ == "__main__":
    main()
