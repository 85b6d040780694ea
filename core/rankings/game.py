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


def image_payoff(engine: Engine, layer: str, kind: str = "accuracy"):
    """v(keep (K, N), images (M,)) -> (K, M) per-image payoffs (correct, or minus the loss) on those images."""
    def value(keep: np.ndarray, images: np.ndarray) -> np.ndarray:
        out = []
        for lo in range(0, len(keep), CHUNK):
            result = engine.evaluate_masks(layer, torch.from_numpy(keep[lo:lo + CHUNK]).float(), images, per_image=True)
            out.append(result.correct if kind == "accuracy" else -result.image_loss)
        return np.concatenate(out).astype(np.float64)
    return value


def bits(masks: np.ndarray, units: int) -> np.ndarray:
    """Integer bitmasks -> (K, units) 0/1 keep matrix (bit j = unit j on)."""
    return ((masks[:, None] >> np.arange(units)) & 1).astype(np.float32)


def check_exhaustive(units: int, what: str = "exact Shapley", advice: str | None = None) -> None:
    if units > EXACT_LIMIT:
        advice = advice or "use estimator='sampled' (e.g. samples=200) or 'truncated'"
        raise ValueError(f"{what} needs 2^{units} = {2**units:,} coalitions for {units} units (limit "
                         f"{EXACT_LIMIT} units); {advice}")


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


def banzhaf_weights(units: int) -> np.ndarray:
    """p(s) = 1 / 2^(N-1) for every size: each coalition of the other units counts the same."""
    return np.full(units, 1.0 / 2 ** (units - 1))


def beta_weights(units: int, alpha: float, beta: float) -> np.ndarray:
    """Beta-Shapley(alpha, beta) weight of one coalition of size s = 0..N-1 (Kwon & Zou 2022):
    p(s) = B(s + beta, N - 1 - s + alpha) / B(alpha, beta). alpha = beta = 1 is Shapley; beta > alpha
    puts the weight on large (nearly full) coalitions, alpha > beta on small ones."""
    from scipy.special import betaln

    s = np.arange(units)
    return np.exp(betaln(s + beta, units - 1 - s + alpha) - betaln(alpha, beta))


def loo_weights(units: int) -> np.ndarray:
    """Leave-one-out as a (degenerate) semivalue: only the coalition of all the other units counts."""
    weights = np.zeros(units)
    weights[-1] = 1.0
    return weights


TABLE_VERSION = 2  # 2: the one-sweep accuracy is rounded as evaluate_masks rounds it


def coalition_table(engine: Engine, layer: str, kind: str = "accuracy", progress=None, cache: bool = True,
                    what: str = "exact Shapley", advice: str | None = None) -> np.ndarray:
    """v of all 2^N coalitions of ``layer`` on the engine's data (indexed by bitmask), stored on disk so
    that exact Shapley, the other exact semivalues and the oracle reference share one enumeration.
    Keyed like the rankings cache: checkpoint, weights digest, data key and digest, layer, payoff, precision."""
    from ..data import data_digest
    from ..engine.cache import cached
    from ..network.models import weights_digest

    units = engine.units(layer)
    check_exhaustive(units, what, advice)
    compute = lambda: ({"values": all_coalitions(engine, layer, kind, progress)}, {"units": units})  # noqa: E731
    if not cache:
        return compute()[0]["values"]
    model = engine.model
    key = {"version": TABLE_VERSION, "checkpoint": getattr(getattr(model, "meta", None), "sha256", ""),
           "weights": weights_digest(model), "data": engine.data.key, "data_digest": data_digest(engine.data),
           "layer": layer, "payoff": kind, "precision": engine.precision}
    arrays, _ = cached("coalitions", key, compute)
    if progress:
        progress(1, 1)
    return arrays["values"]


def all_coalitions(engine: Engine, layer: str, kind: str = "accuracy", progress=None) -> np.ndarray:
    """v of all 2^N coalitions through the engine's one sweep (core/engine/enumerate.py) when the layer has
    the linear fast path, else batched ``evaluate_masks`` calls (``coalition_values``)."""
    from ..engine.enumerate import all_coalition_values

    units = engine.units(layer)
    check_exhaustive(units)
    fast = all_coalition_values(engine, layer, kind, progress) if engine.precision == "float32" else None
    return fast if fast is not None else coalition_values(payoff(engine, layer, kind), units, progress)


def exact_semivalue(engine: Engine, layer: str, weights: np.ndarray, kind: str = "accuracy", progress=None,
                    cache: bool = True, what: str = "an exact semivalue") -> tuple[np.ndarray, None, dict]:
    """(scores, None, extra) of the semivalue with per-coalition ``weights`` from the shared coalition table."""
    units = engine.units(layer)
    values = coalition_table(engine, layer, kind, progress, cache, what)
    return semivalue(values, units, weights), None, {"v_all": float(values[-1]), "v_none": float(values[0]),
                                                     "evaluations": len(values)}


def check_payoff(kind: str) -> str:
    if kind not in ("accuracy", "loss"):
        raise ValueError(f"payoff must be 'accuracy' or 'loss', not {kind!r}")
    return kind


def evaluate_in_chunks(value: Value, keep: np.ndarray, progress=None, done: int = 0, total: int | None = None,
                       chunk: int = CHUNK) -> np.ndarray:
    """v of every row of ``keep``, ``chunk`` rows per call of ``value``, reporting progress after each."""
    out = []
    total = total or len(keep)
    for lo in range(0, len(keep), chunk):
        out.append(value(keep[lo:lo + chunk]))
        if progress:
            progress(done + min(len(keep), lo + chunk), total)
    return np.concatenate(out) if out else np.zeros(0)
