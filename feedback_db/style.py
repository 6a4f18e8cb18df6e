"""Style control: Bradley-Terry ratings with the answers' style held fixed, as lmarena published it.

FastChat's `monitor/elo_analysis.py` ("style control") adds, per battle, the normalized differences of
the two answers in length and markdown (headers, list items, bold spans) as covariates of the
logistic fit: feature = (a - b) / (a + b), 0 when both are 0, then standardized over the battles.
A contender's coefficient is then its strength with style held fixed. Here the fit also has an
intercept: the advantage of the answer shown first (the lower pane), the position effect.
Length is counted in words of the answer text (imported answers carry no token counts).
Intervals: 2.5 and 97.5 percentiles over `rounds` resamples of the battles; features are
standardized once on all battles, as FastChat does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bradley_terry import ELO_BASE, ELO_INIT, ELO_SCALE, fit_logistic
from .reading import RatedComparison

__all__ = ["STYLE_NAMES", "Duel", "Estimate", "StyleCounts", "StyleFit", "duels_of", "fit_style", "style_of"]

STYLE_NAMES = ("length", "headers", "lists", "bold")
POINTS = ELO_SCALE / np.log(ELO_BASE)  # rating points per unit of log-odds
_CODE = re.compile(r"```[^`]*```")  # FastChat drops code blocks before counting markdown
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_LIST = re.compile(r"^\s*(?:\d+\.|[-*+])\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


@dataclass(frozen=True)
class StyleCounts:
    """What style control counts in one answer."""

    length: int
    headers: int
    lists: int
    bold: int


def style_of(text: str) -> StyleCounts:
    """Words, markdown headers, list items and bold spans of an answer (code blocks not counted)."""
    prose = _CODE.sub("", text)
    return StyleCounts(
        len(text.split()), len(_HEADER.findall(prose)), len(_LIST.findall(prose)), len(_BOLD.findall(prose))
    )


@dataclass(frozen=True)
class Duel:
    """One battle with its order on the page: score 1 if the first shown won, 0 if the second, 0.5 a tie."""

    rating_id: str
    first: str
    second: str
    score: float
    first_style: StyleCounts
    second_style: StyleCounts


def duels_of(rated: RatedComparison) -> list[Duel]:
    """The battles of one rating (read with text), in page order; both-bad is a tie of the two answers."""
    decomposition = rated.decomposition()
    if decomposition.both_bad:
        outcomes = [(0, 1, 0.5)]
    else:
        outcomes = [(p.winner, p.loser, 0.5 if p.tie else 1.0) for p in decomposition.pairs]
    duels = []
    for winner, loser, score in outcomes:
        first, second = rated.answer(min(winner, loser)), rated.answer(max(winner, loser))
        won = score if first.position == winner else 1 - score
        duels.append(
            Duel(rated.rating_id, first.contender, second.contender, won, style_of(first.text), style_of(second.text))
        )
    return duels


@dataclass(frozen=True)
class Estimate:
    """A fitted number and its 95% interval (None without bootstrap rounds)."""

    name: str
    value: float
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class StyleFit:
    """Ratings with style held fixed; style coefficients in rating points per standard deviation of the
    feature; first_shown: P(the first-shown answer wins between equals)."""

    ratings: tuple[Estimate, ...]
    coefficients: tuple[Estimate, ...]
    first_shown: Estimate


def style_features(duels: Sequence[Duel]) -> np.ndarray:
    """(a - b) / (a + b) per style count (0 when both are 0), standardized; shape (battles, 4)."""
    a = np.array([[getattr(d.first_style, name) for name in STYLE_NAMES] for d in duels], dtype=float)
    b = np.array([[getattr(d.second_style, name) for name in STYLE_NAMES] for d in duels], dtype=float)
    total = a + b
    ratio = np.divide(a - b, total, out=np.zeros_like(total), where=total > 0).reshape(len(duels), len(STYLE_NAMES))
    spread = ratio.std(axis=0)
    # A feature that never varies (no answer had headers) carries nothing: 0, not 0 / 0.
    return np.divide(ratio - ratio.mean(axis=0), spread, out=np.zeros_like(ratio), where=spread > 0)


def design(duels: Sequence[Duel], names: Sequence[str]) -> np.ndarray:
    """Columns: contender strengths (+1 first, -1 second), the 4 style features, an intercept."""
    index = {name: i for i, name in enumerate(names)}
    x = np.zeros((len(duels), len(names) + len(STYLE_NAMES) + 1))
    rows = np.arange(len(duels))
    x[rows, [index[d.first] for d in duels]] = 1.0
    x[rows, [index[d.second] for d in duels]] = -1.0
    x[:, len(names) : -1] = style_features(duels)
    x[:, -1] = 1.0
    return x


def fit_style(
    duels: Sequence[Duel], names: Sequence[str], *, rounds: int = 1000, seed: int = 0, prior_ties: float = 0.0
) -> StyleFit:
    """Fit the style-controlled model and bootstrap it; duels should come in a fixed order (by rating id)."""
    x = design(duels, names)
    score = np.array([d.score for d in duels])
    n = len(names)
    beta = fit_logistic(x, score, 1 - score, free=n, prior_ties=prior_ties)
    samples = None
    if rounds > 0:
        rng = np.random.default_rng(seed)
        samples = np.empty((rounds, len(beta)))
        for r in range(rounds):
            counts = rng.multinomial(len(duels), np.full(len(duels), 1 / len(duels)))
            samples[r] = fit_logistic(
                x, counts * score, counts * (1 - score), free=n, prior_ties=prior_ties, start=beta
            )
    # Ratings: strengths shifted to mean 0, on the Elo scale; style: points per standard deviation.
    values = np.concatenate([ELO_INIT + POINTS * (beta[:n] - beta[:n].mean()), POINTS * beta[n:-1]])
    low = high = None
    if samples is not None:
        scaled = np.hstack(
            [
                ELO_INIT + POINTS * (samples[:, :n] - samples[:, :n].mean(axis=1, keepdims=True)),
                POINTS * samples[:, n:-1],
            ]
        )
        low, high = np.percentile(scaled, [2.5, 97.5], axis=0)
    labels = [*names, *STYLE_NAMES]
    estimates = [
        Estimate(
            label, float(values[i]), None if low is None else float(low[i]), None if high is None else float(high[i])
        )
        for i, label in enumerate(labels)
    ]
    shown = 1 / (1 + np.exp(-beta[-1]))
    bounds = (None, None) if samples is None else 1 / (1 + np.exp(-np.percentile(samples[:, -1], [2.5, 97.5])))
    first = Estimate("first_shown", float(shown), *(None if v is None else float(v) for v in bounds))
    return StyleFit(tuple(estimates[:n]), tuple(estimates[n:]), first)
