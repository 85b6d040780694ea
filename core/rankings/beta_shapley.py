"""Beta-Shapley(alpha, beta) of the units of one layer (Kwon & Zou, AISTATS 2022): a semivalue whose
weight over coalition sizes follows a Beta distribution.

    phi_i = sum over S not containing i of p(|S|) [v(S + i) - v(S)],
    p(s)  = B(s + beta, N - 1 - s + alpha) / B(alpha, beta)

(Kwon & Zou's w_(alpha,beta)(j) = N B(j + beta - 1, N - j + alpha) / B(alpha, beta) for j = |S| + 1, per
coalition w(j) / N.) alpha = beta = 1 is the Shapley value. beta > alpha weights nearly-full coalitions
(the default, alpha=1, beta=16: a unit's value when the rest of the layer is mostly on, which is what
pruning asks); alpha > beta weights small ones (their Beta(16, 1) for noisy data).

- ``exact``: from the shared table of all 2^N coalitions.
- ``sampled``: draw t ~ Beta(beta, alpha) and a coalition X with every unit on with probability t; then for
  every unit i the others X - {i} have exactly the distribution p, so v(X + i) - v(X - i) is an unbiased
  draw of phi_i. One draw costs N + 1 evaluations (X and X with each unit flipped) and updates every unit;
  standard errors over draws.
"""
from __future__ import annotations

import numpy as np

from ..engine import Engine
from . import game

DEFAULTS = {"estimator": "sampled", "alpha": 1.0, "beta": 16.0, "samples": 100, "payoff": "accuracy", "seed": 0}
ESTIMATORS = ("exact", "sampled")
USES_COALITION_TABLE = True


def normalize(params: dict, engine: Engine | None = None) -> dict:
    estimator = params["estimator"]
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown Beta-Shapley estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    out = {"estimator": estimator, "payoff": game.check_payoff(params["payoff"])}
    for name in ("alpha", "beta"):
        try:
            out[name] = float(params[name])
        except (TypeError, ValueError):
            raise ValueError(f"Beta-Shapley's {name} must be a positive number, not {params[name]!r}") from None
        if not (out[name] > 0 and np.isfinite(out[name])):
            raise ValueError(f"Beta-Shapley's {name} must be a positive number (got {params[name]!r}); "
                             f"alpha = beta = 1 is Shapley, beta > alpha weights nearly-full coalitions")
    if estimator == "sampled":
        out["samples"], out["seed"] = int(params["samples"]), int(params["seed"])
        if out["samples"] < 2:
            raise ValueError("sampled Beta-Shapley needs at least 2 draws (for a standard error)")
    return out


LABELLED = tuple(DEFAULTS)  # the label names every parameter that changes the result


def label(params: dict) -> str:
    how = "exact" if params["estimator"] == "exact" else (
        f"sampled, {params['samples']} draws" + (f", seed {params['seed']}" if params.get("seed", 0) else ""))
    return (f"Beta-Shapley (α={params['alpha']:g}, β={params['beta']:g}, {how}"
            f"{', loss' if params['payoff'] == 'loss' else ''})")


def compute(engine: Engine, layer: str, progress=None, estimator: str = "sampled", payoff: str = "accuracy",
            alpha: float = 1.0, beta: float = 16.0, table_cache: bool = True, **params):
    units = engine.units(layer)
    if estimator == "exact":
        return game.exact_semivalue(engine, layer, game.beta_weights(units, alpha, beta), payoff, progress,
                                    table_cache, "exact Beta-Shapley")
    return sampled(game.payoff(engine, layer, payoff), units, alpha, beta, params["samples"], params["seed"],
                   progress)


def sampled(value: game.Value, units: int, alpha: float, beta: float, samples: int, seed: int = 0, progress=None):
    """``samples`` draws of a Beta-Bernoulli coalition and its N one-unit flips (see the module text)."""
    rng = np.random.default_rng(seed)
    t = rng.beta(beta, alpha, size=samples)
    base = rng.random((samples, units)) < t[:, None]  # (draws, N)
    flips = np.repeat(base[:, None, :], units + 1, axis=1)  # row 0: X; row 1 + i: X with unit i flipped
    flips[:, 1:, :] ^= np.eye(units, dtype=bool)[None]
    values = game.evaluate_in_chunks(value, flips.reshape(-1, units).astype(np.float32), progress)
    values = values.reshape(samples, units + 1)
    with_i = np.where(base, values[:, :1], values[:, 1:])  # v(X + i): X itself when i is in X, else the flip
    without_i = np.where(base, values[:, 1:], values[:, :1])
    draws = with_i - without_i
    stderr = draws.std(0, ddof=1) / np.sqrt(samples)
    return draws.mean(0), stderr, {"evaluations": samples * (units + 1)}
