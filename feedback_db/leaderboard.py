"""A Bradley-Terry leaderboard of the contenders, on the Elo-like scale of FastChat's Chatbot Arena.

Battles are the pairwise outcomes of the ratings (pairs.py): a rating of n answers gives n(n-1)/2
battles. As in FastChat's `compute_mle_elo`, a tie counts as half a win each way, and a both-bad vote
counts as a tie. The fit is maximum likelihood: P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)),
anchored so the mean rating is 1000 (FastChat's unpenalised fit from zero keeps the same mean and then
shifts to a reference model; a mean needs no reference). Intervals: 2.5 and 97.5 percentiles of the
fit on battles resampled with replacement, `rounds` times. Blind (arena) ratings only by default.
Until every contender has `min_battles` battles the board is preliminary: a few votes give extreme
ratings (one win in one battle sends a rating far up) and bootstrap intervals of zero width.
Ratings set aside (rules.py) give no battles unless `include_set_aside`; the board counts them by reason.
A weak prior (PRIOR_TIES virtual ties of each contender against an average one) keeps a few votes from
giving absurd ratings. Beside the plain fit, style.py fits the ratings with answer style held fixed.
Rank: 1 + the number of contenders whose interval lies wholly above one's own (without intervals: whose
rating is higher), so contenders that cannot be told apart share a rank, as lmarena ranks them.
`digest`: sha256 of the votes used (rating ids, their battles and style counts), with `seed`: the same
votes and seed give the same numbers on any database.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from sqlalchemy.orm import Session

from .bradley_terry import ELO_BASE, ELO_INIT, ELO_SCALE, bootstrap_ratings, fit_ratings
from .reading import RatedComparison, RatingFilter, SetAside, SetAsideTally, iter_rated
from .style import Duel, Estimate, StyleFit, duels_of, fit_style

__all__ = [
    "DEFAULT_MIN_BATTLES",
    "ELO_BASE",
    "ELO_INIT",
    "ELO_SCALE",
    "Battle",
    "Leaderboard",
    "Row",
    "battles_of",
    "build_leaderboard",
    "format_leaderboard",
    "leaderboard_of",
    "preliminary_note",
]

DEFAULT_MIN_BATTLES = 20
PRIOR_TIES = 2.0


@dataclass(frozen=True)
class Battle:
    """One pairwise outcome between two contenders; for a tie the order means nothing."""

    winner: str
    loser: str
    tie: bool = False


@dataclass(frozen=True)
class Row:
    """One contender's line: its rating, 95% interval (None without bootstrap rounds), and record.

    `preliminary`: fewer battles than the board's min_battles, so the rating has not settled.
    """

    contender: str
    rating: float
    lower: float | None
    upper: float | None
    battles: int
    wins: int
    losses: int
    ties: int
    preliminary: bool = False
    rank: int = 0


@dataclass(frozen=True)
class Leaderboard:
    """Rows by rating, best first; win_rate[a][b] is a's share of its battles with b, ties as half."""

    rows: tuple[Row, ...]
    win_rate: dict[str, dict[str, float]]
    battles_total: int
    ratings_used: int
    blind_only: bool
    rounds: int
    # Position bias: the share of decisive pairwise votes (A or B) that went to pane A; 0.5 is none.
    a_share: float | None = None
    min_battles: int = DEFAULT_MIN_BATTLES
    # The set-aside ratings the board's filter met: left out (or, include_set_aside, counted in).
    set_aside: SetAside = field(default_factory=SetAside)
    seed: int = 0
    digest: str = ""
    prior_ties: float = PRIOR_TIES
    # Ratings with style held fixed (None when built from battles without their answers' style).
    style: StyleFit | None = None
    style_ranks: dict[str, int] = field(default_factory=dict)

    @property
    def preliminary(self) -> bool:
        """Whether some contender has fewer than min_battles battles."""
        return any(row.preliminary for row in self.rows)

    @property
    def fewest_battles(self) -> int:
        """The battles of the contender with the fewest (0 for an empty board)."""
        return min((row.battles for row in self.rows), default=0)


def leaderboard_of(
    session: Session,
    *,
    blind_only: bool = True,
    lineup: str | None = None,
    rounds: int = 1000,
    seed: int = 0,
    min_battles: int = DEFAULT_MIN_BATTLES,
    include_set_aside: bool = False,
) -> Leaderboard:
    """The leaderboard of the stored ratings (blind ones only unless blind_only=False; set-aside ones
    left out and counted unless include_set_aside)."""
    where = RatingFilter(lineup=lineup, blind_only=blind_only, include_set_aside=include_set_aside)
    ratings = 0
    duels: list[Duel] = []
    votes = Counter[str]()
    set_aside = SetAsideTally()
    for rated in iter_rated(session, where, with_text=True, set_aside=set_aside):
        ratings += 1
        duels += duels_of(rated)
        votes[rated.choice or ""] += 1
    # A fixed order, whatever order the database returned: the bootstrap resamples by position.
    duels.sort(key=lambda duel: duel.rating_id)
    board = build_leaderboard(
        [_battle(d) for d in duels],
        rounds=rounds,
        seed=seed,
        blind_only=blind_only,
        ratings_used=ratings,
        min_battles=min_battles,
        duels=duels,
    )
    decisive = votes["a"] + votes["b"]
    return replace(
        board,
        a_share=votes["a"] / decisive if decisive else None,
        set_aside=set_aside.frozen(include_set_aside),
        digest=votes_digest(duels),
    )


def votes_digest(duels: list[Duel]) -> str:
    """sha256 of the votes a board used: per battle its rating id, contenders, score and style counts."""
    text = "".join(
        f"{d.rating_id}\t{d.first}\t{d.second}\t{d.score}\t{d.first_style}\t{d.second_style}\n" for d in duels
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _battle(duel: Duel) -> Battle:
    if duel.score == 0.5:
        return Battle(duel.first, duel.second, tie=True)
    return Battle(duel.first, duel.second) if duel.score == 1 else Battle(duel.second, duel.first)


def confidence_ranks(values: list[float], lowers: list[float | None], uppers: list[float | None]) -> list[int]:
    """1 + how many others lie wholly above each (their lower bound over its upper; no intervals: higher)."""
    lows = [v if lo is None else lo for v, lo in zip(values, lowers)]
    highs = [v if hi is None else hi for v, hi in zip(values, uppers)]
    return [1 + sum(low > high for low in lows) for high in highs]


def battles_of(rated: RatedComparison) -> list[Battle]:
    """The battles of one rating: its pairs by contender; both-bad is a tie between the two answers."""
    contender_at = {answer.position: answer.contender for answer in rated.answers}
    decomposition = rated.decomposition()
    if decomposition.both_bad:
        return [Battle(contender_at[0], contender_at[1], tie=True)]
    return [Battle(contender_at[p.winner], contender_at[p.loser], p.tie) for p in decomposition.pairs]


def build_leaderboard(
    battles: Iterable[Battle],
    *,
    rounds: int = 1000,
    seed: int = 0,
    blind_only: bool = True,
    ratings_used: int | None = None,
    min_battles: int = DEFAULT_MIN_BATTLES,
    prior_ties: float = PRIOR_TIES,
    duels: list[Duel] | None = None,
) -> Leaderboard:
    """Fit, bootstrap and tabulate a list of battles; given `duels` (the same battles with page order and
    style), also the style-controlled fit."""
    if isinstance(min_battles, bool) or not isinstance(min_battles, int) or min_battles < 0:
        raise ValueError(f"min_battles must be a whole number >= 0 (0: never preliminary), got {min_battles!r}")
    battles = list(battles)
    names = sorted({b.winner for b in battles} | {b.loser for b in battles})
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    wins, ties = np.zeros((n, n)), np.zeros((n, n))
    for battle in battles:
        i, j = index[battle.winner], index[battle.loser]
        if battle.tie:
            ties[i, j] += 1
            ties[j, i] += 1
        else:
            wins[i, j] += 1
    ratings = fit_ratings(wins + ties / 2, prior_ties=prior_ties) if n else np.zeros(0)
    lower = upper = None
    if rounds > 0 and n:
        samples = bootstrap_ratings(wins, ties, rounds=rounds, seed=seed, prior_ties=prior_ties)
        lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
    played = wins.sum(axis=1) + wins.sum(axis=0) + ties.sum(axis=1)
    rows = [
        Row(
            names[i],
            float(ratings[i]),
            None if lower is None else float(lower[i]),
            None if upper is None else float(upper[i]),
            battles=int(played[i]),
            wins=int(wins[i].sum()),
            losses=int(wins[:, i].sum()),
            ties=int(ties[i].sum()),
            preliminary=bool(played[i] < min_battles),
        )
        for i in range(n)
    ]
    rows.sort(key=lambda row: (-row.rating, row.contender))
    ranks = confidence_ranks([r.rating for r in rows], [r.lower for r in rows], [r.upper for r in rows])
    rows = [replace(row, rank=rank) for row, rank in zip(rows, ranks)]
    style = fit_style(duels, names, rounds=rounds, seed=seed, prior_ties=prior_ties) if duels else None
    style_ranks = {}
    if style is not None:
        found = style.ratings
        ranks = confidence_ranks([e.value for e in found], [e.lower for e in found], [e.upper for e in found])
        style_ranks = {e.name: rank for e, rank in zip(found, ranks)}
    return Leaderboard(
        tuple(rows),
        _win_rates(names, wins, ties),
        len(battles),
        len(battles) if ratings_used is None else ratings_used,
        blind_only,
        rounds,
        min_battles=min_battles,
        seed=seed,
        prior_ties=prior_ties,
        style=style,
        style_ranks=style_ranks,
    )


def _win_rates(names: list[str], wins: np.ndarray, ties: np.ndarray) -> dict[str, dict[str, float]]:
    games = wins + wins.T + ties
    return {
        a: {b: float((wins[i, j] + ties[i, j] / 2) / games[i, j]) for j, b in enumerate(names) if games[i, j]}
        for i, a in enumerate(names)
    }


def preliminary_note(board: Leaderboard) -> str:
    """One sentence for a preliminary board: how many votes so far, and what it waits for."""
    votes = f"{board.ratings_used} vote{'' if board.ratings_used == 1 else 's'}"
    return (
        f"Preliminary: {votes} so far; ratings settle once every contender has {board.min_battles} "
        f"battles (the fewest now: {board.fewest_battles}); {board.prior_ties:g} virtual ties of each "
        f"contender against an average one keep early ratings near {ELO_INIT:g}."
    )


def format_leaderboard(board: Leaderboard) -> str:
    """The leaderboard as a plain-text table, then the win-rate matrix."""
    which = "blind (arena) ratings" if board.blind_only else "all ratings"
    lines = [
        f"Bradley-Terry ratings from {board.battles_total} battles in {board.ratings_used} {which}"
        f" (scale {ELO_SCALE:g}, base {ELO_BASE:g}, mean {ELO_INIT:g}; 95% interval from "
        f"{board.rounds} bootstrap rounds)",
        "",
    ]
    width = max([len("contender")] + [len(row.contender) for row in board.rows])
    lines.append(
        f"{'rank':>4}  {'contender':<{width}}  {'rating':>7}  {'95% interval':>17}  "
        f"{'battles':>7}  {'wins':>6}  {'losses':>6}  {'ties':>6}"
    )
    styled = {e.name: e for e in board.style.ratings} if board.style else {}
    for row in board.rows:
        interval = "" if row.lower is None else f"{row.lower:7.1f} .. {row.upper:7.1f}"
        lines.append(
            f"{row.rank:>4}  {row.contender:<{width}}  {row.rating:7.1f}  {interval:>17}  "
            f"{row.battles:>7}  {row.wins:>6}  {row.losses:>6}  {row.ties:>6}"
            + ("  preliminary" if row.preliminary else "")
        )
    if not board.rows:
        hint = ", or no blind ratings; try --all" if board.blind_only else ""
        lines.append(f"(no battles: nothing rated yet{hint})")
    if board.set_aside.ratings:
        hint = "" if board.set_aside.included else " (--include-set-aside counts them)"
        lines += ["", board.set_aside.line() + hint]
    if board.preliminary:
        lines += ["", preliminary_note(board)]
    if board.style is not None:
        lines += ["", "with style held fixed (rank, rating, 95% interval):"]
        for row in board.rows:
            e = styled[row.contender]
            interval = "" if e.lower is None else f"{e.lower:7.1f} .. {e.upper:7.1f}"
            lines.append(f"{board.style_ranks[e.name]:>4}  {e.name:<{width}}  {e.value:7.1f}  {interval:>17}")
        lines.append("style coefficients (rating points per standard deviation of (a - b) / (a + b)):")
        lines += [f"  {e.name:<8} {e.value:8.1f}" + _interval(e) for e in board.style.coefficients]
        first = board.style.first_shown
        lines.append(
            f"position effect: the first-shown answer beats an equal one {first.value:.1%}" + _interval(first, True)
        )
    if board.a_share is not None:
        lines += ["", f"position bias: pane A won {board.a_share:.1%} of the decisive A/B votes (50% is none)"]
    lines += ["", "win rate of the row against the column (ties as half; - where they never met)"]
    names = [row.contender for row in board.rows]
    lines.append(" " * width + "".join(f"  {name[:8]:>8}" for name in names))
    for a in names:
        cells = [board.win_rate[a].get(b) for b in names]
        lines.append(f"{a:<{width}}" + "".join("         -" if c is None else f"  {c:8.3f}" for c in cells))
    lines += ["", f"votes sha256 {board.digest or '-'}, bootstrap seed {board.seed}"]
    return "\n".join(lines)


def _interval(estimate: Estimate, share: bool = False) -> str:
    if estimate.lower is None:
        return ""
    return (
        f" ({estimate.lower:.1%} .. {estimate.upper:.1%})"
        if share
        else f" ({estimate.lower:.1f} .. {estimate.upper:.1f})"
    )
