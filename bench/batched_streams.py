"""Streams decoded together by an engine against one plain `generate`, in the same process.

    python bench/batched_streams.py                       # continuous batching, 1 3 8 16 streams
    python bench/batched_streams.py --engine loop         # our batched loop (as split weights get)
    python bench/batched_streams.py --cache-tokens 4096 --batch-tokens 128 --streams 1 3

Every stream gets the same number of new tokens (EOS ignored), so the ratios compare equal work.
Prints, per stream count: wall time, its ratio to one `generate`, tokens/s together and the ratio of
that to one `generate`'s tokens/s, and the mean time to first token.
"""

from __future__ import annotations

import argparse
import os
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


def run_streams(engine, prompts: list[list[int]], tokens: int) -> tuple[float, list[float]]:
    """Wall seconds for all streams together, and each stream's time to first token."""
    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=tokens)
    firsts: list[float] = []
    started = time.perf_counter()

    def one(ids):
        request = StreamRequest(
            prompt_ids=ids, params=params, seed=0, stop=threading.Event(), max_new_tokens=tokens, eos=frozenset()
        )
        first = None
        for event in engine.generate(request):
            if first is None and not isinstance(event, Finished):
                first = time.perf_counter() - started
            if isinstance(event, Finished):
                assert event.reason == "length", event
        firsts.append(first)

    threads = [threading.Thread(target=one, args=(ids,)) for ids in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, firsts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["continuous", "loop"], default="continuous")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 3, 8, 16])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--cache-tokens", type=int, default=8192)
    parser.add_argument("--batch-tokens", type=int, default=256)
    parser.add_argument(
        "--compile-level", type=int, default=0, help="continuous batching's default_compile_level (0: eager)"
    )
    args = parser.parse_args()

    lineup = get_lineup("demo")
    loaded = next(iter(load_lineup(lineup, LoadOptions(device_map="cpu"), log=lambda m: None).values()))
    model, tokenizer = loaded.model, loaded.tokenizer
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for p in PROMPTS
    ]
    with torch.inference_mode():  # baseline: one plain generate, EOS ignored
        model.generate(torch.tensor([prompts[0]]), max_new_tokens=4, do_sample=False)  # warm-up
        started = time.perf_counter()
        model.generate(
            torch.tensor([prompts[0]]), max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False
        )
        base = time.perf_counter() - started
    base_rate = args.tokens / base
    print(
        f"torch {torch.__version__}, {model.dtype}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
        f"engine {args.engine}; {args.tokens} tokens a stream"
    )
    print(f"one plain generate: {base:.2f} s, {base_rate:.1f} tok/s")
    if args.engine == "loop":
        engine = BatchedLoop(model, loaded.input_device)
    else:
        built = time.perf_counter()
        engine = ContinuousEngine(
            model, cache_tokens=args.cache_tokens, max_batch_tokens=args.batch_tokens, compile_level=args.compile_level
        )
        run_streams(engine, prompts[:1], 4)  # warm-up (compiles, when asked to)
        print(f"engine ready in {time.perf_counter() - built:.1f} s (compile level {args.compile_level})")
    run_streams(engine, prompts[:1], 4)  # warm-up
    print("streams  wall s  x generate  tok/s together  x generate tok/s  mean first token s")
    for n in args.streams:
        wall, firsts = run_streams(engine, [prompts[i % len(prompts)] for i in range(n)], args.tokens)
        rate = n * args.tokens / wall
        print(
            f"{n:7d}  {wall:6.2f}  {wall / base:10.2f}  {rate:14.1f}  {rate / base_rate:16.2f}  "
            f"{sum(firsts) / len(firsts):18.3f}"
        )
    if hasattr(engine, "close"):
        engine.close()


if __name__ == "__main__":
    main()
