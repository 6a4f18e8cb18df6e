"""Training rows from the ratings, streamed: TRL preference (dpo), reward, KTO and SFT rows.

Every row is plain JSON data in TRL's conversational form (lists of role/content messages) and carries
`comparison_id` and `rating_id`, so it can be traced back to the answers and the vote.

- dpo: `prompt` (the conversation up to and including the last user turn, system message first, as the
  chosen answer saw it), `chosen` and `rejected` (one assistant message each), one row per pair
  (pairs.py): ties and both-bad ratings are left out and counted.
- reward: dpo plus `margin` from the strength (pairs.STRENGTH_MARGIN: the Llama 2 margin loss).
- kto: `prompt`, `completion`, `label`, one row per labelled answer. Desirable (True): a score >= 4;
  the winner of a pairwise vote at least "better" (or --min-strength, if stronger). Undesirable
  (False): a score <= 2; the loser of such a vote; both answers of a both-bad vote; any answer flagged
  unsafe (this overrides the rest). Scores of 3, ties, weaker or quick votes and rankings say nothing
  absolute about one answer, so they give no label.
- sft: `messages` (the answer's own conversation plus the answer) for each preferred answer: it wins
  a pair that passes the filters and loses none, is not flagged unsafe, did not fail, and, if scored,
  scored >= 4. The loser may have replied to a different conversation: the row holds only the winner's.
Always, as in the Llama 2 paper (section 3.2.1), safer answers are taken to be the better ones: a pair
whose chosen answer was flagged unsafe and whose rejected one was not is left out, and a rating that
prefers an unsafe answer to a safe one gives no KTO label at all. Answers that failed (finish_reason
"error") are left out of every format unless `include_errors` is set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from sqlalchemy.orm import Session

from .pairs import Decomposition, Pair, at_least
from .reading import RatedAnswer, RatedComparison, RatingFilter, iter_rated
from .records import STRENGTHS, Strength

Format = Literal["dpo", "reward", "kto", "sft"]
FORMATS: tuple[str, ...] = get_args(Format)
GOOD_SCORE, BAD_SCORE = 4, 2
KTO_MIN_STRENGTH: Strength = "better"
SKIP_REASONS = {
    "contender": "with a contender not asked for",
    "errored": "with a failed answer",
    "unsafe": "with an unsafe answer",
    "unsafe_chosen": "preferring an unsafe answer to a safe one",
    "different_prompts": "whose answers replied to different conversations",
    "strength": "below the minimum strength",
    "no_label": "answers without a KTO label",
    "low_score": "preferred answers scored below 4",
}


@dataclass(frozen=True)
class ExportOptions:
    """What to export: the format, which ratings (`where`), and which pairs or answers to keep."""

    format: Format
    where: RatingFilter = RatingFilter()
    contenders: frozenset[str] = frozenset()  # keep only pairs (answers) of these contenders; empty: all
    min_strength: Strength | None = None
    exclude_unsafe: bool = False
    include_errors: bool = False  # a failed answer's text is a partial reply or nothing: out by default
    # The asker's salted address hash, to find one visitor's data: never exported unless asked for.
    include_visitor: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.min_strength is not None and self.min_strength not in STRENGTHS:
            raise ValueError(f"min_strength must be one of {', '.join(STRENGTHS)}, got {self.min_strength!r}")
        object.__setattr__(self, "contenders", frozenset(self.contenders))


@dataclass
class Tally:
    """Counts kept while rows stream out; `summary()` freezes them."""

    ratings: int = 0
    rows: int = 0
    ties: int = 0
    both_bad: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self, export_format: str) -> ExportSummary:
        return ExportSummary(export_format, self.rows, self.ratings, self.ties, self.both_bad, dict(self.skipped))


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote and what it left out, and why."""

    format: str
    rows: int
    ratings: int
    ties: int
    both_bad: int
    skipped: dict[str, int]

    def line(self) -> str:
        """One line for a person: rows written, ties and both-bad left out, filtered-out counts."""
        text = f"exported {self.rows} {self.format} rows from {self.ratings} ratings; "
        if self.format == "kto":  # KTO labels answers one by one: a tie is just an answer without a label
            text += f"both-bad ratings labelled undesirable: {self.both_bad}"
        else:
            text += f"ties left out: {self.ties}; both-bad ratings left out: {self.both_bad}"
        filtered = [f"{count} {SKIP_REASONS[reason]}" for reason, count in sorted(self.skipped.items()) if count]
        return text + (f"; filtered out: {', '.join(filtered)}" if filtered else "")


def iter_rows(session: Session, options: ExportOptions, tally: Tally | None = None) -> Iterator[dict[str, Any]]:
    """The export's rows, one at a time, in rating order; `tally` (if given) counts as they go."""
    tally = tally if tally is not None else Tally()
    build = ROW_BUILDERS[options.format]
    for rated in iter_rated(session, options.where, with_text=True):
        tally.ratings += 1
        for row in build(rated, options, tally):
            tally.rows += 1
            yield row


def _pair_rows(rated: RatedComparison, options: ExportOptions, tally: Tally) -> Iterator[dict[str, Any]]:
    for pair, chosen, rejected in _kept_pairs(rated, options, tally):
        row = {"prompt": _prompt(chosen), "chosen": _reply(chosen), "rejected": _reply(rejected)}
        if options.format == "reward":
            row["margin"] = pair.margin
        yield (
            row
            | _trace(rated, options)
            | {
                "strength": pair.strength,
                "chosen_contender": chosen.contender,
                "rejected_contender": rejected.contender,
                "chosen_position": chosen.position,
                "rejected_position": rejected.position,
            }
        )


def _kept_pairs(
    rated: RatedComparison, options: ExportOptions, tally: Tally, one_prompt: bool = True
) -> Iterator[tuple[Pair, RatedAnswer, RatedAnswer]]:
    """The non-tie pairs that pass the filters; ties, both-bad and refusals are counted.

    one_prompt=False keeps pairs whose answers replied to different conversations (for SFT).
    """
    decomposition = rated.decomposition()
    tally.both_bad += decomposition.both_bad
    for pair in decomposition.pairs:
        if pair.tie:
            tally.ties += 1
            continue
        chosen, rejected = rated.answer(pair.winner), rated.answer(pair.loser)
        reason = _pair_refusal(pair, chosen, rejected, options, one_prompt)
        if reason is not None:
            tally.skipped[reason] += 1
            continue
        yield pair, chosen, rejected


def _pair_refusal(
    pair: Pair, chosen: RatedAnswer, rejected: RatedAnswer, options: ExportOptions, one_prompt: bool = True
) -> str | None:
    """Why a pair is left out, or None to keep it."""
    both = (chosen, rejected)
    if options.contenders and not all(answer.contender in options.contenders for answer in both):
        return "contender"
    if not options.include_errors and any(answer.errored for answer in both):
        return "errored"
    if options.exclude_unsafe and any(answer.unsafe for answer in both):
        return "unsafe"
    if chosen.unsafe and not rejected.unsafe:
        return "unsafe_chosen"
    if one_prompt and chosen.messages != rejected.messages:
        # A preference pair needs one prompt. Later turns in named mode (each pane kept its own
        # answers) or different system prompts make the two conversations differ.
        return "different_prompts"
    if options.min_strength is not None and not at_least(pair.strength, options.min_strength):
        return "strength"
    return None


def _kto_rows(rated: RatedComparison, options: ExportOptions, tally: Tally) -> Iterator[dict[str, Any]]:
    decomposition = rated.decomposition()
    tally.both_bad += decomposition.both_bad
    if _prefers_unsafe(rated, decomposition):
        # The pairwise formats leave such a pair out; the same vote must not label its answers either.
        tally.skipped["unsafe_chosen"] += 1
        return
    labels = _kto_labels(rated, decomposition, options)
    for answer in rated.answers:
        if answer.position not in labels:
            tally.skipped["no_label"] += 1
            continue
        reason = _answer_refusal(answer, options)
        if reason is not None:
            tally.skipped[reason] += 1
            continue
        label, source = labels[answer.position]
        yield (
            {"prompt": _prompt(answer), "completion": _reply(answer), "label": label}
            | _trace(rated, options)
            | {
                "label_source": source,
                "contender": answer.contender,
                "position": answer.position,
            }
        )


def _kto_labels(
    rated: RatedComparison, decomposition: Decomposition, options: ExportOptions
) -> dict[int, tuple[bool, str]]:
    """Position -> (desirable, why), by the rules in the module docstring."""
    labels: dict[int, tuple[bool, str]] = {}
    if decomposition.both_bad:
        labels = {answer.position: (False, "both_bad") for answer in rated.answers}
    elif rated.kind == "scores":
        for answer in rated.answers:
            if answer.score is not None and (answer.score >= GOOD_SCORE or answer.score <= BAD_SCORE):
                labels[answer.position] = (answer.score >= GOOD_SCORE, "score")
    elif rated.kind == "pairwise":
        minimum = _stronger(KTO_MIN_STRENGTH, options.min_strength)
        for pair in decomposition.pairs:
            if not pair.tie and at_least(pair.strength, minimum):
                labels[pair.winner], labels[pair.loser] = (True, "preference"), (False, "preference")
    for answer in rated.answers:
        if answer.unsafe:
            labels[answer.position] = (False, "unsafe")
    return labels


def _prefers_unsafe(rated: RatedComparison, decomposition: Decomposition) -> bool:
    """Whether the rating puts an answer flagged unsafe above one that was not."""
    return any(
        rated.answer(pair.winner).unsafe and not rated.answer(pair.loser).unsafe
        for pair in decomposition.pairs
        if not pair.tie
    )


def _answer_refusal(answer: RatedAnswer, options: ExportOptions) -> str | None:
    if options.contenders and answer.contender not in options.contenders:
        return "contender"
    if not options.include_errors and answer.errored:
        return "errored"
    if options.exclude_unsafe and answer.unsafe:
        return "unsafe"
    return None


def _sft_rows(rated: RatedComparison, options: ExportOptions, tally: Tally) -> Iterator[dict[str, Any]]:
    beaten = {pair.loser for pair in rated.decomposition().pairs if not pair.tie}
    # The row is the winner's own conversation, so the loser's may differ (a later turn where each
    # pane kept its own answers): that pair still says which answer was preferred.
    winners = {pair.winner for pair, _, _ in _kept_pairs(rated, options, tally, one_prompt=False)}
    for position in sorted(winners - beaten):
        answer = rated.answer(position)
        # Never a failed answer, even with include_errors: an SFT row teaches its text as a good reply.
        reason = "unsafe" if answer.unsafe else "errored" if answer.errored else None
        if reason is None and answer.score is not None and answer.score < GOOD_SCORE:
            reason = "low_score"
        if reason is not None:
            tally.skipped[reason] += 1
            continue
        yield (
            {"messages": _prompt(answer) + _reply(answer)}
            | _trace(rated, options)
            | {
                "contender": answer.contender,
                "position": answer.position,
            }
        )


def _stronger(a: Strength, b: Strength | None) -> Strength:
    return a if b is None or STRENGTHS.index(a) <= STRENGTHS.index(b) else b


def _prompt(answer: RatedAnswer) -> list[dict[str, str]]:
    return [dict(message) for message in answer.messages]


def _reply(answer: RatedAnswer) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": answer.text}]


def _trace(rated: RatedComparison, options: ExportOptions) -> dict[str, Any]:
    trace = {
        "comparison_id": rated.comparison_id,
        "rating_id": rated.rating_id,
        "lineup": rated.lineup,
        "blind": rated.blind,
        "kind": rated.kind,
    }
    return trace | {"visitor": rated.visitor} if options.include_visitor else trace


ROW_BUILDERS = {"dpo": _pair_rows, "reward": _pair_rows, "kto": _kto_rows, "sft": _sft_rows}
