"""Streaming detokenization: microseconds per token, Rust `DecodeStream` against the Python window.

  .venv/bin/python bench/detokenize.py [--tokens 2000] [--rounds 7]

One answer of `--tokens` ids (English, code, accents, CJK, emoji) pushed one id at a time through
`models.local._TextStream`: once as a fast tokenizer takes it (tokenizers' DecodeStream), once as a slow
tokenizer takes it (two `decode` calls of a short window per id, the algorithm used before DecodeStream).
Both on the embedded SmolLM2 vocabulary, and on Llama 2's when ../shared/fixtures has it. Median of rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from transformers import AutoTokenizer  # noqa: E402

from models.embedded import gguf_path  # noqa: E402
from models.local import _TextStream  # noqa: E402

LLAMA_VOCAB = REPO.parent / "shared" / "fixtures" / "llama-spm-vocab"
SAMPLE = (
    "Paris is the capital of France. Ünïcödé: café, naïve, Zürich. 東京は日本の首都です。 🙂👍🏽\n"
    "```python\ndef add(a: int, b: int) -> int:\n    return a + b  # → ≥\n```\n\n- one\n- two\n"
)


class DecodeOnly:
    """A tokenizer seen as a slow one: `decode` and nothing else, so `_TextStream` takes its window path."""

    def __init__(self, tokenizer) -> None:
        self.decode = tokenizer.decode


def microseconds_per_token(tokenizer, ids: list[int], rounds: int) -> tuple[float, str]:
    times, text = [], ""
    for _ in range(rounds):
        stream = _TextStream(tokenizer)
        started = time.perf_counter()
        text = "".join(stream.push(token_id) for token_id in ids) + stream.finish()
        times.append((time.perf_counter() - started) / len(ids) * 1e6)
    return statistics.median(times), text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    vocabularies = {"SmolLM2 (byte-level BPE)": (gguf_path().parent, gguf_path().name)}
    if (LLAMA_VOCAB / "ggml-vocab-llama-spm.gguf").is_file():
        vocabularies["Llama 2 (SentencePiece, byte fallback)"] = (LLAMA_VOCAB, "ggml-vocab-llama-spm.gguf")
    print(f"{args.tokens} tokens, median of {args.rounds} rounds, microseconds per token")
    for name, (folder, gguf) in vocabularies.items():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        ids = (tokenizer.encode(SAMPLE, add_special_tokens=False) * args.tokens)[: args.tokens]
        expected = tokenizer.decode(ids, skip_special_tokens=True)
        rust, rust_text = microseconds_per_token(tokenizer, ids, args.rounds)
        window, window_text = microseconds_per_token(DecodeOnly(tokenizer), ids, args.rounds)
        assert rust_text == expected and window_text == expected, name
        print(f"{name}: DecodeStream {rust:.1f} µs, Python window {window:.1f} µs ({window / rust:.1f}x)")


if __name__ == "__main__":
    main()
