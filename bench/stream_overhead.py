"""Decode speed of one contender through the playground against plain `model.generate`.

Same weights, same prompt, greedy, fixed token count, alternating runs in one process:
  python bench/stream_overhead.py [--tokens 128] [--rounds 3] [--dtype bfloat16] [--threads N]
Paths: `generate` in the main thread (the baseline a script sees), `generate` in a worker thread (what
any web handler gets), `generate` + TextIteratorStreamer, our decode loop in the main thread, and the
whole comparison core (worker thread per pane, pane snapshots, SQLite writes) with this contender and
an instant second one. Prints tokens/s, the ratio to the baseline, and the time to first token.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import TextIteratorStreamer  # noqa: E402

from models.lineups import get_lineup  # noqa: E402
from models.loading import LoadOptions, load_weights  # noqa: E402
from models.local import LocalStreamer, stream_tokens  # noqa: E402
from models.specs import GenerationParams  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def plain_generate(loaded, ids, tokens):
    """Baseline: `generate` with no streamer."""
    started = time.perf_counter()
    out = loaded.model.generate(torch.tensor([ids]), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return out.shape[1] - len(ids), time.perf_counter() - started, None


def textiterator_generate(loaded, ids, tokens):
    """What most Spaces do: generate in a thread with a TextIteratorStreamer."""
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True)
    started, first = time.perf_counter(), None
    kwargs = dict(
        input_ids=torch.tensor([ids]), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, streamer=streamer
    )
    thread = threading.Thread(target=loaded.model.generate, kwargs=kwargs)
    thread.start()
    for _ in streamer:
        first = first or time.perf_counter() - started
    thread.join()
    return tokens, time.perf_counter() - started, first


def playground_stream(loaded, ids, tokens):
    """Our decode loop, called directly in the main thread."""
    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=tokens)
    with _no_eos(loaded):
        started, result = time.perf_counter(), None
        for event in stream_tokens(loaded, ids, params, stop=threading.Event(), seed=0, context_length=8192):
            if not isinstance(event, str):
                result = event
    return result.completion_tokens, time.perf_counter() - started, result.time_to_first_token_s


def threaded_generate(loaded, ids, tokens):
    """`generate` in a worker thread, as any web handler runs it."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(r=plain_generate(loaded, ids, tokens)))
    thread.start()
    thread.join()
    return box["r"]


def through_core(loaded, ids, tokens, local):
    """The comparison core as the app runs it: LocalStreamer and its engine (built once, as in the app),
    a pane thread per contender, snapshots, SQLite writes; the second contender answers instantly."""
    import tempfile

    from feedback_db import open_database, sqlite_url
    from models.local import GenerationResult, PromptReady
    from models.specs import ContenderSpec, LineupSpec
    from playground.comparison import Playground

    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=tokens)
    real = ContenderSpec(name="real", weights=loaded.spec, params=params)
    instant = ContenderSpec(name="instant", weights=loaded.spec, params=params)

    def streamer(contender, messages, params, *, stop, seed):
        if contender.name == "real":
            yield from local(contender, messages, params, stop=stop, seed=seed)
            return
        yield PromptReady("", 1)
        yield GenerationResult("ok", "stop", 1, 1, 0.0, 0.0, seed)

    with tempfile.TemporaryDirectory() as folder, _no_eos(loaded):
        core = Playground(
            LineupSpec(name="bench", contenders=(real, instant)),
            streamer,
            open_database(sqlite_url(Path(folder) / "bench.sqlite3")),
        )
        session = core.new_conversation()
        started = time.perf_counter()
        for _ in core.ask(session, PROMPT[0]["content"]):
            pass
        seconds = time.perf_counter() - started
        result = next(p.result for p in session.panes if p.contender.name == "real")
        core.database.dispose()
    assert result.prompt_tokens == len(ids)
    return result.completion_tokens, seconds, result.time_to_first_token_s


@contextmanager
def _no_eos(loaded):
    """Ignore end-of-sequence so every path produces exactly the asked number of tokens."""
    eos, saved = loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id
    loaded.model.generation_config.eos_token_id = loaded.tokenizer.eos_token_id = None
    try:
        yield
    finally:
        loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id = eos, saved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    contender = get_lineup("demo").contenders[0]
    loaded = load_weights(contender.weights, LoadOptions(dtype=args.dtype, device_map="cpu"), lambda m: None)
    local = LocalStreamer({contender.weights: loaded})  # as the app: one engine, built at start
    ids = list(local.render(contender, PROMPT).input_ids)
    # The comparison core runs first, as in the app, before any other thread has decoded.
    paths = {
        "comparison core": partial(through_core, local=local),
        "generate": plain_generate,
        "decode loop": playground_stream,
        "generate in a thread": threaded_generate,
        "TextIteratorStreamer": textiterator_generate,
    }
    speeds: dict[str, list[float]] = {name: [] for name in paths}
    ttfts: dict[str, list[float]] = {name: [] for name in paths}
    for name, fn in paths.items():
        fn(loaded, ids, args.tokens)  # warm-up over every sequence length the runs will see
        for _ in range(args.rounds):
            count, seconds, first = fn(loaded, ids, args.tokens)
            speeds[name].append(count / seconds)
            if first is not None:
                ttfts[name].append(first)
    base = statistics.median(speeds["generate"])
    paths = {name: paths[name] for name in ["generate", *[n for n in paths if n != "generate"]]}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {args.dtype}, "
        f"prompt {len(ids)} tokens, {args.tokens} new tokens, median of {args.rounds}"
    )
    for name in paths:
        speed = statistics.median(speeds[name])
        ttft = f", first token {statistics.median(ttfts[name]) * 1000:.0f} ms" if ttfts[name] else ""
        print(f"{name:>22}: {speed:6.1f} tok/s  ({speed / base:.3f} of generate){ttft}")
    local.close()


if __name__ == "__main__":
    main()
