"""The layer as a cooperative game: players are one layer's units, v(S) = the payoff (accuracy, or minus
the mean loss) of the network with only the units in S on. Every value-based ranking (Shapley and the
other semivalues), the oracle reference and the interaction index read the same game: ``payoff`` (v of a
batch of coalitions, one batched engine call per chunk) and ``coalition_values`` (v of all 2^N coalitions,
indexed by bitmask: bit j set = unit j on)."""
from __future__ import annotations

from math import factorial
from typing import Callable

import numpy as np
import torch

from ..engine import Engine

EXACT_LIMIT = 20  # 2^20 coalitions: minutes for a small layer; above, refuse
CHUNK = 4096  # coalitions per engine call
Value = Callable[[np.ndarray], np.ndarray]  # keep matrix (K, N) of 0/1 -> (K,) payoffs


def payoff(engine: Engine, layer: str, kind: str = "accuracy") -> Value:
    """v(keep matrix (K, N)) -> (K,) payoffs, one batched engine call per chunk."""
    def value(keep: np.ndarray) -> np.ndarray:
        out = []
        for lo in range(0, len(keep), CHUNK):
            result = engine.evaluate_masks(layer, torch.from_numpy(keep[lo:lo + CHUNK]).float())
            out.append(result.accuracy if kind == "accuracy" else -result.loss)
        return np.concatenate(out) if out else np.zeros(0)
    return value


def bits(masks: np.ndarray, units: int) -> np.ndarray:
    """Integer bitmasks -> (K, units) 0/1 keep matrix (bit j = unit j on)."""
    return ((masks[:, None] >> np.arange(units)) & 1).astype(np.float32)


def check_exhaustive(units: int, what: str = "exact Shapley") -> None:
    if units > EXACT_LIMIT:
        raise ValueError(f"{what} needs 2^{units} = {2**units:,} coalitions for {units} units (limit "
                         f"{EXACT_LIMIT} units); use estimator='sampled' (e.g. samples=200) or 'truncated'")


def coalition_values(value: Value, units: int, progress=None, what: str = "exact Shapley") -> np.ndarray:
    """v of all 2^units coalitions, indexed by bitmask (values[0] = v(none), values[-1] = v(all))."""
    check_exhaustive(units, what)
    total = 2 ** units
    values = np.empty(total)
    chunk = max(64, min(CHUNK, total // 16))
    for lo in range(0, total, chunk):
        masks = np.arange(lo, min(total, lo + chunk))
        values[masks] = value(bits(masks, units))
        if progress:
            progress(int(masks[-1]) + 1, total)
    return values


def coalition_sizes(units: int) -> np.ndarray:
    """|S| of every coalition bitmask 0..2^units - 1."""
    everything = np.arange(2 ** units)
    return sum((everything >> j) & 1 for j in range(units))


def shapley_weights(units: int) -> np.ndarray:
    """p(s) = s!(N-s-1)!/N! for s = 0..N-1: the weight of a marginal contribution to a coalition of size s."""
    return np.array([factorial(s) * factorial(units - s - 1) / factorial(units) for s in range(units)])


def semivalue(values: np.ndarray, units: int, weights: np.ndarray) -> np.ndarray:
    """phi_i = sum over S not containing i of weights[|S|] * (v(S + i) - v(S)), from a full coalition table."""
    everything = np.arange(2 ** units)
    size = coalition_sizes(units)
    scores = np.empty(units)
    for i in range(units):
        without = everything[(everything >> i) & 1 == 0]  # coalitions S not containing i
        scores[i] = np.sum(weights[size[without]] * (values[without | (1 << i)] - values[without]))
    return scores
