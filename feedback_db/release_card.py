"""A release's dataset card (README.md): front matter the Hub and `datasets` read, then how the data was
collected, what each config holds, agreement, the leaderboard at release time, and what was left out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml
from sqlalchemy.orm import Session

from .agreement import agreement_of
from .agreement import markdown as agreement_markdown
from .export import FORMATS
from .leaderboard import format_leaderboard, leaderboard_of

if TYPE_CHECKING:
    from .release import Released, ReleaseOptions

CONFIGS = {
    "comparisons": "one row per comparison: the prompt, every answer with its provenance, every rating",
    "dpo": "one row per preference pair: prompt, chosen, rejected (TRL's DPOTrainer)",
    "reward": "dpo rows with a margin from the rater's strength (TRL's RewardTrainer)",
    "kto": "one row per labelled answer: prompt, completion, label (TRL's KTOTrainer)",
    "sft": "one row per preferred answer: its conversation (TRL's SFTTrainer)",
}
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
PROTOCOL = """Each comparison sends one prompt (with its conversation so far) to several chat models at once;
their answers stream side by side and a person rates them: for two answers, a verdict (A better, B better,
tie, both bad) and how much better on the Llama 2 paper's scale (significantly, better, slightly,
negligibly/unsure); for more, a 1-5 score or a rank for each answer; any answer may be flagged unsafe with
a reason. In arena mode the models' names are hidden until the vote (`blind`). In the Review tab other
raters judge stored comparisons again, blind and in an order of their own (`source` = review), so one
comparison may hold several ratings, at most one per rater. Raters appear only as pseudonyms keyed by
this release's salt."""


def write_card(
    session: Session,
    output: Path,
    options: ReleaseOptions,
    done: Released,
    previous: dict[str, Any] | None,
    pseudonym: Callable[[str | None], str | None],
) -> None:
    """README.md in `output`; with `previous` (an earlier manifest), what was withdrawn and added since."""
    changes = _changes(done, previous)
    if changes:
        manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
        manifest["since_previous"] = changes
        (output / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    text = (
        "---\n"
        + yaml.safe_dump(_front_matter(options, done), sort_keys=False)
        + "---\n\n"
        + _body(session, options, done, changes, pseudonym)
    )
    (output / "README.md").write_text(text, encoding="utf-8")


def _front_matter(options: ReleaseOptions, done: Released) -> dict[str, Any]:
    biggest = max(done.counts.values(), default=0)
    size = next((name for limit, name in SIZES if biggest < limit), "n>1M")
    return {
        "license": options.license,
        "pretty_name": options.pretty_name,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["human-feedback", "preference", "rlhf", "dpo"],
        "size_categories": [size],
        "configs": [
            {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/train.parquet"}]}
            for name in CONFIGS
        ],
    }


def _body(
    session: Session,
    options: ReleaseOptions,
    done: Released,
    changes: dict[str, Any] | None,
    pseudonym: Callable[[str | None], str | None],
) -> str:
    lines = [
        f"# {options.pretty_name}",
        "",
        f"Release digest `{done.digest}`: the sha256 of exactly the {len(done.comparison_ids)} comparisons and "
        f"{len(done.rating_ids)} ratings it holds (their ids are in `manifest.json`).",
        "",
        "## How the data was collected",
        "",
        PROTOCOL,
        "",
        f"- Lineups: {', '.join(sorted(done.lineups)) or 'none'}; modes: {', '.join(sorted(done.modes)) or 'none'}.",
        f"- Terms raters accepted (sha256): {_listed(done.terms)}.",
        f"- Rating guidelines in force (sha256): {_listed(done.guidelines)}.",
        f"- Ratings from {_range(options)}{'; blind ratings only' if options.blind_only else ''}.",
        "",
    ]
    lines += _documents(options, done)
    lines += [f"| `{name}` | {done.counts.get(name, 0)} | {what} |" for name, what in CONFIGS.items()]
    lines += [
        "",
        "```python",
        "from datasets import load_dataset",
        'pairs = load_dataset("ORG/NAME", "dpo", split="train")',
        "```",
        "",
    ]
    report = agreement_of(session, include_set_aside=options.include_set_aside)
    # Raters by the release's pseudonyms, as in the configs: never the database's ids.
    report = replace(report, raters=tuple(replace(r, rater=pseudonym(r.rater) or "") for r in report.raters))
    if report.repeated:
        lines += ["## Agreement between raters", "", agreement_markdown(report), ""]
    board = leaderboard_of(session, rounds=200, include_set_aside=options.include_set_aside)
    lines += ["## Leaderboard at release time", "", "```", format_leaderboard(board), "```", ""]
    lines += ["## What was left out, and why", ""] + _left_out(options, done, changes)
    return "\n".join(lines) + "\n"


def _documents(options: ReleaseOptions, done: Released) -> list[str]:
    """The terms and guidelines texts given, each under the version (sha256) the ratings name; then the
    configs table's head."""
    lines = []
    for title, text, versions in (
        ("Terms raters accepted", options.terms_text, done.terms),
        ("Rating guidelines", options.guidelines_text, done.guidelines),
    ):
        if text is None:
            continue
        version = hashlib.sha256(text.strip().encode("utf-8")).hexdigest()
        if version not in versions:
            raise ValueError(
                f"the {title.lower()} given have sha256 {version[:12]}…, which no released rating was given under "
                f"(they name {_listed(versions)}); give the file the app was started with"
            )
        lines += [f"## {title} (`{version[:12]}…`)", "", *(f"> {line}" for line in text.strip().splitlines()), ""]
    return lines + ["## Configs", "", "| config | rows | a row is |", "|---|---|---|"]


def _left_out(options: ReleaseOptions, done: Released, changes: dict[str, Any] | None) -> list[str]:
    lines = ["- Never released: the salted address hashes that limit visitors, rater names, invite secrets."]
    if done.set_aside:
        reasons = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in done.set_aside.most_common())
        lines.append(
            f"- Ratings set aside and left out: {reasons} (reasons: identity leak in a blind vote, a "
            "failed answer, a vote too fast, a rater failing known-answer items, a revoked rater)."
        )
    elif options.include_set_aside:
        lines.append("- Ratings set aside are included, with their reasons in `set_aside`.")
    if options.scrub:
        kinds = ", ".join(f"{n} {kind.lower()}" for kind, n in done.scrubbed.most_common()) or "nothing found"
        rows = ", ".join(f"{n} {config}" for config, n in done.scrubbed_rows.items() if n) or "none"
        lines.append(
            f"- Personal data replaced by typed placeholders (`<EMAIL>`, …): {kinds}; rows changed "
            f"(marked `scrubbed`): {rows}."
        )
    else:
        lines.append("- Texts are as the raters and models wrote them: this release was not scrubbed of personal data.")
    lines += [f"- {name}: {done.summaries[name]}" for name in FORMATS if name in done.summaries]
    if changes:
        lines.append(
            f"- Since the previous release (`{changes['previous_digest']}`): "
            f"{len(changes['withdrawn_comparisons'])} comparisons and {len(changes['withdrawn_ratings'])} "
            f"ratings withdrawn (deleted by their askers or raters, or now set aside or out of range), "
            f"{len(changes['added_comparisons'])} comparisons and {len(changes['added_ratings'])} ratings "
            "added; the ids are in `manifest.json` under `since_previous`."
        )
    return lines


def _changes(done: Released, previous: dict[str, Any] | None) -> dict[str, Any] | None:
    if previous is None:
        return None
    old_c, old_r = set(previous.get("comparisons", [])), set(previous.get("ratings", []))
    new_c, new_r = set(done.comparison_ids), set(done.rating_ids)
    return {
        "previous_digest": previous.get("digest"),
        "withdrawn_comparisons": sorted(old_c - new_c),
        "withdrawn_ratings": sorted(old_r - new_r),
        "added_comparisons": sorted(new_c - old_c),
        "added_ratings": sorted(new_r - old_r),
    }


def _listed(versions: set[str]) -> str:
    return ", ".join(f"`{v[:12]}…`" for v in sorted(versions)) or "none recorded"


def _range(options: ReleaseOptions) -> str:
    since = options.since.isoformat() if options.since else "the first"
    until = f"until {options.until.isoformat()}" if options.until else "to the last"
    return f"{since} {until}"
