"""Stratified regression Shapley: our estimator for a budget of coalitions (``estimator="stratified"``).

Written over coalition *sizes*, the Shapley value is

    phi_i = 1/N * sum_{s=0}^{N-1} (plus[i, s] - minus[i, s]),
    plus[i, s]  = mean of v(S + i) over S in N - i with |S| = s,   minus[i, s] = mean of v(S) over the same S.

A coalition T of size k serves plus[i, k-1] for every unit i in T and minus[i, k] for every unit not in T,
so every evaluation updates every unit and no marginal contribution is ever formed (the idea of SVARM,
Kolpaczki et al. 2024, which shapiq implements). Sizes 0, 1, N-1 and N are evaluated exactly (2N + 2
coalitions: the empty and full layer, every unit alone, every unit left out); the rest of the budget is
split evenly over the sizes 2 .. N-2, uniform k-subsets each.

What is ours: within one size, the means are taken with the regression (GREG) estimator of survey
sampling. Fit v(T) ~ a + sum_j b_j [j in T] (ridge, on that size's samples); the fitted model's mean
over all k-subsets with (without) unit i is exact arithmetic, and the mean residual of the samples with
(without) i corrects it, so the estimate stays (approximately) unbiased whatever the fit. The additive
model carries most of an accuracy game, so the residuals, and with them the error, are small: on LeNet
conv2 it halves SVARM's mean squared error at equal budgets (benchmarks/bench_top5.py, README).
A size with fewer than 2(N + 1) samples keeps
its plain means (the regression has N + 1 parameters). Standard errors: the residual variances per
stratum (scaled by m / (m - N - 1) for the fitted parameters), summed.
"""
from __future__ import annotations

import numpy as np

from . import game

RIDGE = 1e-6  # per sample: numerical safety only (the fit runs with at least 2(N + 1) samples)


def regression_samples(units: int) -> int:
    """A size's samples needed for its regression (N + 1 parameters): below, its plain means are used."""
    return 2 * (units + 1)


def minimum_budget(units: int) -> int:
    """The exact sizes (2N + 2) and two samples for each of the sizes 2 .. N-2."""
    return 2 * units + 2 + 2 * max(0, units - 3)


def stratified(value: game.Value, units: int, budget: int, seed: int = 0, progress=None):
    """(scores, stderr, extra) of the stratified regression estimator with ``budget`` coalitions."""
    if units < 4:
        return game_exact(value, units, progress)
    if budget < minimum_budget(units):
        raise ValueError(f"the stratified estimator needs a budget of at least {minimum_budget(units):,} coalitions "
                         f"for {units} units (2N + 2 exact, 2 per coalition size), got {budget:,}")
    rng = np.random.default_rng(seed)
    sizes = np.arange(2, units - 1)
    per_size = np.full(len(sizes), (budget - 2 * units - 2) // len(sizes))
    per_size[rng.permutation(len(sizes))[:(budget - 2 * units - 2) % len(sizes)]] += 1
    exact_keep = np.vstack([np.zeros(units), np.ones(units), np.eye(units), 1 - np.eye(units)]).astype(np.float32)
    drawn = [_k_subsets(rng, units, k, m) for k, m in zip(sizes, per_size)]
    keep = np.vstack([exact_keep, *drawn])
    values = game.evaluate_in_chunks(value, keep, progress)
    plus, minus, plus_var, minus_var = (np.zeros((units, units)) for _ in range(4))
    empty, full, alone, left_out = values[0], values[1], values[2:2 + units], values[2 + units:2 + 2 * units]
    minus[:, 0], plus[:, 0] = empty, alone
    minus[:, 1] = (alone.sum() - alone) / (units - 1)
    plus[:, units - 2] = (left_out.sum() - left_out) / (units - 1)
    minus[:, units - 1], plus[:, units - 1] = left_out, full
    start = 2 * units + 2
    for k, members in zip(sizes, drawn):
        y = values[start:start + len(members)]
        start += len(members)
        plus[:, k - 1], minus[:, k], plus_var[:, k - 1], minus_var[:, k] = _size_means(members, y, k, units)
    scores = (plus - minus).mean(1)
    stderr = np.sqrt((plus_var + minus_var).sum(1)) / units
    return scores, stderr, {"evaluations": int(len(keep))}


def _k_subsets(rng: np.random.Generator, units: int, k: int, count: int) -> np.ndarray:
    """``count`` uniform k-subsets of the units, as 0/1 rows."""
    keep = np.zeros((count, units), np.float32)
    np.put_along_axis(keep, np.argsort(rng.random((count, units)), axis=1)[:, :k], 1.0, axis=1)
    return keep


def _size_means(members: np.ndarray, y: np.ndarray, k: int, units: int):
    """The regression estimates of plus[:, k-1] and minus[:, k] from the samples of size k, and their variances
    (with too few samples for a fit, b = 0: the plain means of SVARM)."""
    share = members.mean(0)  # each unit's share of the samples (k/N in expectation)
    x, mean = members - share, y.mean()  # centred on the sample: the intercept is the mean of y
    fitted = len(y) >= regression_samples(units)
    b = np.linalg.solve(x.T @ x + RIDGE * len(y) * np.eye(units), x.T @ (y - mean)) if fitted else np.zeros(units)
    # the fitted model's exact mean over all k-subsets with unit i (i in, k-1 of the other N-1) and without it
    # (the rows of x sum to 0, so b is defined up to a constant, which these means do not see)
    shift = b @ share
    model_plus = mean + b + (b.sum() - b) * (k - 1) / (units - 1) - shift
    model_minus = mean + (b.sum() - b) * k / (units - 1) - shift
    residual = y - mean - x @ b
    inside, outside = members.T, 1 - members.T  # (units, samples)
    inflate = len(y) / (len(y) - units - 1) if fitted else 1.0  # residuals of a fit are smaller than its errors
    return (model_plus + _mean_of(inside, residual), model_minus + _mean_of(outside, residual),
            inflate * _variance_of_mean(inside, residual), inflate * _variance_of_mean(outside, residual))


def _mean_of(weights: np.ndarray, residual: np.ndarray) -> np.ndarray:
    count = weights.sum(1)
    return np.where(count > 0, weights @ residual / np.maximum(count, 1), 0.0)


def _variance_of_mean(weights: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The variance of each unit's mean residual (its samples' variance over their count; 0 below 2 samples)."""
    count = weights.sum(1)
    mean = _mean_of(weights, residual)
    squares = weights @ residual ** 2 - count * mean ** 2
    return np.where(count > 1, squares / np.maximum(count - 1, 1) / np.maximum(count, 1), 0.0)


def game_exact(value: game.Value, units: int, progress=None):
    """Below 4 units every size is exact: all 2^N coalitions (at most 8)."""
    values = game.coalition_values(value, units, progress)
    return game.semivalue(values, units, game.shapley_weights(units)), np.zeros(units), {"evaluations": 2 ** units}
