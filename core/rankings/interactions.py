"""Pairwise Shapley interaction index of one layer's units (Grabisch & Roubens 1999).

The layer is the game of core/rankings/game.py (players = units, v(S) = the payoff of the network
with only the units in S on). For two units i, j the discrete second derivative at a coalition S
of the other units is

    D_ij(S) = v(S + i + j) - v(S + i) - v(S + j) + v(S)

and the Shapley interaction index averages it with the Shapley weights of the n - 1 player game
in which i and j act as one player:

    I_ij = sum over S in N minus {i, j} of |S|! (n - |S| - 2)! / (n - 1)! * D_ij(S).

I_ij < 0: the pair is *redundant* (either unit alone does most of what both do: switching one off
costs little while the other is on); I_ij > 0: *synergistic* (they matter only together). The
diagonal is 0 (not defined for a pair).

Estimators:

- ``exact``: from the full coalition table (``game.coalition_values``, 2^n evaluations, n <= 20),
  the same enumeration exact Shapley uses.
- ``sampled``: I_ij is the difference of two Shapley values of j, in the game with i always on
  and in the game with i always off (both over the n - 1 players other than i). One random order
  of the others, walked once with i on and once with i off (2n evaluations in one batched call),
  gives every j one draw of D_ij(S) with S = the units before j: an unbiased sample of I_ij for
  all j at once (the two walks share their order, so their difference has little noise). Each
  unit i gets ``samples`` orders; I_ij is the mean of the i-side and the j-side estimates, its
  standard error from the spread of the draws. Cost: 2 n^2 evaluations per sample.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from math import factorial
from typing import Callable

import numpy as np
from torch import nn

from ..data import DataSplit, data_digest
from ..engine import Engine
from ..engine.cache import cached_entry
from ..network.models import weights_digest
from . import game

Progress = Callable[[int, int], None]
ESTIMATORS = ("exact", "sampled")
CACHE_VERSION = 1


@dataclass
class Interactions:
    """Pairwise Shapley interaction index of the units of one layer (symmetric, zero diagonal)."""

    layer: str
    matrix: np.ndarray  # (n, n) I_ij: < 0 redundant pair, > 0 synergistic pair
    stderr: np.ndarray | None  # (n, n) standard errors (sampled) or None (exact)
    estimator: str
    params: dict
    evaluations: int
    seconds: float = 0.0
    v_all: float = float("nan")
    cached: bool = False

    @property
    def label(self) -> str:
        extra = "exact" if self.estimator == "exact" else f"sampled, {self.params['samples']} orders per unit"
        return f"Shapley interaction index ({extra}{', loss' if self.params.get('payoff') == 'loss' else ''})"

    def pairs(self) -> list[tuple[int, int, float]]:
        """Every pair (i < j, I_ij), most redundant (most negative) first."""
        i, j = np.triu_indices(len(self.matrix), 1)
        order = np.argsort(self.matrix[i, j], kind="stable")
        return [(int(i[k]), int(j[k]), float(self.matrix[i[k], j[k]])) for k in order]

    def most_redundant(self, k: int = 5) -> list[tuple[int, int, float]]:
        return self.pairs()[:max(0, k)]

    def most_synergistic(self, k: int = 5) -> list[tuple[int, int, float]]:
        return self.pairs()[::-1][:max(0, k)]

    def to_dict(self) -> dict:
        return {"layer": self.layer, "label": self.label, "estimator": self.estimator, "params": self.params,
                "evaluations": self.evaluations, "seconds": self.seconds, "v_all": self.v_all,
                "cached": self.cached, "matrix": self.matrix.tolist(),
                "stderr": None if self.stderr is None else self.stderr.tolist(),
                "most_redundant": self.most_redundant(), "most_synergistic": self.most_synergistic()}


def interaction_weights(units: int) -> np.ndarray:
    """w(s) = s!(n-s-2)!/(n-1)! for s = 0..n-2: the weight of D_ij(S) for |S| = s."""
    return np.array([factorial(s) * factorial(units - s - 2) / factorial(units - 1) for s in range(units - 1)])


def exact_from_table(values: np.ndarray, units: int) -> np.ndarray:
    """I (n, n) from v of all 2^n coalitions indexed by bitmask (``game.coalition_values``)."""
    if len(values) != 2 ** units:
        raise ValueError(f"a coalition table for {units} units has {2 ** units} values, not {len(values)}")
    matrix = np.zeros((units, units))
    if units < 2:
        return matrix
    everything = np.arange(2 ** units)
    weights = np.append(interaction_weights(units), [0.0, 0.0])[game.coalition_sizes(units)]  # |S| <= n - 2 used
    for i in range(units):
        without_i = everything[(everything >> i) & 1 == 0]
        for j in range(i + 1, units):
            rest = without_i[(without_i >> j) & 1 == 0]  # S not containing i or j
            second = values[rest | (1 << i) | (1 << j)] - values[rest | (1 << i)] - values[rest | (1 << j)] \
                + values[rest]
            matrix[i, j] = matrix[j, i] = float(np.sum(weights[rest] * second))
    return matrix


def sampled(value: game.Value, units: int, samples: int, seed: int = 0,
            progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(I, standard errors, evaluations) from ``samples`` random orders per unit (see the module doc)."""
    if units < 2:
        return np.zeros((units, units)), np.zeros((units, units)), 0
    rng = np.random.default_rng(seed)
    draws = np.zeros((units, samples, units))  # [i, draw, j]: one sample of D_ij(S)
    per_call = max(1, game.CHUNK // (2 * units))  # orders per engine call
    evaluations = 0
    for i in range(units):
        others = np.delete(np.arange(units), i)
        for lo in range(0, samples, per_call):
            count = min(per_call, samples - lo)
            orders = np.stack([rng.permutation(others) for _ in range(count)])  # (count, n - 1)
            prefix = np.zeros((count, units, units), dtype=np.float32)  # [order, prefix length, unit]
            for step in range(1, units):
                prefix[:, step] = prefix[:, step - 1]
                prefix[np.arange(count), step, orders[:, step - 1]] = 1
            with_i = prefix.copy()
            with_i[:, :, i] = 1
            payoffs = value(np.concatenate([with_i, prefix]).reshape(-1, units)).reshape(2, count, units)
            evaluations += 2 * count * units
            gain = np.diff(payoffs[0] - payoffs[1], axis=1)  # (count, n - 1): D_i,order[k](prefix k)
            np.put_along_axis(draws[i, lo:lo + count], orders, gain, axis=1)
            if progress:
                progress(evaluations, 2 * units * units * samples)
    one_side = draws.mean(1)
    variance = draws.var(1, ddof=1) / samples if samples > 1 else np.full((units, units), np.nan)
    matrix = (one_side + one_side.T) / 2
    stderr = np.sqrt(variance + variance.T) / 2
    np.fill_diagonal(matrix, 0.0)
    np.fill_diagonal(stderr, 0.0)
    return matrix, stderr, evaluations


def check_params(units: int, estimator: str, samples: int, payoff: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown interaction estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if payoff not in ("accuracy", "loss"):
        raise ValueError(f"payoff must be 'accuracy' or 'loss', not {payoff!r}")
    if units < 2:
        raise ValueError(f"interactions need at least 2 units; this layer has {units}")
    if estimator == "exact" and units > game.EXACT_LIMIT:
        raise ValueError(f"the exact interaction index needs 2^{units} coalitions for {units} units (limit "
                         f"{game.EXACT_LIMIT} units); use estimator='sampled' (CLI: --estimator sampled)")
    elif int(samples) < 2:
        raise ValueError(f"sampled interactions need at least 2 orders per unit (for a standard error), got {samples}")


def interactions(model: nn.Module, data: DataSplit, layer: str, estimator: str = "exact", samples: int = 20,
                 seed: int = 0, payoff: str = "accuracy", progress: Progress | None = None,
                 engine: Engine | None = None, cache: bool = True) -> Interactions:
    """Pairwise Shapley interaction index of the units of ``layer`` on ``data`` (see the module doc).

    ``estimator``: "exact" (all 2^n coalitions, n <= 20) or "sampled" (``samples`` random orders per
    unit, 2 n^2 evaluations each, with standard errors). Cached on disk like the rankings."""
    engine = engine or Engine(model, data)
    if engine.model is not model or engine.data is not data:
        raise ValueError("the engine given does not hold this model and data")
    units = engine.units(layer)  # validates the layer name
    check_params(units, estimator, samples, payoff)
    params = {"payoff": payoff} if estimator == "exact" else {"payoff": payoff, "samples": int(samples),
                                                               "seed": int(seed)}

    def compute():
        start = time.perf_counter()
        if estimator == "exact":
            table = game.coalition_table(engine, layer, payoff, progress, cache, "the exact interaction index",
                                         "use estimator='sampled' (CLI: --estimator sampled)")
            matrix, stderr, evaluations, v_all = exact_from_table(table, units), None, len(table), table[-1]
        else:
            value = game.payoff(engine, layer, payoff)
            matrix, stderr, evaluations = sampled(value, units, int(samples), int(seed), progress)
            v_all, evaluations = value(np.ones((1, units), np.float32))[0], evaluations + 1  # v(all) for the record
        arrays = {"matrix": matrix} if stderr is None else {"matrix": matrix, "stderr": stderr}
        return arrays, {"seconds": time.perf_counter() - start, "evaluations": int(evaluations),
                        "v_all": float(v_all)}

    hit = False
    if cache:
        key = {"version": CACHE_VERSION, "weights": weights_digest(model), "data": data.key,
               "data_digest": data_digest(data), "layer": layer, "estimator": estimator, "params": params,
               "precision": engine.precision}
        arrays, meta, hit = cached_entry("interactions", key, compute)
        if hit and progress:
            progress(1, 1)
    else:
        arrays, meta = compute()
    return Interactions(layer, arrays["matrix"], arrays.get("stderr"), estimator, params, meta["evaluations"],
                        meta["seconds"], meta["v_all"], cached=hit)


__all__ = ["Interactions", "interactions", "exact_from_table", "sampled", "interaction_weights", "ESTIMATORS"]
