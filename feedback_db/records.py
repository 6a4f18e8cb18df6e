"""Plain data the app hands to the store: frozen dataclasses, validated when made.

These are the only types `playground` needs from `feedback_db` to write; they hold no SQLAlchemy state.
Checks that need the database (does the comparison exist, how many answers does it have) live in
`store.py`; everything that can be judged from the record alone is judged here, so a bad call fails at
the line that built the record.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, get_args

Mode = Literal["named", "arena"]
FinishReason = Literal["stop", "length", "stopped", "error"]
RatingKind = Literal["pairwise", "scores", "ranking"]
# FastChat's four quick votes; "a" is the answer shown in pane position 0, "b" position 1.
Choice = Literal["a", "b", "tie", "both_bad"]
# Llama 2 paper, section 3.2.1; "negligibly_better" also stands for "unsure".
Strength = Literal["significantly_better", "better", "slightly_better", "negligibly_better"]
Role = Literal["system", "user", "assistant"]
# Which conversation each answer of a turn replied to: "own", each pane's own earlier answers;
# "shared", one history for every pane, continued from the preferred answer (Anthropic HH protocol).
History = Literal["own", "shared"]
# Who a rater is: a browser session ("open"), a person holding an invite, a Hugging Face account, or a
# name in an imported file.
RaterKind = Literal["open", "invited", "hub", "imported"]
# Where a rating was given: on the comparison the rater asked, in the review tab, or in an imported file.
RatingSource = Literal["page", "review", "import"]
# Why a rating does not count (rules.py): nothing is deleted, each consumer skips these unless asked.
SetAsideReason = Literal["identity_leak", "errored", "too_fast", "gold", "revoked"]

MODES: tuple[str, ...] = get_args(Mode)
FINISH_REASONS: tuple[str, ...] = get_args(FinishReason)
RATING_KINDS: tuple[str, ...] = get_args(RatingKind)
CHOICES: tuple[str, ...] = get_args(Choice)
STRENGTHS: tuple[str, ...] = get_args(Strength)
ROLES: tuple[str, ...] = get_args(Role)
HISTORIES: tuple[str, ...] = get_args(History)
RATER_KINDS: tuple[str, ...] = get_args(RaterKind)
RATING_SOURCES: tuple[str, ...] = get_args(RatingSource)
SET_ASIDE_REASONS: tuple[str, ...] = get_args(SetAsideReason)
DIGEST_LENGTH = 64  # sha256 in hex: versions of terms and guidelines, invite hashes
SCORE_MIN, SCORE_MAX = 1, 5
ID_LENGTH = 32
MAX_SEED = 2**63 - 1  # BIGINT is signed 64-bit on PostgreSQL
MAX_COMMENT_CHARS = 10_000  # a public demo must not let one vote store megabytes
MAX_NAME_CHARS = {
    "lineup": 100,
    "session_id": 64,
    "contender": 200,
    "weights_id": 500,
    "weights_revision": 100,
    "rater": 64,
    "endpoint": 500,
    "served_model": 500,
    "system_fingerprint": 200,
    "visitor": 64,
}


def new_id() -> str:
    """A fresh id: a uuid4 as 32 lowercase hex digits."""
    return uuid.uuid4().hex


# NUL, which PostgreSQL refuses in text and JSON, and lone surrogates (half of a UTF-16 pair), which
# UTF-8 cannot encode: a visitor can type both and a model can emit NUL (Llama's byte token <0x00>).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def parse_moment(text: str) -> datetime:
    """An ISO date or time as an aware datetime (UTC when it names no offset); ValueError says how to write it."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date or time: write it like 2026-11-01 or 2026-11-01T12:00:00+01:00"
        ) from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def storable(text: str) -> str:
    """`text` as every supported backend stores it: NUL and lone surrogates become U+FFFD (�).

    Applied to every text a record holds, so SQLite and PostgreSQL store and read back the same.
    """
    return _UNSTORABLE.sub(REPLACEMENT, text)


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, list):
        return [_storable_json(v) for v in value]
    if isinstance(value, dict):
        return {storable(str(k)): _storable_json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ComparisonRecord:
    """One prompt sent to every contender of a lineup; `id` is what the server hands the browser.

    `history` says which conversation the answers replied to (see History); `continued_from` names the
    response of the previous turn whose answer a shared history continues from.
    """

    lineup: str
    session_id: str
    prompt: str
    n_responses: int
    mode: Mode = "named"
    turn: int = 0
    parent_id: str | None = None
    system_prompt: str | None = None
    id: str = field(default_factory=new_id)
    # Arena mode: how the contenders were drawn (sampler name, weights, candidates), stored as JSON.
    sampling: Mapping[str, Any] | None = None
    history: History = "own"
    continued_from: str | None = None
    visitor: str | None = None  # a salted hash of the asker's address, never the address
    asked_by: str | None = None  # the asker's rater pseudonym (raters.id), if known
    gold_position: int | None = None  # a known-answer item: the position of the better answer

    def __post_init__(self) -> None:
        _check_id("id", self.id)
        _check_name("lineup", self.lineup)
        if self.visitor is not None:
            _check_name("visitor", self.visitor)
        if self.asked_by is not None:
            _check_name("rater", self.asked_by)
        if self.gold_position is not None:
            _check_int("gold_position", self.gold_position)
            if self.gold_position >= self.n_responses:
                raise ValueError(f"gold_position {self.gold_position} is not one of the {self.n_responses} answers")
        _check_name("session_id", self.session_id)
        _check_one_of("mode", self.mode, MODES)
        _check_int("turn", self.turn)
        _check_int("n_responses", self.n_responses, minimum=2)
        _check_text("prompt", self.prompt, allow_blank=False)
        object.__setattr__(self, "prompt", storable(self.prompt))
        if self.system_prompt is not None:
            _check_text("system_prompt", self.system_prompt)
            object.__setattr__(self, "system_prompt", storable(self.system_prompt))
        if (self.turn == 0) != (self.parent_id is None):
            raise ValueError(
                f"turn {self.turn} with parent_id={self.parent_id!r}: the first turn (0) has no parent, "
                "every later turn names the previous comparison of the same conversation"
            )
        if self.parent_id is not None:
            _check_id("parent_id", self.parent_id)
        if self.sampling is not None:
            object.__setattr__(self, "sampling", _checked_json("sampling", self.sampling))
        _check_one_of("history", self.history, HISTORIES)
        if self.continued_from is not None:
            self._check_continued_from()

    def _check_continued_from(self) -> None:
        if self.history != "shared":
            raise ValueError(
                f"continued_from={self.continued_from!r} given with history {self.history!r}: only a shared "
                "history continues from one answer; pass history='shared' or leave continued_from out"
            )
        if self.turn == 0:
            raise ValueError(
                f"continued_from={self.continued_from!r} given for turn 0: the first turn has no earlier "
                "answer to continue from"
            )
        _check_id("continued_from", self.continued_from)


@dataclass(frozen=True)
class ResponseRecord:
    """One contender's finished (or stopped, or failed) answer, with everything needed to reproduce it."""

    comparison_id: str
    position: int
    contender: str
    weights_id: str
    messages: Sequence[Mapping[str, str]]
    prompt_rendered: str
    params: Mapping[str, Any]
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    duration_s: float
    weights_revision: str | None = None
    seed: int | None = None
    error: str | None = None
    time_to_first_token_s: float | None = None
    tokens_per_s: float | None = None
    # Made here, not by the store, so the caller knows it (a later turn's continued_from names it).
    id: str = field(default_factory=new_id)
    # Remote contenders only: the server's base URL (no credentials), the model name it reported, its
    # fingerprint, the request as sent less the messages / prompt, and its usage counts.
    endpoint: str | None = None
    served_model: str | None = None
    system_fingerprint: str | None = None
    request: Mapping[str, Any] | None = None
    usage: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_id("id", self.id)
        _check_id("comparison_id", self.comparison_id)
        _check_int("position", self.position)
        _check_name("contender", self.contender)
        _check_name("weights_id", self.weights_id)
        if self.weights_revision is not None:
            _check_name("weights_revision", self.weights_revision)
        # Copies, so that the caller mutating its own lists later cannot change a frozen record.
        object.__setattr__(self, "messages", _checked_messages(self.messages))
        object.__setattr__(self, "params", _checked_json("params", self.params))
        _check_text("prompt_rendered", self.prompt_rendered)
        _check_text("text", self.text)
        for name in ("prompt_rendered", "text"):
            object.__setattr__(self, name, storable(getattr(self, name)))
        _check_one_of("finish_reason", self.finish_reason, FINISH_REASONS)
        _check_error(self.finish_reason, self.error)
        if self.error is not None:
            object.__setattr__(self, "error", storable(self.error))
        if self.seed is not None:
            _check_int("seed", self.seed, maximum=MAX_SEED)
        _check_int("prompt_tokens", self.prompt_tokens)
        _check_int("completion_tokens", self.completion_tokens)
        _check_seconds("duration_s", self.duration_s)
        _check_seconds("time_to_first_token_s", self.time_to_first_token_s, optional=True)
        _check_seconds("tokens_per_s", self.tokens_per_s, optional=True)
        for name in ("endpoint", "served_model", "system_fingerprint"):
            if getattr(self, name) is not None:
                _check_name(name, getattr(self, name))
        if self.endpoint is not None and (
            "@" in self.endpoint.split("//", 1)[-1].split("/", 1)[0] or "?" in self.endpoint
        ):
            raise ValueError(
                f"endpoint {self.endpoint!r} carries credentials or a query; store scheme, host and path only"
            )
        for name in ("request", "usage"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _checked_json(name, getattr(self, name)))


@dataclass(frozen=True)
class RatingRecord:
    """A person's judgement of one comparison, naming answers by pane position, never by model name.

    kind="pairwise" (exactly two answers): `choice` is required, `strength` optional and only with "a"/"b".
    kind="scores" (any number of answers): a 1-5 score per answer position in `scores`.
    kind="ranking" (any number of answers): a rank per answer position in `ranks`, 1 = best; equal
    ranks are ties ({0: 1, 1: 1, 2: 3} says 0 and 1 tie, both better than 2).
    `unsafe` maps the positions flagged unsafe to an optional reason (every kind).
    `blind` is True only if the names were hidden when the person voted (arena mode, before reveal).
    `rater` is who rated (a raters.id pseudonym; at most one rating per rater and comparison), or None.
    `source` says where it was given; `shown_order` lists the stored positions in the order the rater
    saw them (None: as stored), for position bias; `seconds_to_vote` counts from the last answer
    finishing; `terms_version` and `guidelines_version` are the sha256 of the documents in force.
    """

    comparison_id: str
    kind: RatingKind
    choice: Choice | None = None
    strength: Strength | None = None
    scores: Mapping[int, int] = field(default_factory=dict)
    unsafe: Mapping[int, str | None] = field(default_factory=dict)
    comment: str | None = None
    blind: bool = False
    ranks: Mapping[int, int] = field(default_factory=dict)
    rater: str | None = None
    source: RatingSource = "page"
    shown_order: tuple[int, ...] | None = None
    seconds_to_vote: float | None = None
    terms_version: str | None = None
    guidelines_version: str | None = None

    def __post_init__(self) -> None:
        _check_id("comparison_id", self.comparison_id)
        _check_one_of("kind", self.kind, RATING_KINDS)
        _check_one_of("source", self.source, RATING_SOURCES)
        if self.shown_order is not None:
            order = tuple(self.shown_order)
            if sorted(order) != list(range(len(order))) or not all(type(p) is int for p in order):
                raise ValueError(f"shown_order must list every position 0..n-1 once, got {self.shown_order!r}")
            object.__setattr__(self, "shown_order", order)
        if self.seconds_to_vote is not None:
            _check_seconds("seconds_to_vote", self.seconds_to_vote)
        for name in ("terms_version", "guidelines_version"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[0-9a-f]{64}", str(value)):
                raise ValueError(f"{name} must be a sha256 in hex (64 digits), got {value!r}")
        if not isinstance(self.blind, bool):
            raise ValueError(f"blind must be True or False, got {self.blind!r}")
        object.__setattr__(self, "scores", _checked_scores(self.scores))
        object.__setattr__(self, "ranks", _checked_ranks(self.ranks))
        object.__setattr__(self, "unsafe", _checked_unsafe(self.unsafe))
        object.__setattr__(self, "comment", _cleaned_note("comment", self.comment))
        object.__setattr__(self, "rater", _cleaned_rater(self.rater))
        if self.kind == "pairwise":
            self._check_pairwise()
        else:
            self._check_per_answer()

    def _check_pairwise(self) -> None:
        if self.choice is None:
            raise ValueError(f"a pairwise rating needs a choice, one of {_listed(CHOICES)}")
        _check_one_of("choice", self.choice, CHOICES)
        if self.strength is not None:
            _check_one_of("strength", self.strength, STRENGTHS)
            if self.choice not in ("a", "b"):
                raise ValueError(
                    f"strength {self.strength!r} given with choice {self.choice!r}: "
                    "a strength only says how much better A or B is; leave it out for tie and both_bad"
                )
        if self.scores or self.ranks:
            raise ValueError(
                "scores belong to kind='scores' and ranks to kind='ranking'; "
                "a pairwise rating takes choice and strength"
            )

    def _check_per_answer(self) -> None:
        what = "a score" if self.kind == "scores" else "a rank"
        if self.choice is not None or self.strength is not None:
            raise ValueError(
                f"kind={self.kind!r} takes {what} per answer, not choice={self.choice!r} / strength={self.strength!r}"
            )
        given, other = (self.scores, self.ranks) if self.kind == "scores" else (self.ranks, self.scores)
        if other:
            raise ValueError(
                f"kind={self.kind!r} takes {what} per answer; "
                "give scores with kind='scores' and ranks with kind='ranking'"
            )
        if not given:
            example = "scores: {position: 1-5}" if self.kind == "scores" else "ranks: {position: rank}, 1 for the best,"
            raise ValueError(f"kind={self.kind!r} needs {example} for every answer")


def _listed(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _check_id(name: str, value: object) -> None:
    if not (isinstance(value, str) and len(value) == ID_LENGTH and all(c in "0123456789abcdef" for c in value)):
        raise ValueError(f"{name} must be an id made by new_id() (32 lowercase hex digits), got {value!r}")


def _check_one_of(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {_listed(allowed)}, got {value!r}")


def _check_int(name: str, value: object, minimum: int = 0, maximum: int | None = None) -> None:
    if isinstance(value, int) and not isinstance(value, bool):  # bool is an int, but True is no position
        if value >= minimum and (maximum is None or value <= maximum):
            return
    bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
    raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def _check_seconds(name: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return  # NaN fails the comparison too
    raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_text(name: str, value: object, allow_blank: bool = True) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}: {value!r:.80}")
    if not allow_blank and not value.strip():
        raise ValueError(f"{name} must not be empty")


def _check_name(name: str, value: object) -> None:
    _check_text(name, value, allow_blank=False)
    limit = MAX_NAME_CHARS[name]
    if isinstance(value, str) and len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters; at most {limit} fit")


def _check_error(finish_reason: str, error: str | None) -> None:
    if finish_reason == "error" and not (isinstance(error, str) and error.strip()):
        raise ValueError("finish_reason 'error' needs the error message in error=")
    if finish_reason != "error" and error is not None:
        raise ValueError(f"error={error!r:.80} given with finish_reason {finish_reason!r}; use finish_reason 'error'")


def _checked_messages(messages: object) -> tuple[dict[str, str], ...]:
    """Role/content dicts, system (if any) first, ending with the user's new message."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    cleaned = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {message!r:.80}")
        _check_one_of(f"messages[{i}]['role']", message["role"], ROLES)
        if not isinstance(message["content"], str):
            # Gradio 6 hands content as a list of {"type": "text", ...} parts: flatten before storing.
            raise ValueError(f"messages[{i}]['content'] must be a string (flatten Gradio's content parts first)")
        if message["role"] == "system" and i != 0:
            raise ValueError(f"messages[{i}] is a system message; only the first message may be one")
        cleaned.append({"role": message["role"], "content": storable(message["content"])})
    if cleaned[-1]["role"] != "user":
        raise ValueError("the last of messages must be the user's new message (role 'user')")
    return tuple(cleaned)


def _checked_json(name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict, got {type(value).__name__}")
    try:
        # Round trip: a plain copy, and allow_nan=False because PostgreSQL's JSON refuses NaN.
        return _storable_json(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{name} must hold only JSON values (str, number, bool, None, list, dict; no NaN): {e}"
        ) from None


def _checked_scores(scores: object) -> dict[int, int]:
    if not isinstance(scores, Mapping):
        raise ValueError(f"scores must be a dict of position -> score, got {type(scores).__name__}")
    for position, score in scores.items():
        _check_int("a scores position", position)
        _check_int(f"the score for position {position}", score, minimum=SCORE_MIN, maximum=SCORE_MAX)
    return dict(scores)


def _checked_ranks(ranks: object) -> dict[int, int]:
    if not isinstance(ranks, Mapping):
        raise ValueError(f"ranks must be a dict of position -> rank (1 = best), got {type(ranks).__name__}")
    for position, rank in ranks.items():
        _check_int("a ranks position", position)
        _check_int(f"the rank for position {position}", rank, minimum=1)
    return dict(ranks)


def _cleaned_rater(rater: object) -> str | None:
    """An annotator name or session id: stripped, empty means unknown."""
    if rater is None:
        return None
    _check_text("rater", rater)
    text = storable(str(rater)).strip()
    if len(text) > MAX_NAME_CHARS["rater"]:
        raise ValueError(f"rater is {len(text)} characters; at most {MAX_NAME_CHARS['rater']} fit")
    return text or None


def _checked_unsafe(unsafe: object) -> dict[int, str | None]:
    if not isinstance(unsafe, Mapping):
        raise ValueError(f"unsafe must be a dict of position -> reason or None, got {type(unsafe).__name__}")
    cleaned = {}
    for position, reason in unsafe.items():
        _check_int("an unsafe position", position)
        cleaned[position] = _cleaned_note(f"the unsafe reason for position {position}", reason)
    return cleaned


def _cleaned_note(name: str, value: object) -> str | None:
    """Free text from a person: stripped, empty means none, bounded in size."""
    if value is None:
        return None
    _check_text(name, value)
    text = storable(str(value)).strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise ValueError(f"{name} is {len(text)} characters; at most {MAX_COMMENT_CHARS} are kept, shorten it")
    return text or None
