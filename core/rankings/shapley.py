"""Shapley values of the units of one layer (paper A, Eq. 1-2).

Players are the layer's units; the payoff v(C) is the accuracy (or minus the mean loss) on the
data split of the network where only the units in C are on, evaluated through the engine in
batches of coalitions. Estimators:

- ``exact``: all 2^N coalitions, Eq. 2. Satisfies efficiency: sum = v(all) - v(none).
- ``truncated``: as the authors' code, only *removal* sets of size <= k (the network stays nearly
  whole): SV_i ~ 1/(k+1) * sum_{s<=k} mean_{|R|=s, i not in R} [v(N-R) - v(N-R-i)]. This is Eq. 2
  of the dual game restricted to its first k+1 size levels; k = N-1 gives the exact value.
- ``sampled``: permutation Monte Carlo (Eq. 1), unbiased, with antithetic pairs (a permutation
  and its reverse), standard errors over pairs, and an optional early stop once the top_k units
  are separated from the rest by their confidence bounds (cf. Neuron Shapley's bandit).
"""
from __future__ import annotations

from itertools import combinations
from math import comb, factorial

import numpy as np
import torch
from scipy.stats import norm

from ..engine import Engine

DEFAULTS = {"estimator": "sampled", "samples": 100, "k": 2, "top_k": None, "confidence": 0.95,
            "payoff": "accuracy", "seed": 0}
EXACT_LIMIT = 20  # 2^20 coalitions: minutes for a small layer; above, refuse
ESTIMATORS = ("exact", "truncated", "sampled")
_CHUNK = 4096  # coalitions per engine call


def normalize(params: dict, engine: Engine | None = None) -> dict:
    """Keep only the parameters the chosen estimator uses (so the cache key is exact)."""
    estimator = params["estimator"]
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown Shapley estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if params["payoff"] not in ("accuracy", "loss"):
        raise ValueError(f"payoff must be 'accuracy' or 'loss', not {params['payoff']!r}")
    used = {"exact": (), "truncated": ("k",), "sampled": ("samples", "top_k", "confidence", "seed")}[estimator]
    out = {"estimator": estimator, "payoff": params["payoff"], **{name: params[name] for name in used}}
    if estimator == "sampled":
        out["samples"] = int(out["samples"])
        if out["samples"] < 2:
            raise ValueError("sampled Shapley needs at least 2 permutations (one antithetic pair)")
        out["samples"] += out["samples"] % 2  # antithetic pairs
        if out["top_k"] is not None:
            out["top_k"] = int(out["top_k"])
        if not 0 < float(out["confidence"]) < 1:
            raise ValueError("confidence must be between 0 and 1, e.g. 0.95")
    if estimator == "truncated":
        out["k"] = int(out["k"])
    return out


def label(params: dict) -> str:
    extra = {"exact": "exact", "truncated": f"truncated, k={params.get('k')}",
             "sampled": f"sampled, {params.get('samples')} perms"}[params["estimator"]]
    return f"Shapley ({extra}{', loss' if params['payoff'] == 'loss' else ''})"


def compute(engine: Engine, layer: str, progress=None, estimator: str = "sampled", payoff: str = "accuracy",
            **params):
    units = engine.units(layer)
    value = _payoff(engine, layer, payoff)
    if estimator == "exact":
        return exact(value, units, progress)
    if estimator == "truncated":
        return truncated(value, units, params["k"], progress)
    return sampled(value, units, params["samples"], params["seed"], params["top_k"], params["confidence"],
                   progress)


def _payoff(engine: Engine, layer: str, payoff: str):
    """v(keep matrix (K, N)) -> (K,) payoffs, one batched engine call per chunk."""
    def value(keep: np.ndarray) -> np.ndarray:
        out = []
        for lo in range(0, len(keep), _CHUNK):
            result = engine.evaluate_masks(layer, torch.from_numpy(keep[lo:lo + _CHUNK]).float())
            out.append(result.accuracy if payoff == "accuracy" else -result.loss)
        return np.concatenate(out) if out else np.zeros(0)
    return value


def _bits(masks: np.ndarray, units: int) -> np.ndarray:
    """Integer bitmasks -> (K, units) 0/1 keep matrix (bit j = unit j on)."""
    return ((masks[:, None] >> np.arange(units)) & 1).astype(np.float32)


def exact(value, units: int, progress=None):
    if units > EXACT_LIMIT:
        raise ValueError(f"exact Shapley needs 2^{units} = {2**units:,} coalitions for {units} units (limit "
                         f"{EXACT_LIMIT} units); use estimator='sampled' (e.g. samples=200) or 'truncated'")
    total = 2 ** units
    values = np.empty(total)
    chunk = max(64, min(_CHUNK, total // 16))
    for lo in range(0, total, chunk):
        masks = np.arange(lo, min(total, lo + chunk))
        values[masks] = value(_bits(masks, units))
        if progress:
            progress(int(masks[-1]) + 1, total)
    everything = np.arange(total)
    size = sum((everything >> j) & 1 for j in range(units))  # |C| of every coalition
    weight = np.array([factorial(s) * factorial(units - s - 1) / factorial(units) for s in range(units)])
    scores = np.empty(units)
    for i in range(units):
        without = everything[(everything >> i) & 1 == 0]  # coalitions C not containing i
        scores[i] = np.sum(weight[size[without]] * (values[without | (1 << i)] - values[without]))
    return scores, None, {"v_all": float(values[-1]), "v_none": float(values[0]), "evaluations": total}


def truncated(value, units: int, k: int, progress=None):
    if not 0 <= k <= units - 1:
        raise ValueError(f"truncated Shapley needs 0 <= k <= {units - 1} for {units} units, got k={k}")
    removed_sets = [frozenset(c) for s in range(k + 2) for c in combinations(range(units), s)]
    keep = np.ones((len(removed_sets), units), dtype=np.float32)
    for row, removed in enumerate(removed_sets):
        keep[row, list(removed)] = 0
    values = dict(zip(removed_sets, _chunked(value, keep, progress)))
    return _level_means(values, units, k), None, {"evaluations": len(removed_sets)}


def _level_means(values: dict, units: int, k: int) -> np.ndarray:
    """Average marginal contribution per removal-set size (each unit sees C(N-1, s) sets of size s)."""
    scores = np.zeros(units)
    for s in range(k + 1):
        level = np.zeros(units)
        for removed, v in values.items():
            if len(removed) != s:
                continue
            for i in range(units):
                if i not in removed:
                    level[i] += v - values[removed | {i}]
        scores += level / comb(units - 1, s)
    return scores / (k + 1)


def _chunked(value, keep: np.ndarray, progress=None) -> np.ndarray:
    out = []
    chunk = max(64, min(_CHUNK, len(keep) // 16 or 1))
    for lo in range(0, len(keep), chunk):
        out.append(value(keep[lo:lo + chunk]))
        if progress:
            progress(min(len(keep), lo + chunk), len(keep))
    return np.concatenate(out)


def sampled(value, units: int, samples: int, seed: int = 0, top_k: int | None = None,
            confidence: float = 0.95, progress=None):
    if top_k is not None and not 0 < top_k < units:
        raise ValueError(f"top_k must be between 1 and {units - 1} for {units} units, got {top_k}")
    rng = np.random.default_rng(seed)
    ends = value(np.stack([np.zeros(units, np.float32), np.ones(units, np.float32)]))  # v(none), v(all)
    pairs_total = samples // 2
    per_round = max(1, 256 // (2 * max(1, units - 1)))  # pairs per engine call; early-stop check granularity
    z = norm.ppf(1 - (1 - confidence) / 2)
    pair_means: list[np.ndarray] = []
    stopped_early = False
    while len(pair_means) < pairs_total:
        batch = min(per_round, pairs_total - len(pair_means))
        perms = [rng.permutation(units) for _ in range(batch)]
        perms = [p for perm in perms for p in (perm, perm[::-1])]  # antithetic: each with its reverse
        # prefix coalitions of every permutation (sizes 1..N-1; sizes 0 and N are the shared ends)
        keep = np.zeros((len(perms), units - 1, units), np.float32)
        for row, perm in enumerate(perms):
            for size in range(1, units):
                keep[row, size - 1:, perm[size - 1]] = 1
        inner = value(keep.reshape(-1, units)).reshape(len(perms), units - 1) if units > 1 else \
            np.zeros((len(perms), 0))
        chain = np.concatenate([np.full((len(perms), 1), ends[0]), inner, np.full((len(perms), 1), ends[1])], 1)
        marginals = np.zeros((len(perms), units))
        for row, perm in enumerate(perms):
            marginals[row, perm] = np.diff(chain[row])
        pair_means.extend(marginals.reshape(batch, 2, units).mean(1))
        if progress:
            progress(2 * len(pair_means), samples)
        if top_k is not None and len(pair_means) >= 10 and _separated(np.array(pair_means), top_k, z):
            stopped_early = True
            break
    estimates = np.array(pair_means)
    stderr = estimates.std(0, ddof=1) / np.sqrt(len(estimates))
    if progress and stopped_early:
        progress(samples, samples)
    return estimates.mean(0), stderr, {"permutations": 2 * len(estimates), "stopped_early": stopped_early,
                                       "v_all": float(ends[1]), "v_none": float(ends[0]),
                                       "evaluations": 2 * len(estimates) * (units - 1) + 2}


def _separated(pair_means: np.ndarray, top_k: int, z: float) -> bool:
    """True when every top_k unit's lower bound lies above every other unit's upper bound."""
    mean = pair_means.mean(0)
    half = z * pair_means.std(0, ddof=1) / np.sqrt(len(pair_means))
    order = np.argsort(-mean, kind="stable")
    top, rest = order[:top_k], order[top_k:]
    return bool(np.min(mean[top] - half[top]) > np.max(mean[rest] + half[rest]))
