"""Importing preference rows (TRL's `prompt`/`chosen`/`rejected`, or `export --format dpo`'s) as comparisons.

A row's answers are one comparison: rows with the same conversation and the same two answers (or, from
an export, the same `comparison_id`) are one. A row with a `rater` is that rater's pairwise rating
(an "imported" rater, made on first use); a row without one is a rating without a rater. `--as review`
stores the comparisons unrated, for the review queue; `--as gold` stores them as known-answer items.

TRL rows name no positions, so the two answers are ordered by a hash of their text, never chosen
first: a reviewer must not learn that "A" is the dataset's choice. Export rows keep their comparison
ids and positions; a comparison or rating already stored (by id, or a TRL comparison by its content in
its lineup) is matched, not stored twice, so an import can be run again.

Every line is checked before anything is written; then the file is stored whole, or (under a SAVEPOINT)
not at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from .raters import RaterRefused, named_rater
from .records import (
    MAX_NAME_CHARS,
    RATING_KINDS,
    STRENGTHS,
    ComparisonRecord,
    RatingRecord,
    ResponseRecord,
    Strength,
    new_id,
    storable,
)
from .rules import current_rules, recompute
from .schema import Comparison, Rater, Rating, Response, utc_now
from .store import RatingRefused, add_comparison, add_rating, add_response, rating_of, responses_of

ImportAs = Literal["ratings", "review", "gold"]
MAX_ERRORS_SHOWN = 10
BATCH = 500


class ImportRefused(ValueError):
    """A file that will not be imported: every problem found, by line number."""


@dataclass(frozen=True)
class ImportRow:
    """One checked line: the conversation the answers replied to, the chosen and rejected answers."""

    line: int
    messages: tuple[dict[str, str], ...]
    chosen: str
    rejected: str
    strength: Strength | None = None
    rater: str | None = None
    blind: bool = False
    kind: str = "pairwise"  # an export's rating kind: scores and ranking rows are pairs, not whole ratings
    lineup: str | None = None
    comparison_id: str | None = None
    rating_id: str | None = None
    chosen_contender: str | None = None
    rejected_contender: str | None = None
    chosen_position: int | None = None
    rejected_position: int | None = None


@dataclass(frozen=True)
class ImportSummary:
    """What an import read and stored."""

    source: str
    imported_as: ImportAs
    rows: int
    lineups: tuple[str, ...]
    comparisons_stored: int
    comparisons_matched: int
    ratings_stored: int
    ratings_matched: int
    raters: int
    preferences_not_stored: int  # --as review or gold: the file's preferences, not stored as ratings
    pairs_of_other_kinds: int  # export rows of scores or ranking ratings: a pair is not the whole rating

    def line(self) -> str:
        """One line for a person."""
        text = (
            f"read {self.rows} rows from {self.source}: {self.comparisons_stored} comparisons stored, "
            f"{self.comparisons_matched} matched (lineup {', '.join(self.lineups) or '-'}); "
            f"{self.ratings_stored} ratings stored, {self.ratings_matched} matched; {self.raters} raters"
        )
        if self.imported_as == "review":
            text += f"; the file's {self.preferences_not_stored} preferences are not ratings here (--as review)"
        elif self.imported_as == "gold":
            text += f"; the file's {self.preferences_not_stored} preferences are known answers (--as gold), not ratings"
        if self.pairs_of_other_kinds:
            text += f"; {self.pairs_of_other_kinds} pairs of scores or ranking ratings stored without their rating"
        return text


def read_rows(path: Path) -> list[ImportRow]:
    """Every non-blank line of a JSONL file, checked; ImportRefused names each bad line."""
    rows, errors = [], []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            text = raw.decode("utf-8")
            if text.strip():
                rows.append(parse_row(number, json.loads(text)))
        except UnicodeDecodeError:
            errors.append(f"line {number}: not UTF-8 text")
        except json.JSONDecodeError as e:
            errors.append(f"line {number}: not JSON ({e.msg} at column {e.colno})")
        except ValueError as e:
            errors.append(f"line {number}: {e}")
    if errors:
        raise ImportRefused(_listed_errors(path.name, errors))
    if not rows:
        raise ImportRefused(
            f"{path.name} holds no rows; expected one JSON object per line with prompt, chosen, rejected"
        )
    return rows


def _listed_errors(source: str, errors: list[str]) -> str:
    more = f"\n... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
    return f"nothing was imported from {source}:\n" + "\n".join(errors[:MAX_ERRORS_SHOWN]) + more


def parse_row(line: int, data: object) -> ImportRow:
    """One decoded line as an ImportRow; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    missing = [name for name in ("prompt", "chosen", "rejected") if name not in data]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}; a row needs prompt, chosen and rejected")
    fields: dict[str, Any] = {
        "messages": _prompt(data["prompt"]),
        "chosen": _answer("chosen", data["chosen"]),
        "rejected": _answer("rejected", data["rejected"]),
    }
    for name, check in _OPTIONAL.items():
        if data.get(name) is not None:
            fields[name] = check(name, data[name])
    row = ImportRow(line=line, **fields)
    given = [row.comparison_id is not None, row.chosen_position is not None, row.rejected_position is not None]
    if any(given) and not all(given):
        raise ValueError("comparison_id, chosen_position and rejected_position come together, as export writes them")
    if row.comparison_id is None and row.chosen == row.rejected:
        raise ValueError("chosen and rejected are the same text; a preference needs two different answers")
    if row.chosen_position is not None and row.chosen_position == row.rejected_position:
        raise ValueError(f"chosen_position and rejected_position are both {row.chosen_position}")
    return row


def _prompt(value: object) -> tuple[dict[str, str], ...]:
    """A string is one user message; a list is TRL's conversation, system first, ending with the user."""
    if isinstance(value, str):
        messages: object = [{"role": "user", "content": value}]
    else:
        messages = value
    if not isinstance(messages, list) or not messages:
        raise ValueError("prompt must be a string or a non-empty list of {role, content} messages")
    # ResponseRecord's checks are the store's: roles, string contents, system first, user last.
    record = ResponseRecord(new_id(), 0, "x", "x", messages, "", {}, "", "stop", 0, 0, 0.0)
    if not record.messages[-1]["content"].strip():
        raise ValueError("prompt: the last user message is empty")
    return tuple(record.messages)


def _answer(name: str, value: object) -> str:
    """A string, or TRL's conversational form: a list holding one assistant message."""
    if isinstance(value, str):
        return storable(value)
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and value[0].get("role") == "assistant"
        and isinstance(value[0].get("content"), str)
    ):
        return storable(value[0]["content"])
    raise ValueError(f"{name} must be a string or a list holding one assistant message, got {json.dumps(value)[:80]}")


def _one_of(allowed: Sequence[str]) -> Any:
    def check(name: str, value: object) -> str:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    return check


def _text(limit: int) -> Any:
    def check(name: str, value: object) -> str:
        if not isinstance(value, str) or not value.strip() or len(value.strip()) > limit:
            raise ValueError(f"{name} must be a non-empty string of at most {limit} characters, got {value!r:.80}")
        return storable(value.strip())

    return check


def _an_id(name: str, value: object) -> str:
    if not (isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)):
        raise ValueError(f"{name} must be 32 lowercase hex digits, as export writes it, got {value!r:.80}")
    return value


def _position(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r:.80}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r:.80}")
    return value


_OPTIONAL = {
    "strength": _one_of(STRENGTHS),
    "rater": _text(MAX_NAME_CHARS["rater"]),
    "blind": _flag,
    "kind": _one_of(RATING_KINDS),
    "lineup": _text(MAX_NAME_CHARS["lineup"]),
    "comparison_id": _an_id,
    "rating_id": _an_id,
    "chosen_contender": _text(MAX_NAME_CHARS["contender"]),
    "rejected_contender": _text(MAX_NAME_CHARS["contender"]),
    "chosen_position": _position,
    "rejected_position": _position,
}


@dataclass
class _Answer:
    text: str
    contender: str
    messages: tuple[dict[str, str], ...]
    line: int


@dataclass(frozen=True)
class _Vote:
    winner: Any  # the answer's key in its group: a position (export rows) or the text (TRL rows)
    strength: Strength | None
    blind: bool
    rating_id: str | None
    line: int


@dataclass
class _Group:
    """The rows that are one comparison, gathered before anything is stored."""

    key: tuple[Any, ...]
    line: int
    lineup: str
    comparison_id: str | None
    answers: dict[Any, _Answer] = field(default_factory=dict)
    votes: dict[str | None, _Vote] = field(default_factory=dict)  # by rater name (None: without a rater)
    gold: _Vote | None = None
    records: tuple[ComparisonRecord, tuple[ResponseRecord, ...]] | None = None
    positions: dict[Any, int] = field(default_factory=dict)  # answer key -> planned stored position


def import_rows(
    session: Session,
    rows: Sequence[ImportRow],
    *,
    source: str,
    imported_as: ImportAs = "ratings",
    lineup: str | None = None,
) -> ImportSummary:
    """Store `rows` (read from `source`, a file name) in the caller's transaction; nothing when it raises
    ImportRefused, which names the lines at fault.

    The lineup is `lineup`, else a row's own (an export's), else the name of `source` without its suffix.
    """
    if lineup is not None and not (lineup.strip() and len(lineup) <= MAX_NAME_CHARS["lineup"]):
        raise ImportRefused(f"a lineup name is 1 to {MAX_NAME_CHARS['lineup']} characters, got {lineup!r:.80}")
    groups = _plan(rows, lineup, Path(source).stem, source, imported_as)
    errors = [error for group in groups for error in _records(group, source)]
    if errors:
        raise ImportRefused(_listed_errors(source, errors))
    matches = _stored_by_content(session, [g for g in groups if g.comparison_id is None])
    counts: dict[str, int] = dict.fromkeys(("stored", "matched", "ratings", "ratings_matched"), 0)
    try:
        # A SAVEPOINT: a refusal half way leaves nothing of the file, even if the caller then commits.
        with session.begin_nested():
            for group in groups:
                _store_group(session, group, matches.get(group.key), counts)
    except ValueError as e:  # the store's refusals (RatingRefused, RaterRefused) are ValueErrors
        raise ImportRefused(_listed_errors(source, [str(e)])) from None
    return ImportSummary(
        source=source,
        imported_as=imported_as,
        rows=len(rows),
        lineups=tuple(sorted({g.lineup for g in groups})),
        comparisons_stored=counts["stored"],
        comparisons_matched=counts["matched"],
        ratings_stored=counts["ratings"],
        ratings_matched=counts["ratings_matched"],
        raters=len({name for g in groups for name in g.votes if name is not None}),
        preferences_not_stored=len(rows) if imported_as != "ratings" else 0,
        pairs_of_other_kinds=sum(row.kind != "pairwise" for row in rows) if imported_as == "ratings" else 0,
    )


def _plan(
    rows: Iterable[ImportRow], lineup: str | None, default: str, source: str, imported_as: ImportAs
) -> list[_Group]:
    """The rows gathered into comparisons; ImportRefused names the lines that contradict each other."""
    groups: dict[tuple[Any, ...], _Group] = {}
    errors = []
    for row in rows:
        row_lineup = lineup or row.lineup or default
        if row.comparison_id is not None:
            key: tuple[Any, ...] = ("id", row.comparison_id)
            chosen, rejected = row.chosen_position, row.rejected_position
        else:
            key = ("content", row_lineup, _conversation_key(row.messages), frozenset((row.chosen, row.rejected)))
            chosen, rejected = row.chosen, row.rejected
        group = groups.setdefault(key, _Group(key, row.line, row_lineup, row.comparison_id))
        try:
            _add_answer(group, chosen, row.chosen, row.chosen_contender, "chosen", row)
            _add_answer(group, rejected, row.rejected, row.rejected_contender, "rejected", row)
            vote = _Vote(chosen, row.strength, row.blind, row.rating_id, row.line)
            if imported_as == "gold":
                if group.gold is not None and group.gold.winner != chosen:
                    raise ValueError(f"line {group.gold.line} chose the other answer; a known-answer item has one")
                group.gold = group.gold or vote
            elif imported_as == "ratings" and row.kind == "pairwise":
                _add_vote(group, row.rater, vote)
        except ValueError as e:
            errors.append(f"line {row.line}: {e}")
    if errors:
        raise ImportRefused(_listed_errors(source, errors))
    return list(groups.values())


def _conversation_key(messages: Sequence[Mapping[str, str]]) -> str:
    return json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)


def _add_answer(group: _Group, key: Any, text: str, contender: str | None, default: str, row: ImportRow) -> None:
    """Add an answer to its comparison, or check that it is the one already there."""
    found = group.answers.get(key)
    if found is None:
        name = contender or default
        twin = next((a for a in group.answers.values() if a.contender == name), None)
        if twin is not None:
            raise ValueError(f"contender {name!r} gives two answers to one comparison (line {twin.line} has the other)")
        group.answers[key] = _Answer(text, name, row.messages, row.line)
        return
    if found.text != text or found.messages != row.messages:
        raise ValueError(
            f"line {found.line} gives comparison {group.comparison_id} another answer or conversation at position {key}"
        )
    if contender is not None and contender != found.contender:
        raise ValueError(f"the answer line {found.line} calls {found.contender!r} is called {contender!r} here")


def _add_vote(group: _Group, rater: str | None, vote: _Vote) -> None:
    """One rating per rater and comparison: a repeated row is the same rating, a different verdict is refused."""
    found = group.votes.get(rater)
    if found is None:
        group.votes[rater] = vote
        return
    who = f"rater {rater!r}" if rater is not None else "a row without a rater"
    hint = "" if rater is not None else ": give the rows their `rater`"
    if found.rating_id != vote.rating_id:
        raise ValueError(
            f"{who} rated this comparison on line {found.line} already; a comparison keeps one rating per rater "
            f"(and one without a rater){hint}"
        )
    if (found.winner, found.strength, found.blind) != (vote.winner, vote.strength, vote.blind):
        raise ValueError(f"{who} rated this comparison differently on line {found.line}{hint}")


def _records(group: _Group, source: str) -> list[str]:
    """Make the group's comparison and answers (their checks are the store's); returns what is wrong."""
    if group.comparison_id is not None:
        order = sorted(group.answers)  # positions as exported, gaps closed
    else:
        # By a hash of the text, not chosen first: the dataset's choice must not show as "A".
        order = sorted(group.answers, key=lambda text: hashlib.sha256(text.encode("utf-8")).hexdigest())
    group.positions = {key: position for position, key in enumerate(order)}
    first = group.answers[order[0]].messages
    try:
        comparison = ComparisonRecord(
            lineup=group.lineup,
            session_id=f"import:{source}"[: MAX_NAME_CHARS["session_id"]],
            prompt=first[-1]["content"],
            n_responses=len(order),
            mode="arena",  # names hidden until the vote: "chosen" and "rejected" would give the answer away
            system_prompt=first[0]["content"] if first[0]["role"] == "system" else None,
            id=group.comparison_id or new_id(),
            gold_position=group.positions[group.gold.winner] if group.gold is not None else None,
        )
        responses = tuple(_response(comparison.id, group.positions[key], group.answers[key]) for key in order)
    except ValueError as e:
        return [f"line {group.line}: {e}"]
    group.records = (comparison, responses)
    return []


def _response(comparison_id: str, position: int, answer: _Answer) -> ResponseRecord:
    return ResponseRecord(
        comparison_id=comparison_id,
        position=position,
        contender=answer.contender,
        weights_id=answer.contender,
        messages=answer.messages,
        prompt_rendered="",
        params={},
        text=answer.text,
        finish_reason="stop",
        prompt_tokens=0,
        completion_tokens=0,
        duration_s=0.0,
    )


def _stored_by_content(session: Session, groups: Sequence[_Group]) -> dict[tuple[Any, ...], str]:
    """Comparisons already stored with the same lineup, conversation and two answers: group key -> id."""
    found: dict[tuple[Any, ...], str] = {}
    wanted = {g.key for g in groups}
    lineups = sorted({g.lineup for g in groups})
    prompts = sorted({g.records[0].prompt for g in groups if g.records is not None})
    for start in range(0, len(prompts), BATCH):
        candidates = dict(
            session.execute(
                select(Comparison.id, Comparison.lineup).where(
                    Comparison.lineup.in_(lineups), Comparison.prompt.in_(prompts[start : start + BATCH])
                )
            ).all()
        )
        answers: dict[str, list[Response]] = {}
        for response in session.scalars(select(Response).where(Response.comparison_id.in_(list(candidates)))):
            answers.setdefault(response.comparison_id, []).append(response)
        for comparison_id, pair in answers.items():
            if len(pair) != 2 or pair[0].messages != pair[1].messages:
                continue  # a TRL row's comparison has two answers to one conversation
            conversation = _conversation_key(pair[0].messages)
            key = ("content", candidates[comparison_id], conversation, frozenset(r.text for r in pair))
            if key in wanted:
                found.setdefault(key, comparison_id)
    return found


def _store_group(session: Session, group: _Group, matched_id: str | None, counts: dict[str, int]) -> None:
    assert group.records is not None
    comparison, responses = group.records
    existing = session.get(Comparison, matched_id or comparison.id)
    if existing is None:
        add_comparison(session, comparison)
        for response in responses:
            add_response(session, response)
        positions = group.positions
        counts["stored"] += 1
    else:
        positions = _stored_positions(session, existing, group)
        if group.gold is not None:
            _mark_gold(session, existing, positions[group.gold.winner], group.gold.line)
        counts["matched"] += 1
    for rater, vote in group.votes.items():
        stored = _store_vote(session, existing or comparison, positions, _rater_id(session, group, rater, vote), vote)
        counts["ratings" if stored else "ratings_matched"] += 1


def _stored_positions(session: Session, comparison: Comparison, group: _Group) -> dict[Any, int]:
    """Where the group's answers are in a stored comparison; refused if it holds other answers."""
    stored = responses_of(session, comparison.id)
    positions = {}
    for key, answer in group.answers.items():
        at = [
            r.position for r in stored if r.text == answer.text and (group.comparison_id is None or r.position == key)
        ]
        if not at:
            raise ValueError(
                f"line {answer.line}: comparison {comparison.id} is stored without this answer"
                + (f" at position {key}" if group.comparison_id is not None else "")
                + "; the row belongs to another database, or the comparison changed since the export"
            )
        positions[key] = at[0]
    return positions


def _mark_gold(session: Session, comparison: Comparison, position: int, line: int) -> None:
    if comparison.gold_position == position:
        return
    if comparison.gold_position is not None:
        raise ValueError(
            f"line {line}: comparison {comparison.id} is a known-answer item already, "
            f"with the answer at position {comparison.gold_position} as the better one"
        )
    comparison.gold_position = position
    session.flush()
    # Its raters' gold accuracy changed, and with it maybe the reasons their ratings are set aside.
    raters = session.scalars(select(Rating.rater).where(Rating.comparison_id == comparison.id)).all()
    recompute(session, current_rules(session), raters=[r for r in raters if r is not None])


def _rater_id(session: Session, group: _Group, rater: str | None, vote: _Vote) -> str | None:
    """What a row's rater is stored as: an export's is a pseudonym, kept as it is; a TRL row's is a name."""
    if rater is None:
        return None
    if group.comparison_id is None:
        try:
            return named_rater(session, "imported", rater).id
        except RaterRefused as e:
            raise ValueError(f"line {vote.line}: {e}; rename the file's rater") from None
    if session.get(Rater, rater) is None and re.fullmatch(r"[0-9a-f]{32}", rater):
        # A pseudonym from another database: the same pseudonym here, a rater without a name.
        session.add(Rater(id=rater, kind="imported", name=None, created_at=utc_now()))
        session.flush()
    return rater  # (a rater string stored before revision 0006 names no rater, there as here)


def _store_vote(
    session: Session, comparison: Any, positions: dict[Any, int], rater_id: str | None, vote: _Vote
) -> bool:
    """Store one rating; False when it is stored already (its id, or its rater's same verdict)."""
    if vote.rating_id is not None:
        found = session.get(Rating, vote.rating_id)
        if found is not None and found.comparison_id == comparison.id:
            return False
        if found is not None:
            raise ValueError(f"line {vote.line}: rating {vote.rating_id} is stored for another comparison")
    if len(positions) != 2:
        raise ValueError(
            f"line {vote.line}: a pairwise rating compares two answers and comparison {comparison.id} has "
            f"{len(positions)} here; import it with --as review, or leave out the row's rating"
        )
    choice = "ab"[positions[vote.winner]]  # by stored position, whatever order a rater will see
    stored = rating_of(session, comparison.id, rater_id)
    if stored is not None:
        if (stored.kind, stored.choice, stored.strength) == ("pairwise", choice, vote.strength):
            return False
        who = f"rater {rater_id}" if rater_id is not None else "a rating without a rater"
        raise ValueError(f"line {vote.line}: {who} rated comparison {comparison.id} differently before")
    record = RatingRecord(
        comparison.id,
        "pairwise",
        choice=choice,
        strength=vote.strength,
        blind=vote.blind,
        rater=rater_id,
        source="import",
    )
    try:
        add_rating(session, record)
    except RatingRefused as e:
        raise ValueError(f"line {vote.line}: {e}") from None
    return True
