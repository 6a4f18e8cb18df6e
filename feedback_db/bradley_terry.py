"""Bradley-Terry ratings by maximum likelihood, numpy only, and their bootstrap.

Model: P(i beats j) = sigmoid(t_i - t_j), with strengths t in natural-log units; the Elo-like rating
is ELO_INIT + ELO_SCALE * t / ln(ELO_BASE), so P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)).
The fit is Newton's method on the log-likelihood sum_ij W_ij log P(i beats j), where W holds wins with
ties already split in halves. Only differences are identified, so the mean strength is fixed at 0.

A tiny ridge (RIDGE, in battles) keeps the ratings finite when a contender won or lost every battle,
where no maximum exists (common in small bootstrap samples); elsewhere it moves ratings by far less
than 0.01 points.

`prior_ties`: each contender also plays that many virtual ties against an average contender (strength
0), a weak prior toward the mean. Without it one win in one battle sends a rating towards infinity
(three votes gave 1840 / 1720 / -560); with 2 it moves a rating with hundreds of battles by well under
a point. The result is shifted to mean 0 all the same.
"""

from __future__ import annotations

import numpy as np

ELO_SCALE, ELO_BASE, ELO_INIT = 400.0, 10.0, 1000.0
RIDGE = 1e-6
MAX_ITERATIONS = 200
TOLERANCE = 1e-10


def fit_ratings(wins: np.ndarray, start: np.ndarray | None = None, prior_ties: float = 0.0) -> np.ndarray:
    """Ratings (mean ELO_INIT) from wins[i, j]: i's wins over j, ties counted as half to each side."""
    strengths = fit_strengths(wins, start, prior_ties)
    return ELO_INIT + ELO_SCALE / np.log(ELO_BASE) * strengths


def fit_strengths(wins: np.ndarray, start: np.ndarray | None = None, prior_ties: float = 0.0) -> np.ndarray:
    """Maximum-likelihood strengths (natural-log units, mean 0) for the win matrix `wins` (n x n)."""
    n = len(wins)
    games = wins + wins.T
    # The objective is flat along the all-ones direction; adding ones/n to the (negative) Hessian
    # changes nothing else (the gradient has no component there) and makes it invertible.
    ones = np.full((n, n), 0.0 if prior_ties else 1.0 / n)  # the prior pins the level itself
    theta = np.zeros(n) if start is None else start - start.mean()
    objective = _log_likelihood(theta, wins, prior_ties)
    for _ in range(MAX_ITERATIONS):
        p = _sigmoid(theta[:, None] - theta[None, :])  # p[i, j] = P(i beats j), shape (n, n)
        average = _sigmoid(theta)  # P(i beats the average contender), for the virtual ties
        gradient = (wins - games * p).sum(axis=1) - RIDGE * theta + prior_ties * (0.5 - average)
        curvature = games * p * p.T
        prior = prior_ties * average * (1 - average) + RIDGE
        negative_hessian = np.diag(curvature.sum(axis=1) + prior) - curvature
        step = np.linalg.solve(negative_hessian + ones, gradient)
        # Step halving: Newton can overshoot far from the optimum; never accept a worse fit.
        scale = 1.0
        while True:
            candidate = theta + scale * step
            value = _log_likelihood(candidate, wins, prior_ties)
            if value >= objective or scale < 1e-6:
                break
            scale /= 2
        theta, objective = candidate, value
        if np.abs(scale * step).max() < TOLERANCE:
            break
    return theta - theta.mean()


def bootstrap_ratings(
    wins: np.ndarray, ties: np.ndarray, *, rounds: int, seed: int = 0, prior_ties: float = 0.0
) -> np.ndarray:
    """Ratings refitted on `rounds` resamples of the battles (with replacement); shape (rounds, n).

    wins[i, j] counts i's wins over j; ties[i, j] (symmetric) the ties between i and j. Resampling N
    battles with replacement gives each kind of battle (who beat whom, or who tied with whom) a count
    drawn from Multinomial(N, share of that kind): the same distribution as copying battles one by one,
    at a cost that does not grow with N.
    """
    n = len(wins)
    win_i, win_j = np.nonzero(wins)
    tie_i, tie_j = np.nonzero(np.triu(ties))
    counts = np.concatenate([wins[win_i, win_j], ties[tie_i, tie_j]])
    total = int(counts.sum())
    draws = np.random.default_rng(seed).multinomial(total, counts / total, size=rounds)  # (rounds, kinds)
    start = fit_strengths(wins + ties / 2, prior_ties=prior_ties)
    samples = np.empty((rounds, n))
    for r, draw in enumerate(draws):
        resampled = np.zeros((n, n))
        resampled[win_i, win_j] += draw[: len(win_i)]
        resampled[tie_i, tie_j] += draw[len(win_i) :] / 2
        resampled[tie_j, tie_i] += draw[len(win_i) :] / 2
        samples[r] = fit_ratings(resampled, start, prior_ties)  # warm start: a few Newton steps per round
    return samples


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def _log_likelihood(theta: np.ndarray, wins: np.ndarray, prior_ties: float = 0.0) -> float:
    differences = theta[:, None] - theta[None, :]
    # log sigmoid(x) = -log(1 + exp(-x)), computed without overflow.
    virtual = prior_ties / 2 * (np.logaddexp(0.0, -theta) + np.logaddexp(0.0, theta)).sum()
    return float(-(wins * np.logaddexp(0.0, -differences)).sum() - RIDGE / 2 * theta @ theta - virtual)


def fit_logistic(
    x: np.ndarray,
    won: np.ndarray,
    lost: np.ndarray,
    *,
    free: int,
    prior_ties: float = 0.0,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Coefficients b of P(first wins) = sigmoid(x @ b), weighted by won/lost per row (ties: half each).

    x: (battles, k); its first `free` columns are contender strengths (+1 first, -1 second), which only
    differences identify: the prior's virtual ties, or else a pin on their sum, fixes their level.
    """
    k = x.shape[1]
    pin = np.zeros((k, k))
    if not prior_ties:
        pin[:free, :free] = 1.0 / free  # no gradient along all-ones in the strengths; see fit_strengths
    beta = np.zeros(k) if start is None else start.copy()
    objective = _logistic_objective(beta, x, won, lost, free, prior_ties)
    for _ in range(MAX_ITERATIONS):
        p = _sigmoid(x @ beta)  # (battles,)
        average = _sigmoid(beta[:free])
        gradient = x.T @ (won - (won + lost) * p) - RIDGE * beta
        gradient[:free] += prior_ties * (0.5 - average)
        negative_hessian = (x * ((won + lost) * p * (1 - p))[:, None]).T @ x + RIDGE * np.eye(k) + pin
        negative_hessian[np.arange(free), np.arange(free)] += prior_ties * average * (1 - average)
        step = np.linalg.solve(negative_hessian, gradient)
        scale = 1.0
        while True:
            candidate = beta + scale * step
            value = _logistic_objective(candidate, x, won, lost, free, prior_ties)
            if value >= objective or scale < 1e-6:
                break
            scale /= 2
        beta, objective = candidate, value
        if np.abs(scale * step).max() < TOLERANCE:
            break
    return beta


def _logistic_objective(
    beta: np.ndarray, x: np.ndarray, won: np.ndarray, lost: np.ndarray, free: int, prior_ties: float
) -> float:
    z = x @ beta
    strengths = beta[:free]
    virtual = prior_ties / 2 * (np.logaddexp(0.0, -strengths) + np.logaddexp(0.0, strengths)).sum()
    fit = (won * np.logaddexp(0.0, -z) + lost * np.logaddexp(0.0, z)).sum()
    return float(-fit - RIDGE / 2 * beta @ beta - virtual)
