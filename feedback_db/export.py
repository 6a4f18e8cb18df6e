"""Training rows from the ratings, streamed: TRL preference (dpo), reward, KTO and SFT rows.

Every row is plain JSON data in TRL's conversational form (lists of role/content messages) and carries
`comparison_id` and `rating_id`, so it can be traced back to the answers and the vote.

- dpo: `prompt` (the conversation up to and including the last user turn, system message first, as the
  chosen answer saw it), `chosen` and `rejected` (one assistant message each), one row per pair
  (pairs.py): ties and both-bad ratings are left out and counted, and so are pairs whose chosen and
  rejected texts are identical.
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
"error") are left out of every format unless `include_errors` is set (which also brings back the
ratings set aside only as "errored").

Every row carries `rater`, the rater's pseudonym (null when unknown). Ratings set aside (rules.py) are
left out and counted by reason in the summary; `include_set_aside` keeps them, and each row then says
why in `set_aside` (an empty list: it counts).

aggregate="majority": one row per comparison (per pair for dpo and reward) that a strict majority of
its raters agree on, instead of one per rating. Each rating gives the rows above on its own (so every
filter, and each rater's own unsafe flags, apply per rater); then, per unit, the verdicts of all the
comparison's raters are counted, a rater whose rating gives no row for the unit counting as "none":
- dpo, reward: the unit is a pair of answers, the verdict its winner (a tie, both bad, a vote weaker
  than min_strength, or a refused pair: none). The row's strength is the median of the majority's
  known strengths (the weaker of the middle two), its margin that strength's.
- kto: the unit is an answer, the verdict its label (desirable, undesirable, or none).
- sft: the unit is the comparison, the verdict the set of answers the rater prefers (none: no answer).
A verdict given by more than half the raters makes the row, from the earliest rating of that majority,
with `raters` (how many rated the comparison) and `minority` (how many did not give that verdict), and
`rater` null; a majority for "none" makes no row. Units where no verdict has a strict majority (1-1,
or 1-1-1) are left out and counted ("no majority"). A comparison with one rater is its own majority.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

from sqlalchemy.orm import Session

from .pairs import STRENGTH_MARGIN, Decomposition, Pair, at_least
from .reading import (
    RatedAnswer,
    RatedComparison,
    RatingFilter,
    SetAside,
    SetAsideTally,
    iter_rated,
    iter_rated_by_comparison,
)
from .records import STRENGTHS, Strength

Format = Literal["dpo", "reward", "kto", "sft"]
FORMATS: tuple[str, ...] = get_args(Format)
Aggregate = Literal["majority"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
# What one majority is taken over, per format (the summary counts units without one).
MAJORITY_UNIT = {"dpo": "pair", "reward": "pair", "kto": "answer", "sft": "comparison"}
GOOD_SCORE, BAD_SCORE = 4, 2
KTO_MIN_STRENGTH: Strength = "better"
SKIP_REASONS = {
    "contender": "with a contender not asked for",
    "errored": "with a failed answer",
    "unsafe": "with an unsafe answer",
    "unsafe_chosen": "preferring an unsafe answer to a safe one",
    "different_prompts": "whose answers replied to different conversations",
    "identical": "whose chosen and rejected answers are the same text",
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
    include_set_aside: bool = False  # ratings whose stored reasons say they do not count (rules.py)
    aggregate: Aggregate | None = None  # None: one row per rating; "majority": see the module docstring

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.aggregate is not None and self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)} or None, got {self.aggregate!r}")
        if self.min_strength is not None and self.min_strength not in STRENGTHS:
            raise ValueError(f"min_strength must be one of {', '.join(STRENGTHS)}, got {self.min_strength!r}")
        object.__setattr__(self, "contenders", frozenset(self.contenders))

    @property
    def keeps_set_aside(self) -> bool:
        """Whether set-aside ratings are exported (and rows carry `set_aside`)."""
        return self.include_set_aside or self.where.include_set_aside

    def rating_filter(self) -> RatingFilter:
        """`where`, with the set-aside ratings these options bring back."""
        overlooked = self.where.overlooked | ({"errored"} if self.include_errors else set())
        return replace(self.where, include_set_aside=self.keeps_set_aside, overlooked=frozenset(overlooked))


@dataclass
class Tally:
    """Counts kept while rows stream out; `summary()` freezes them."""

    ratings: int = 0
    rows: int = 0
    ties: int = 0
    both_bad: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    set_aside: SetAsideTally = field(default_factory=SetAsideTally)
    comparisons: int = 0  # aggregate only: comparisons read
    no_majority: int = 0  # aggregate only: units without a strict majority

    def summary(self, export_format: str, options: ExportOptions | None = None) -> ExportSummary:
        return ExportSummary(
            export_format,
            self.rows,
            self.ratings,
            self.ties,
            self.both_bad,
            dict(self.skipped),
            set_aside=self.set_aside.frozen(options is not None and options.keeps_set_aside),
            aggregate=options.aggregate if options is not None else None,
            comparisons=self.comparisons,
            no_majority=self.no_majority,
        )


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote and what it left out, and why."""

    format: str
    rows: int
    ratings: int
    ties: int
    both_bad: int
    skipped: dict[str, int]
    set_aside: SetAside = field(default_factory=SetAside)
    aggregate: str | None = None
    comparisons: int = 0
    no_majority: int = 0

    def line(self) -> str:
        """One line for a person: rows written, ties and both-bad left out, filtered-out and set-aside counts."""
        text = f"exported {self.rows} {self.format} rows from {self.ratings} ratings"
        if self.aggregate == "majority":
            text += f" of {self.comparisons} comparisons (majority of raters)"
        if self.format == "kto":  # KTO labels answers one by one: a tie is just an answer without a label
            text += f"; both-bad ratings labelled undesirable: {self.both_bad}"
        else:
            text += f"; ties left out: {self.ties}; both-bad ratings left out: {self.both_bad}"
        if self.aggregate == "majority":
            unit = MAJORITY_UNIT[self.format] + ("" if self.no_majority == 1 else "s")
            text += f"; no majority: {self.no_majority} {unit}"
        filtered = [f"{count} {SKIP_REASONS[reason]}" for reason, count in sorted(self.skipped.items()) if count]
        text += f"; filtered out: {', '.join(filtered)}" if filtered else ""
        return text + (f"; {self.set_aside.line()}" if self.set_aside.ratings else "")

    def as_json(self) -> dict[str, Any]:
        """The summary as plain JSON data."""
        return asdict(self) | {"line": self.line()}


def iter_rows(session: Session, options: ExportOptions, tally: Tally | None = None) -> Iterator[dict[str, Any]]:
    """The export's rows, one at a time, in rating order; `tally` (if given) counts as they go."""
    tally = tally if tally is not None else Tally()
    where = options.rating_filter()
    if options.aggregate == "majority":
        for group in iter_rated_by_comparison(session, where, with_text=True, set_aside=tally.set_aside):
            tally.ratings += len(group)
            tally.comparisons += 1
            for row in _majority_rows(group, options, tally):
                tally.rows += 1
                yield row
        return
    build = ROW_BUILDERS[options.format]
    for rated in iter_rated(session, where, with_text=True, set_aside=tally.set_aside):
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
    if one_prompt and chosen.text == rejected.text:
        # Two identical replies teach a preference model nothing, and DPO's loss on them is a constant.
        return "identical"
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
        "rater": rated.rater,
    }
    if options.include_visitor:
        trace["visitor"] = rated.visitor
    if options.keeps_set_aside:
        trace["set_aside"] = list(rated.set_aside)
    return trace


ROW_BUILDERS = {"dpo": _pair_rows, "reward": _pair_rows, "kto": _kto_rows, "sft": _sft_rows}


def _majority_rows(
    group: tuple[RatedComparison, ...], options: ExportOptions, tally: Tally
) -> Iterator[dict[str, Any]]:
    """The rows a strict majority of one comparison's raters agree on (see the module docstring)."""
    build = ROW_BUILDERS[options.format]
    # Per rating: unit -> (verdict, its rows for that verdict).
    votes = [_verdicts(list(build(rated, options, tally)), options.format) for rated in group]
    for unit in dict.fromkeys(unit for vote in votes for unit in vote):  # units in the order first met
        counted = Counter(vote[unit][0] if unit in vote else None for vote in votes)
        verdict, agreeing = counted.most_common(1)[0]
        if agreeing * 2 <= len(group):
            tally.no_majority += 1
            continue
        if verdict is None:  # most raters gave this unit no row (a tie, both bad, filtered out)
            continue
        majority = [vote[unit][1] for vote in votes if unit in vote and vote[unit][0] == verdict]
        for rows in zip(*majority):  # one row per answer (sft), the same answers in every majority rating
            yield _majority_row(list(rows), options, len(group), len(group) - agreeing)


def _verdicts(rows: list[dict[str, Any]], export_format: str) -> dict[Any, tuple[Any, list[dict[str, Any]]]]:
    """One rating's rows as unit -> (verdict, rows): a pair -> its winner, an answer -> its label, or
    (sft) the comparison -> the answers preferred."""
    if export_format == "sft":
        return {None: (frozenset(row["position"] for row in rows), rows)} if rows else {}
    if export_format == "kto":
        return {row["position"]: (row["label"], [row]) for row in rows}
    return {
        frozenset((row["chosen_position"], row["rejected_position"])): (row["chosen_position"], [row]) for row in rows
    }


def _majority_row(rows: list[dict[str, Any]], options: ExportOptions, raters: int, minority: int) -> dict[str, Any]:
    """The earliest majority rating's row, standing for them all."""
    row = dict(rows[0]) | {"blind": all(r["blind"] for r in rows), "rater": None}
    if options.format in ("dpo", "reward"):
        known = sorted((r["strength"] for r in rows if r["strength"] is not None), key=STRENGTHS.index)
        # STRENGTHS runs strongest first: the weaker of the two middle ones is at len // 2.
        row["strength"] = known[len(known) // 2] if known else None
        if options.format == "reward":
            row["margin"] = STRENGTH_MARGIN[row["strength"]] if row["strength"] is not None else 0.0
    if "set_aside" in row:
        row["set_aside"] = sorted({reason for r in rows for reason in r["set_aside"]})
    return row | {"raters": raters, "minority": minority}
