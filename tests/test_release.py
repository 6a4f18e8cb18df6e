"""`python -m feedback_db release`: a folder the Hub and `datasets` read, scrubbed, honouring deletions."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feedback_db import open_database, sqlite_url
from feedback_db.cli import main
from feedback_db.raters import invite
from feedback_db.rules import Rules, apply_rules
from feedback_db.schema import Rating
from tests.databases import rate, store_comparison

EMAIL, KEY = "ann.example@mail.example.com", "hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7"


def seeded(path: Path, comparisons: int = 24) -> tuple[str, list[str]]:
    """Comparisons rated by three invited raters (one of them too fast), some with personal data planted."""
    url = sqlite_url(path)
    database = open_database(url)
    with database.session() as session:
        raters = [invite(session, name)[0].id for name in ("Ann Example", "Bob Example", "Cy Example")]
        apply_rules(session, Rules(min_seconds_to_vote=1.0))
    ratings = []
    for n in range(comparisons):
        texts = {
            "x": f"Write to {EMAIL} for more." if n % 4 == 0 else f"Answer {n} from x.",
            "y": f"Use the token {KEY} then." if n % 6 == 0 else f"Answer {n} from y.",
        }
        comparison = store_comparison(database, ["x", "y"], texts=texts)
        for k, rater in enumerate(raters):
            seconds = 0.2 if k == 2 else 5.0
            ratings.append(
                rate(
                    database,
                    comparison,
                    choice="ab"[(n + k) % 2],
                    strength="better",
                    rater=rater,
                    blind=True,
                    seconds_to_vote=seconds,
                )
            )
    database.dispose()
    return url, ratings


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def strings(folder: Path) -> str:
    """Every value of every Parquet file in the release, as text."""
    return "\n".join(json.dumps(pq.read_table(p).to_pylist(), default=str) for p in sorted(folder.rglob("*.parquet")))


def test_a_release_is_a_card_and_configs_that_datasets_loads(tmp_path, monkeypatch):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    url, _ = seeded(tmp_path / "f.sqlite3")
    folder = tmp_path / "release"
    code, out, err = run("release", "--db-url", url, "--output", str(folder), "--license", "cc-by-4.0", "--scrub")
    assert code == 0, err
    card = DatasetCard.load(folder / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.size_categories == ["n<1K"]
    names = [c["config_name"] for c in card.data.configs]
    assert names == ["comparisons", "dpo", "reward", "kto", "sft"]
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in names:
        loaded = load_dataset(str(folder), name, split="train")
        in_card = re.search(rf"\| `{name}` \| (\d+) \|", card.text)
        assert in_card and int(in_card.group(1)) == len(loaded) == manifest["counts"][name], name
    assert manifest["counts"]["comparisons"] == 24
    # The too-fast rater's 24 ratings are left out, and the card says so.
    assert "24 too fast" in card.text and len(manifest["ratings"]) == 48
    assert manifest["digest"] in card.text and "## Leaderboard at release time" in card.text
    # No planted e-mail or token survives, names and visitor keys never leave the database.
    everything = strings(folder) + card.text
    assert EMAIL not in everything and KEY not in everything and "<EMAIL>" in everything and "<SECRET>" in everything
    assert (
        "Example" not in everything
        and "visitor" not in pq.read_table(folder / "comparisons/train.parquet").schema.names
    )
    assert "scrubbed:" in out
    # The raters in the card's agreement table are the release's pseudonyms, as in the configs.
    released = {
        r["rater"] for row in pq.read_table(folder / "comparisons/train.parquet").to_pylist() for r in row["ratings"]
    }
    in_card = set(re.findall(r"^\| `([0-9a-f]+)` \|", card.text, re.M))
    assert in_card and in_card <= released


def test_deletions_reach_the_next_release_and_salts_keep_releases_apart(tmp_path):
    url, ratings = seeded(tmp_path / "f.sqlite3", comparisons=6)
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    assert run("release", "--db-url", url, "--output", str(first), "--license", "odc-by", "--salt", "one")[0] == 0
    database = open_database(url)
    with database.session() as session:  # a rater deleted one rating through "Your data"
        session.delete(session.get(Rating, ratings[0]))
    database.dispose()
    code, _, err = run(
        "release",
        "--db-url",
        url,
        "--output",
        str(second),
        "--license",
        "odc-by",
        "--previous",
        str(first),
        "--salt",
        "two",
    )
    assert code == 0, err
    changes = json.loads((second / "manifest.json").read_text())["since_previous"]
    assert changes["withdrawn_ratings"] == [ratings[0]] and not changes["added_ratings"]
    assert ratings[0] not in strings(second)
    assert "1 ratings withdrawn" in (second / "README.md").read_text()
    raters = [
        {r["rater"] for row in pq.read_table(f / "comparisons/train.parquet").to_pylist() for r in row["ratings"]}
        for f in (first, second)
    ]
    assert raters[0] and not raters[0] & raters[1]  # other salts: the raters cannot be joined
    assert run("release", "--db-url", url, "--output", str(third), "--license", "odc-by", "--salt", "one")[0] == 0
    same = {
        r["rater"] for row in pq.read_table(third / "comparisons/train.parquet").to_pylist() for r in row["ratings"]
    }
    assert same == raters[0]  # the same salt, asked for: the same pseudonyms


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--license", ""], "needs --license"),
        (["--license", "mit", "--since", "2026-12-02", "--until", "2026-12-01"], "is not before --until"),
        (["--license", "mit", "--previous", "/nonexistent"], "cannot read its manifest.json"),
    ],
)
def test_bad_release_options_are_one_line(tmp_path, argv, said):
    url, _ = seeded(tmp_path / "f.sqlite3", comparisons=1)
    code, _, err = run("release", "--db-url", url, "--output", str(tmp_path / "out"), *argv)
    assert code == 2 and said in err and "Traceback" not in err


def test_the_terms_text_goes_in_the_card_only_if_ratings_were_given_under_it(tmp_path):
    from feedback_db.records import RatingRecord
    from feedback_db.store import add_rating

    terms = tmp_path / "terms.md"
    terms.write_text("Be kind. What you type may be published.\n")
    version = __import__("hashlib").sha256(terms.read_text().strip().encode()).hexdigest()
    database = open_database(sqlite_url(tmp_path / "f.sqlite3"))
    comparison = store_comparison(database, ["x", "y"])
    with database.session() as session:
        add_rating(session, RatingRecord(comparison, "pairwise", choice="a", terms_version=version))
    database.dispose()
    url = sqlite_url(tmp_path / "f.sqlite3")
    folder = tmp_path / "release"
    code, _, err = run("release", "--db-url", url, "--output", str(folder), "--license", "mit", "--terms", str(terms))
    assert code == 0, err
    card = (folder / "README.md").read_text()
    assert f"## Terms raters accepted (`{version[:12]}…`)" in card and "> Be kind." in card
    other = tmp_path / "other.md"
    other.write_text("Other terms.")
    code, _, err = run(
        "release", "--db-url", url, "--output", str(tmp_path / "x"), "--license", "mit", "--terms", str(other)
    )
    assert code == 2 and "no stored rating was given under this file" in err and not (tmp_path / "x").exists()
