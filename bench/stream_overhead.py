"""Decode speed of one contender through the playground against plain `model.generate`.

Same weights, same prompt, greedy, fixed token count, alternating runs in one process:
  python bench/stream_overhead.py [--tokens 128] [--rounds 3] [--dtype bfloat16]
Prints tokens/s for each path and the ratio to `generate`, plus the time to first token added.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import TextIteratorStreamer  # noqa: E402

from models.generation import LocalStreamer, stream_tokens  # noqa: E402
from models.loading import LoadOptions, load_weights  # noqa: E402
from models.registry import get_lineup  # noqa: E402
from models.specs import GenerationParams  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def plain_generate(loaded, ids, tokens):
    """Baseline: `generate` with no streamer."""
    started = time.perf_counter()
    out = loaded.model.generate(torch.tensor([ids]), max_new_tokens=tokens, min_new_tokens=tokens,
                                do_sample=False)
    return out.shape[1] - len(ids), time.perf_counter() - started, None


def textiterator_generate(loaded, ids, tokens):
    """What most Spaces do: generate in a thread with a TextIteratorStreamer."""
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True)
    started, first = time.perf_counter(), None
    kwargs = dict(input_ids=torch.tensor([ids]), max_new_tokens=tokens, min_new_tokens=tokens,
                  do_sample=False, streamer=streamer)
    thread = threading.Thread(target=loaded.model.generate, kwargs=kwargs)
    thread.start()
    for _ in streamer:
        first = first or time.perf_counter() - started
    thread.join()
    return tokens, time.perf_counter() - started, first


def playground_stream(loaded, ids, tokens):
    """Ours: the decode loop the comparison core runs (ignoring EOS so the count is fixed)."""
    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=tokens)
    eos = loaded.model.generation_config.eos_token_id
    loaded.model.generation_config.eos_token_id, saved_tok = None, loaded.tokenizer.eos_token_id
    loaded.tokenizer.eos_token_id = None
    try:
        started, first, result = time.perf_counter(), None, None
        for event in stream_tokens(loaded, ids, params, stop=threading.Event(), seed=0, context_length=8192):
            if isinstance(event, str):
                first = first or time.perf_counter() - started
            else:
                result = event
    finally:
        loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id = eos, saved_tok
    return result.completion_tokens, time.perf_counter() - started, result.time_to_first_token_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    contender = get_lineup("demo").contenders[0]
    loaded = load_weights(contender.weights, LoadOptions(dtype=args.dtype, device_map="cpu"), log=lambda m: None)
    ids = list(LocalStreamer({contender.weights: loaded}).render(contender, PROMPT).input_ids)
    paths = {"generate": plain_generate, "TextIteratorStreamer": textiterator_generate,
             "playground": playground_stream}
    for fn in paths.values():  # warm-up
        fn(loaded, ids, 8)
    speeds: dict[str, list[float]] = {name: [] for name in paths}
    ttfts: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            count, seconds, first = fn(loaded, ids, args.tokens)
            speeds[name].append(count / seconds)
            if first is not None:
                ttfts[name].append(first)
    base = statistics.median(speeds["generate"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {args.dtype}, "
          f"prompt {len(ids)} tokens, {args.tokens} new tokens, median of {args.rounds}")
    for name in paths:
        speed = statistics.median(speeds[name])
        ttft = f", first token {statistics.median(ttfts[name]) * 1000:.0f} ms" if ttfts[name] else ""
        print(f"{name:>22}: {speed:6.1f} tok/s  ({speed / base:.3f} of generate){ttft}")


if __name__ == "__main__":
    main()
