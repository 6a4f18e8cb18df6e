"""A release of a campaign's database, checked end to end: the issue's "done when", with timings.

  .venv/bin/python bench/release.py [--comparisons 300]

Seeds a SQLite file with N comparisons of two answers, rated by four invited raters (one votes too fast,
so the rules set it aside), with personal data planted in a third of the prompts and answers
(bench/scrub_samples.py), writes a release with --scrub, deletes five ratings as visitors would, writes a
second release with --previous, and checks: the card parses (huggingface_hub.DatasetCard), every config
loads with `datasets` and its rows equal the card's count, no planted item survives, each deleted rating
is absent and listed as withdrawn. Prints the time each release took. Numbers: bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scrub_samples import Item, planted_texts  # noqa: E402

from feedback_db import open_database, sqlite_url  # noqa: E402
from feedback_db.cli import main as feedback_db  # noqa: E402
from feedback_db.raters import invite  # noqa: E402
from feedback_db.rules import Rules, apply_rules  # noqa: E402
from feedback_db.schema import Rating  # noqa: E402
from tests.databases import rate, store_comparison  # noqa: E402


def seed(path: Path, comparisons: int) -> tuple[str, list[str], list[str]]:
    """The database; returns its URL, every rating id, and the planted items' texts."""
    rng, texts = random.Random(7), planted_texts(comparisons)
    url = sqlite_url(path)
    database = open_database(url)
    with database.session() as session:
        raters = [invite(session, f"Rater {n}")[0].id for n in range(4)]
        apply_rules(session, Rules(min_seconds_to_vote=1.0))
    ratings, planted = [], []
    for n in range(comparisons):
        answer = {"x": f"Answer {n}: the sky is blue.", "y": f"Answer {n}: because of Rayleigh scattering."}
        prompt = f"Question {n}: why is the sky blue?"
        if n % 3 == 0:  # a third carry personal data, in the prompt or an answer
            segments = texts[n]
            text = "".join(s.value if isinstance(s, Item) else s for s in segments)
            planted += [s.value for s in segments if isinstance(s, Item)]
            if n % 2:
                prompt = text
            else:
                answer["y"] = text
        comparison = store_comparison(
            database, ["x", "y"], texts=answer, messages=[{"role": "user", "content": prompt}]
        )
        for k, rater in enumerate(raters):
            ratings.append(
                rate(
                    database,
                    comparison,
                    choice=rng.choice("ab"),
                    strength="better",
                    rater=rater,
                    blind=True,
                    seconds_to_vote=0.3 if k == 3 else rng.uniform(2, 30),
                )
            )
    database.dispose()
    return url, ratings, planted


def released(url: str, folder: Path, *extra: str) -> float:
    started = time.perf_counter()
    out, err = io.StringIO(), io.StringIO()
    code = feedback_db(
        ["release", "--db-url", url, "--output", str(folder), "--license", "cc-by-4.0", "--scrub", *extra], out, err
    )
    if code:
        sys.exit(err.getvalue())
    return time.perf_counter() - started


def check(folder: Path, planted: list[str]) -> dict[str, int]:
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(folder / "README.md")
    rows = {}
    for config in (c["config_name"] for c in card.data.configs):
        count = len(load_dataset(str(folder), config, split="train"))
        said = re.search(rf"\| `{config}` \| (\d+) \|", card.text)
        assert said and int(said.group(1)) == count, config
        rows[config] = count
    everything = card.text + "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*.parquet"))
    survived = [item for item in planted if item in everything]
    assert not survived, survived[:5]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comparisons", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-release-"))
    os.environ.setdefault("HF_HOME", str(work / "hf"))
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    started = time.perf_counter()
    url, ratings, planted = seed(work / "feedback.sqlite3", args.comparisons)
    print(
        f"seeded {args.comparisons} comparisons, {len(ratings)} ratings, {len(planted)} planted items in "
        f"{time.perf_counter() - started:.0f} s"
    )
    first_s = released(url, work / "first")
    rows = check(work / "first", planted)
    print(f"first release: {first_s:.1f} s; rows {rows}; no planted item survived --scrub")
    # Five ratings of the first release deleted, as raters deleting theirs through "Your data" would.
    first = sorted(json.loads((work / "first" / "manifest.json").read_text())["ratings"])
    deleted = random.Random(3).sample(first, 5)
    database = open_database(url)
    with database.session() as session:
        for rating_id in deleted:
            session.delete(session.get(Rating, rating_id))
    database.dispose()
    second_s = released(url, work / "second", "--previous", str(work / "first"))
    check(work / "second", planted)
    changes = json.loads((work / "second" / "manifest.json").read_text())["since_previous"]
    kept = set(json.loads((work / "second" / "manifest.json").read_text())["ratings"])
    withdrawn = [r for r in deleted if r in changes["withdrawn_ratings"] and r not in kept]
    assert len(withdrawn) == len(deleted)
    print(
        f"second release (--previous): {second_s:.1f} s; {len(changes['withdrawn_ratings'])} ratings withdrawn, "
        f"all {len(deleted)} deleted ones among them and absent"
    )


if __name__ == "__main__":
    main()
