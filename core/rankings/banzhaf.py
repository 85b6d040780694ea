"""Banzhaf value of the units of one layer: every coalition of the other units counts the same.

    beta_i = 1/2^(N-1) * sum over S not containing i of [v(S + i) - v(S)]

- ``exact``: from the table of all 2^N coalitions (shared with exact Shapley and the oracle).
- ``sampled``: maximum sample reuse (MSR, Wang & Jia 2023, "Data Banzhaf"): draw coalitions S with
  every unit on with probability 1/2; one evaluation v(S) updates *every* unit,
  beta_i ~ mean{v(S): i in S} - mean{v(S): i not in S}, with standard error
  sqrt(var_in / n_in + var_out / n_out) (unbiased given both groups are non-empty).
"""
from __future__ import annotations

import numpy as np

from ..engine import Engine
from . import game

DEFAULTS = {"estimator": "sampled", "samples": 2000, "payoff": "accuracy", "seed": 0}
ESTIMATORS = ("exact", "sampled")
USES_COALITION_TABLE = True
MIN_SAMPLES = 8


def normalize(params: dict, engine: Engine | None = None) -> dict:
    estimator = params["estimator"]
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown Banzhaf estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    out = {"estimator": estimator, "payoff": game.check_payoff(params["payoff"])}
    if estimator == "sampled":
        out["samples"], out["seed"] = int(params["samples"]), int(params["seed"])
        if out["samples"] < MIN_SAMPLES:
            raise ValueError(f"sampled Banzhaf needs at least {MIN_SAMPLES} coalitions (got {out['samples']})")
    return out


LABELLED = tuple(DEFAULTS)  # the label names every parameter that changes the result


def label(params: dict) -> str:
    how = "exact" if params["estimator"] == "exact" else (
        f"MSR, {params['samples']} coalitions" + (f", seed {params['seed']}" if params.get("seed", 0) else ""))
    return f"Banzhaf ({how}{', loss' if params['payoff'] == 'loss' else ''})"


def compute(engine: Engine, layer: str, progress=None, estimator: str = "sampled", payoff: str = "accuracy",
            table_cache: bool = True, **params):
    units = engine.units(layer)
    if estimator == "exact":
        return game.exact_semivalue(engine, layer, game.banzhaf_weights(units), payoff, progress, table_cache,
                                    "exact Banzhaf")
    return msr(game.payoff(engine, layer, payoff), units, params["samples"], params["seed"], progress)


def msr(value: game.Value, units: int, samples: int, seed: int = 0, progress=None):
    """Maximum-sample-reuse Banzhaf: ``samples`` uniform random coalitions, each evaluated once."""
    keep = (np.random.default_rng(seed).random((samples, units)) < 0.5).astype(np.float32)
    values = game.evaluate_in_chunks(value, keep, progress)
    return msr_estimate(keep, values) + ({"evaluations": samples},)


def msr_estimate(keep: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(estimates, standard errors) from coalitions ``keep`` (K, N) 0/1 and their values (K,)."""
    on = keep > 0.5
    n_in, n_out = on.sum(0), (~on).sum(0)
    if n_in.min() < 2 or n_out.min() < 2:
        raise ValueError("too few sampled coalitions to estimate every unit's Banzhaf value; draw more samples")
    sums_in = values @ on
    sums_out = values @ ~on
    mean_in, mean_out = sums_in / n_in, sums_out / n_out
    squares = values ** 2
    var_in = (squares @ on - n_in * mean_in ** 2) / (n_in - 1)
    var_out = (squares @ ~on - n_out * mean_out ** 2) / (n_out - 1)
    stderr = np.sqrt(np.maximum(var_in, 0) / n_in + np.maximum(var_out, 0) / n_out)
    return mean_in - mean_out, stderr
