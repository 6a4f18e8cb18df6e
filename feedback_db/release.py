"""A release: a folder that `hf upload --repo-type dataset ORG/NAME DIR` publishes as it is.

- `comparisons/train.parquet`: every comparison with all its answers (with their provenance) and its
  ratings (rater pseudonym, verdict, scores, ranks, flags, set-aside reasons);
- `dpo/`, `reward/`, `kto/`, `sft/`: the export command's rows, with the same filters;
- `README.md`: the dataset card (release_card.py), whose front matter lists the configs for `datasets`;
- `manifest.json`: the ids of exactly the comparisons and ratings it holds, and their digest, so a later
  release can say what was withdrawn since (`previous`): ratings a visitor deleted are in no later release.

What never leaves the database: visitor keys, rater names, invite and browser hashes. Rater pseudonyms
are keyed by the release's salt (random unless given), so two releases cannot be joined on raters unless
made with the same salt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, selectinload

from .database import Database
from .export import FORMATS, ExportOptions, Tally, iter_rows
from .reading import RatingFilter
from .schema import AnswerJudgement, Comparison, Rating
from .scrub import scrub
from .writers import schema_of

BATCH = 500
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ReleaseOptions:
    """What goes in: a licence (required: the team chooses it), a time range, blind ratings only, and
    whether set-aside ratings are kept and personal data scrubbed."""

    license: str
    since: datetime | None = None
    until: datetime | None = None
    blind_only: bool = False
    include_set_aside: bool = False
    scrub: bool = False
    salt: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    pretty_name: str = "Chat model comparisons"
    # The texts of the terms and guidelines (the app's --terms / --guidelines files), shown in the card;
    # each must be a version the ratings were given under (their sha256 is stored with each rating).
    terms_text: str | None = None
    guidelines_text: str | None = None

    def __post_init__(self) -> None:
        if not (self.license or "").strip():
            raise ValueError("a release needs --license (e.g. cc-by-4.0, odc-by, other): the team chooses it")

    @property
    def where(self) -> RatingFilter:
        return RatingFilter(
            self.since, self.until, blind_only=self.blind_only, include_set_aside=self.include_set_aside
        )


@dataclass
class Released:
    """What a release holds and what was left out, for the card and the command's summary."""

    counts: dict[str, int] = field(default_factory=dict)  # config -> rows
    comparison_ids: list[str] = field(default_factory=list)
    rating_ids: list[str] = field(default_factory=list)
    set_aside: Counter[str] = field(default_factory=Counter)  # reason -> ratings left out
    scrubbed: Counter[str] = field(default_factory=Counter)  # kind -> replacements
    scrubbed_rows: Counter[str] = field(default_factory=Counter)  # config -> rows changed
    summaries: dict[str, str] = field(default_factory=dict)  # format -> the export's summary line
    lineups: set[str] = field(default_factory=set)
    modes: set[str] = field(default_factory=set)
    terms: set[str] = field(default_factory=set)
    guidelines: set[str] = field(default_factory=set)

    @property
    def digest(self) -> str:
        """sha256 of exactly the comparisons and ratings held: equal digests, equal contents' ids."""
        ids = "\n".join(["comparisons", *sorted(self.comparison_ids), "ratings", *sorted(self.rating_ids)])
        return hashlib.sha256(ids.encode()).hexdigest()


class Pseudonyms:
    """Rater ids keyed by the release salt: stable within a release, unlinkable across salts."""

    def __init__(self, salt: str) -> None:
        self.key = salt.encode()

    def __call__(self, rater: str | None) -> str | None:
        return hmac.new(self.key, rater.encode(), hashlib.sha256).hexdigest()[:16] if rater else None


def release(database: Database, output: Path, options: ReleaseOptions, previous: Path | None = None) -> Released:
    """Write the release folder; returns what it holds. `previous`: an earlier release's folder, to
    compare with (release_card.py says what was withdrawn and added)."""
    from .release_card import write_card  # the card reads the leaderboard and agreement modules

    done, pseudonym = Released(), Pseudonyms(options.salt)
    with database.snapshot() as session:
        _check_documents(session, options)  # before anything is written
        output.mkdir(parents=True, exist_ok=True)
        _write(
            output / "comparisons" / "train.parquet",
            _comparison_rows(session, options, done, pseudonym),
            COMPARISONS,
            done,
            "comparisons",
        )
        for name in FORMATS:
            export = ExportOptions(format=name, where=options.where)  # type: ignore[arg-type]
            tally = Tally()
            rows = (_scrubbed(row, options, done, name, pseudonym) for row in iter_rows(session, export, tally))
            schema = schema_of(export).append(pa.field("scrubbed", pa.bool_()))
            _write(output / name / "train.parquet", rows, schema, done, name)
            done.summaries[name] = tally.summary(name, export).line()
        manifest = {
            "digest": done.digest,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "comparisons": sorted(done.comparison_ids),
            "ratings": sorted(done.rating_ids),
            "counts": done.counts,
        }
        (output / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        write_card(session, output, options, done, _previous(previous), pseudonym)
    return done


def _check_documents(session: Session, options: ReleaseOptions) -> None:
    """A terms or guidelines text for the card must be a version some rating was given under."""
    for option, text, column in (
        ("--terms", options.terms_text, Rating.terms_version),
        ("--guidelines", options.guidelines_text, Rating.guidelines_version),
    ):
        if text is None:
            continue
        version = hashlib.sha256(text.strip().encode("utf-8")).hexdigest()
        if session.scalar(select(column).where(column == version).limit(1)) is None:
            raise ValueError(
                f"{option}: no stored rating was given under this file (sha256 {version[:12]}…); give the "
                "file the app was started with"
            )


def _previous(folder: Path | None) -> dict[str, Any] | None:
    if folder is None:
        return None
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"--previous {folder}: cannot read its {MANIFEST} ({error}); give a release folder") from None


def _write(path: Path, rows: Iterator[dict[str, Any]], schema: pa.Schema, done: Released, config: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = list(rows)
    pq.write_table(pa.Table.from_pylist(kept, schema=schema), path)
    done.counts[config] = len(kept)


def _clean(text: str | None, options: ReleaseOptions, done: Released, count: bool = True) -> tuple[str | None, bool]:
    """The text, scrubbed when asked; whether it changed. Finds are counted once, in the comparisons
    config: the training configs repeat its texts."""
    if text is None or not options.scrub:
        return text, False
    result = scrub(text)
    if count:
        done.scrubbed.update(result.found)
    return result.text, result.changed


def _messages(
    messages: Any, options: ReleaseOptions, done: Released, count: bool = True
) -> tuple[list[dict[str, str]], bool]:
    changed, clean = False, []
    for message in messages or []:
        content, hit = _clean(message["content"], options, done, count)
        changed |= hit
        clean.append({"role": message["role"], "content": content})
    return clean, changed


def _scrubbed(
    row: dict[str, Any], options: ReleaseOptions, done: Released, config: str, pseudonym: Pseudonyms
) -> dict[str, Any]:
    """An export row with its texts scrubbed and its rater keyed by the release salt."""
    changed = False
    for key in ("prompt", "chosen", "rejected", "completion", "messages"):
        if isinstance(row.get(key), list):
            row[key], hit = _messages(row[key], options, done, count=False)
            changed |= hit
    row["rater"] = pseudonym(row.get("rater"))
    row["scrubbed"] = changed
    done.scrubbed_rows[config] += changed
    return row


def _comparison_rows(
    session: Session, options: ReleaseOptions, done: Released, pseudonym: Pseudonyms
) -> Iterator[dict[str, Any]]:
    """Every comparison in the range with its answers and the ratings that pass the filters."""
    after: tuple[datetime, str] | None = None
    while True:
        query = (
            select(Comparison)
            .order_by(Comparison.created_at, Comparison.id)
            .limit(BATCH)
            .options(
                selectinload(Comparison.responses),
                selectinload(Comparison.ratings).selectinload(Rating.judgements).joinedload(AnswerJudgement.response),
            )
        )
        if after is not None:
            query = query.where(tuple_(Comparison.created_at, Comparison.id) > tuple_(*after))
        if options.since is not None:
            query = query.where(Comparison.created_at >= options.since)
        if options.until is not None:
            query = query.where(Comparison.created_at < options.until)
        page = list(session.scalars(query))
        if not page:
            return
        for comparison in page:
            yield _comparison_row(comparison, options, done, pseudonym)
        after = (page[-1].created_at, page[-1].id)


def _comparison_row(c: Comparison, options: ReleaseOptions, done: Released, pseudonym: Pseudonyms) -> dict[str, Any]:
    changed = False
    prompt, hit = _clean(c.prompt, options, done)
    changed |= hit
    system, hit = _clean(c.system_prompt, options, done)
    changed |= hit
    answers = []
    for r in c.responses:
        text, hit = _clean(r.text, options, done)
        messages, seen = _messages(r.messages, options, done)
        changed |= hit or seen
        answers.append(
            {
                "position": r.position,
                "contender": r.contender,
                "weights_id": r.weights_id,
                "weights_revision": r.weights_revision,
                "endpoint": r.endpoint,
                "served_model": r.served_model,
                "params": json.dumps(r.params, sort_keys=True),
                "seed": r.seed,
                "messages": messages,
                "text": text,
                "finish_reason": r.finish_reason,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "time_to_first_token_s": r.time_to_first_token_s,
                "duration_s": r.duration_s,
            }
        )
    ratings = []
    for rating in c.ratings:
        if options.blind_only and not rating.blind:
            continue
        if rating.set_aside and not options.include_set_aside:
            done.set_aside.update(rating.set_aside)
            continue
        comment, hit = _clean(rating.comment, options, done)
        changed |= hit
        ratings.append(
            {
                "rating_id": rating.id,
                "rater": pseudonym(rating.rater),
                "created_at": rating.created_at,
                "kind": rating.kind,
                "choice": rating.choice,
                "strength": rating.strength,
                "blind": rating.blind,
                "source": rating.source,
                "comment": comment,
                "set_aside": list(rating.set_aside or []),
                "seconds_to_vote": rating.seconds_to_vote,
                "judgements": [
                    {
                        "position": j.response.position,
                        "score": j.score,
                        "rank": j.rank,
                        "unsafe": j.unsafe,
                        "unsafe_reason": j.unsafe_reason,
                    }
                    for j in rating.judgements
                ],
            }
        )
        done.rating_ids.append(rating.id)
        done.terms.update([rating.terms_version] if rating.terms_version else [])
        done.guidelines.update([rating.guidelines_version] if rating.guidelines_version else [])
    done.comparison_ids.append(c.id)
    done.lineups.add(c.lineup)
    done.modes.add(c.mode)
    done.scrubbed_rows["comparisons"] += changed
    return {
        "comparison_id": c.id,
        "created_at": c.created_at,
        "lineup": c.lineup,
        "mode": c.mode,
        "turn": c.turn,
        "parent_id": c.parent_id,
        "history": c.history,
        "system_prompt": system,
        "prompt": prompt,
        "answers": answers,
        "ratings": ratings,
        "scrubbed": changed,
    }


MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
COMPARISONS = pa.schema(
    [
        ("comparison_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("lineup", pa.string()),
        ("mode", pa.string()),
        ("turn", pa.int64()),
        ("parent_id", pa.string()),
        ("history", pa.string()),
        ("system_prompt", pa.string()),
        ("prompt", pa.string()),
        (
            "answers",
            pa.list_(
                pa.struct(
                    [
                        ("position", pa.int64()),
                        ("contender", pa.string()),
                        ("weights_id", pa.string()),
                        ("weights_revision", pa.string()),
                        ("endpoint", pa.string()),
                        ("served_model", pa.string()),
                        ("params", pa.string()),
                        ("seed", pa.int64()),
                        ("messages", MESSAGES),
                        ("text", pa.string()),
                        ("finish_reason", pa.string()),
                        ("prompt_tokens", pa.int64()),
                        ("completion_tokens", pa.int64()),
                        ("time_to_first_token_s", pa.float64()),
                        ("duration_s", pa.float64()),
                    ]
                )
            ),
        ),
        (
            "ratings",
            pa.list_(
                pa.struct(
                    [
                        ("rating_id", pa.string()),
                        ("rater", pa.string()),
                        ("created_at", pa.timestamp("us", tz="UTC")),
                        ("kind", pa.string()),
                        ("choice", pa.string()),
                        ("strength", pa.string()),
                        ("blind", pa.bool_()),
                        ("source", pa.string()),
                        ("comment", pa.string()),
                        ("set_aside", pa.list_(pa.string())),
                        ("seconds_to_vote", pa.float64()),
                        (
                            "judgements",
                            pa.list_(
                                pa.struct(
                                    [
                                        ("position", pa.int64()),
                                        ("score", pa.int64()),
                                        ("rank", pa.int64()),
                                        ("unsafe", pa.bool_()),
                                        ("unsafe_reason", pa.string()),
                                    ]
                                )
                            ),
                        ),
                    ]
                )
            ),
        ),
        ("scrubbed", pa.bool_()),
    ]
)
