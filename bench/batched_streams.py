"""Streams decoded together by each engine against one plain `generate`, in the same process.

    python bench/batched_streams.py                          # both engines, 1 3 8 streams, 3 repeats
    python bench/batched_streams.py --engines loop --streams 1 3 8 16 --dtype float32
    python bench/batched_streams.py --repeats 5 --tokens 96 --cache-tokens 4096 --batch-tokens 128

Every stream gets the same number of new tokens (EOS ignored), so the ratios compare equal work. On a
shared machine one run says little: each round runs one `generate` and then every engine at every
stream count, in turn, so a slow minute slows the baseline and what it is compared to alike. Each
line gives the median of the rounds and its spread (lowest-highest), and the baseline's own spread is
printed first. `--dtype float32` is where every engine's greedy tokens equal `generate`'s; in bfloat16
batched rows round differently, so answers may part from `generate` after some tokens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models.engines import BatchedLoop, ContinuousEngine, Finished, StreamRequest  # noqa: E402
from models.lineups import get_lineup  # noqa: E402
from models.loading import LoadOptions, load_lineup  # noqa: E402
from models.specs import GenerationParams  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn rain.",
    "Give me three tips for a good night's sleep.",
]


def run_streams(engine, prompts: list[list[int]], tokens: int) -> tuple[float, list[float], list[list[int]]]:
    """Wall seconds for all streams together, each stream's time to first token, and its tokens."""
    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=tokens)
    firsts: list[float] = [0.0] * len(prompts)
    outputs: list[list[int]] = [[] for _ in prompts]
    started = time.perf_counter()

    def one(index: int, ids: list[int]) -> None:
        request = StreamRequest(
            prompt_ids=ids, params=params, seed=0, stop=threading.Event(), max_new_tokens=tokens, eos=frozenset()
        )
        for event in engine.generate(request):
            if isinstance(event, Finished):
                assert event.reason == "length", event
            else:
                if not outputs[index]:
                    firsts[index] = time.perf_counter() - started
                outputs[index].append(event)

    threads = [threading.Thread(target=one, args=(i, ids)) for i, ids in enumerate(prompts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, firsts, outputs


def run_generate(model, ids: list[int], tokens: int) -> tuple[float, list[int]]:
    with torch.inference_mode():
        started = time.perf_counter()
        out = model.generate(torch.tensor([ids]), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        return time.perf_counter() - started, out[0, len(ids) :].tolist()


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def build_engine(name: str, model, device, args: argparse.Namespace):
    if name == "loop":
        return BatchedLoop(model, device, max_batch=max(16, max(args.streams)))
    return ContinuousEngine(
        model, cache_tokens=args.cache_tokens, max_batch_tokens=args.batch_tokens, compile_level=args.compile_level
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", choices=["loop", "continuous"], default=["loop", "continuous"])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each line is their median (default 3)")
    parser.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16"], default="auto", help="auto: bfloat16, as the app on a CPU"
    )
    parser.add_argument("--cache-tokens", type=int, default=8192)
    parser.add_argument("--batch-tokens", type=int, default=256)
    parser.add_argument(
        "--compile-level", type=int, default=0, help="continuous batching's default_compile_level (0: eager)"
    )
    args = parser.parse_args()

    options = LoadOptions(device_map="cpu", dtype=args.dtype)
    loaded = next(iter(load_lineup(get_lineup("demo"), options, log=lambda m: None).values()))
    model, tokenizer = loaded.model, loaded.tokenizer
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for p in PROMPTS
    ]
    print(
        f"torch {torch.__version__}, {model.dtype}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
        f"{args.tokens} tokens a stream, {args.repeats} rounds"
    )
    engines = {}
    try:
        for name in args.engines:
            built = time.perf_counter()
            engines[name] = build_engine(name, model, loaded.input_device, args)
            run_streams(engines[name], prompts[:1], 4)  # warm-up (compiles, when asked to)
            print(f"{name} ready in {time.perf_counter() - built:.1f} s")
        run_generate(model, prompts[0], 4)  # warm-up
        measure(model, engines, prompts, args)
    finally:
        for engine in engines.values():  # before exit: a decode thread stopped inside torch aborts it
            engine.close()


def measure(model, engines: dict, prompts: list[list[int]], args: argparse.Namespace) -> None:
    base_runs: list[float] = []
    rates: dict[tuple[str, int], list[float]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    ttfts: dict[tuple[str, int], list[float]] = {}
    same: dict[str, bool] = {}
    for _ in range(args.repeats):
        base, reference = run_generate(model, prompts[0], args.tokens)
        base_runs.append(base)
        for n in args.streams:
            for name, engine in engines.items():
                wall, firsts, outputs = run_streams(engine, [prompts[i % len(prompts)] for i in range(n)], args.tokens)
                rate = n * args.tokens / wall
                rates.setdefault((name, n), []).append(rate)
                ratios.setdefault((name, n), []).append(rate * base / args.tokens)  # against this round's generate
                ttfts.setdefault((name, n), []).append(statistics.mean(firsts))
                if n == 1:
                    same[name] = same.get(name, True) and outputs[0] == reference
    base_rates = [args.tokens / b for b in base_runs]
    print(
        f"one plain generate: median {statistics.median(base_rates):.1f} tok/s, spread {spread(base_rates)} "
        f"over {len(base_runs)} rounds"
    )
    print(f"greedy tokens at 1 stream equal generate's: {', '.join(f'{k} {v}' for k, v in same.items())}")
    print("engine      streams  tok/s together (spread)  x generate (spread)  mean first token s")
    for n in args.streams:
        for name in engines:
            r, x, t = rates[name, n], ratios[name, n], ttfts[name, n]
            print(
                f"{name:<10}  {n:7d}  {statistics.median(r):7.1f} ({spread(r):>13})  "
                f"{statistics.median(x):5.2f} ({spread(x):>11})  {statistics.median(t):18.3f}"
            )


if __name__ == "__main__":
    main()
