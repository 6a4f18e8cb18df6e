"""feedback_db.scrub: planted personal data caught and missed per kind, ordinary texts changed, MB/s.

  .venv/bin/python bench/scrub.py [--planted 720] [--ordinary 80] [--megabytes 8]

A planted item counts as caught when scrub replaced exactly it, or it and neighbouring characters of the
same token ("mailto:<EMAIL>" would do), with its own kind's placeholder. Planted texts whose other
words changed too are counted apart, and so are ordinary texts scrub changed (false positives).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scrub_samples import Item, Segment, ordinary_texts, planted_texts  # noqa: E402
from feedback_db.scrub import KINDS, scrub  # noqa: E402


def _plain(text: str, after_item: bool, before_item: bool) -> str:
    """Regex for plain text beside items: the item's own token may have lost its edge characters."""
    head = re.match(r"\S*", text).group() if after_item else ""
    tail = re.search(r"\S*$", text).group() if before_item and len(head) < len(text) else ""
    middle = text[len(head) : len(text) - len(tail)]
    heads = "|".join(re.escape(head[i:]) for i in range(len(head) + 1))
    tails = "|".join(re.escape(tail[: len(tail) - i]) for i in range(len(tail) + 1))
    return f"(?:{heads}){re.escape(middle)}(?:{tails})"


def expected(segments: list[Segment], judged: int | None) -> re.Pattern[str]:
    """What scrub should return: item `judged` (every item when None) as its placeholder, others anything."""
    parts = []
    for index, segment in enumerate(segments):
        if isinstance(segment, Item):
            parts.append(re.escape(f"<{segment.kind}>") if judged in (None, index) else "(?s:.*?)")
        else:
            after = index > 0 and isinstance(segments[index - 1], Item)
            before = index + 1 < len(segments) and isinstance(segments[index + 1], Item)
            parts.append(_plain(segment, after, before))
    return re.compile("".join(parts), re.DOTALL)


def measure(planted: list[list[Segment]], ordinary: list[str]) -> dict:
    counts = {kind: Counter() for kind in KINDS}
    misses: dict[str, list[str]] = {kind: [] for kind in KINDS}
    overreach: list[str] = []
    for segments in planted:
        output = scrub("".join(s.value if isinstance(s, Item) else s for s in segments)).text
        for index, segment in enumerate(segments):
            if isinstance(segment, Item):
                caught = expected(segments, index).fullmatch(output) is not None
                counts[segment.kind]["planted"] += 1
                counts[segment.kind]["caught" if caught else "missed"] += 1
                if not caught:
                    misses[segment.kind].append(f"{segment.value!r} -> {output!r}")
        if expected(segments, None).fullmatch(output) is None and all(
            expected(segments, i).fullmatch(output) for i, s in enumerate(segments) if isinstance(s, Item)
        ):
            overreach.append(output)
    changed = [(text, scrub(text)) for text in ordinary]
    false_positives = [f"{text!r} -> {result.text!r}" for text, result in changed if result.changed]
    return {"counts": counts, "misses": misses, "overreach": overreach, "false_positives": false_positives}


def throughput(texts: list[str], megabytes: float) -> float:
    """MB/s of scrub on one large text made of the samples, repeated to `megabytes`."""
    block = "\n\n".join(texts)
    large = block * max(1, int(megabytes * 1e6 / len(block.encode())))
    start = time.perf_counter()
    scrub(large)
    return len(large.encode()) / 1e6 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planted", type=int, default=720, help="planted texts (1-3 items each)")
    parser.add_argument("--ordinary", type=int, default=80, help="generated ordinary texts beside the written ones")
    parser.add_argument("--megabytes", type=float, default=8.0, help="size of the throughput text")
    args = parser.parse_args()
    planted, ordinary = planted_texts(args.planted), ordinary_texts(args.ordinary)
    result = measure(planted, ordinary)
    print(f"{'kind':<12} {'planted':>7} {'caught':>7} {'missed':>7}")
    for kind, count in result["counts"].items():
        print(f"{kind:<12} {count['planted']:>7} {count['caught']:>7} {count['missed']:>7}")
    for kind, examples in result["misses"].items():
        for example in examples[:5]:
            print(f"  missed {kind}: {example}")
    print(f"planted texts with other words changed: {len(result['overreach'])} of {len(planted)}")
    for example in result["overreach"][:5]:
        print(f"  {example!r}")
    print(f"ordinary texts changed (false positives): {len(result['false_positives'])} of {len(ordinary)}")
    for example in result["false_positives"][:10]:
        print(f"  {example}")
    planted_text = ["".join(s.value if isinstance(s, Item) else s for s in t) for t in planted]
    ordinary_rate, planted_rate = throughput(ordinary, args.megabytes), throughput(planted_text, args.megabytes)
    print(
        f"throughput ({args.megabytes:g} MB each): {ordinary_rate:.2f} MB/s ordinary, {planted_rate:.2f} MB/s planted"
    )


if __name__ == "__main__":
    main()
