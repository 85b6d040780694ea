"""Shapley values of the layer game through shapiq (a peer library; optional, ``pip install shapiq``).

benchmarks/bench_top5.py measured shapiq's SVARM (stratified SVARM, Kolpaczki et al. 2024) reaching the
exact top-5 of LeNet conv2 (digits) in 9 of 10 seeds with fewer evaluations than our permutation
sampler (README, "A peer to measure against"), so it is offered as ``core.rank(..., "shapley",
estimator="svarm", samples=BUDGET, seed=s)``: BUDGET is the number of coalitions evaluated, each
through the same engine (one batched call per chunk). shapiq reports no standard errors."""
from __future__ import annotations

import numpy as np

from . import game

PEER_ESTIMATORS = {"svarm": "SVARM"}  # our estimator name -> shapiq approximator class


def peer_shapley(value: game.Value, units: int, estimator: str, budget: int, seed: int = 0, progress=None):
    """(scores, None, extra) of shapiq's ``PEER_ESTIMATORS[estimator]`` on the game ``value``."""
    try:
        import shapiq
    except ImportError:
        raise ValueError(f"Shapley estimator {estimator!r} runs through shapiq, which is not installed "
                         f"(pip install 'shapiq>=1.4,<1.5')") from None
    if budget < 2:
        raise ValueError(f"the {estimator} budget must be at least 2 coalitions, got {budget}")
    made = {"evaluations": 0}

    def evaluate(coalitions: np.ndarray) -> np.ndarray:
        keep = np.atleast_2d(np.asarray(coalitions, dtype=np.float32))
        made["evaluations"] += len(keep)
        if progress:
            progress(min(made["evaluations"], budget), budget)
        return value(keep)
    approximator = getattr(shapiq, PEER_ESTIMATORS[estimator])(n=units, random_state=seed)
    result = approximator.approximate(budget, evaluate)
    scores = np.asarray(result.get_n_order_values(1), dtype=np.float64)
    return scores, None, {"evaluations": made["evaluations"], "peer": f"shapiq {PEER_ESTIMATORS[estimator]}"}
