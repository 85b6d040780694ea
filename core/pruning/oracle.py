"""Reference curves: what the best possible removal of n units of a layer costs, to judge rankings by.

    import core
    engine = core.Engine(model, test)
    oracle = core.oracle_curve(engine, "conv2")    # exhaustive: the best of all C(N, n) removals, every n
    greedy = core.greedy_curve(engine, "fc1")      # wider layers: remove, at each step, the cheapest unit
    ref = core.reference_curve(engine, layer)      # the oracle up to ORACLE_LIMIT units, else greedy

The oracle reads the table of all 2^N coalition values (``core.rankings.game.coalition_table``, disk-
cached, shared with exact Shapley and the exact semivalues when they are computed on the same split):
its point n is the highest accuracy over every way of removing n units, so it is an upper bound on every
ranking's curve measured on that split. The greedy reference is not an upper bound; it is what a
one-step-lookahead pruner reaches (N(N+1)/2 evaluations, one batched engine call per step).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..engine import Engine
from ..rankings import game
from .curves import Curve, Progress, check_counts

ORACLE_LABEL = "Oracle (best of all removals)"
GREEDY_LABEL = "Greedy reference (not an upper bound)"
ORACLE_LIMIT = game.EXACT_LIMIT  # widest layer the exhaustive oracle enumerates
REFERENCES = ("oracle", "greedy", "auto")


def oracle_curve(engine: Engine, layer: str, counts: Sequence[int] | None = None, progress: Progress | None = None,
                 cache: bool = True) -> Curve:
    """For each n in ``counts`` (default 0..N): the highest accuracy over all removals of n units of
    ``layer``, on ``engine``'s data; ``removed[i]``: one best removal (ties: the lowest bitmask of kept
    units). Refuses layers wider than ORACLE_LIMIT units with one line."""
    units = engine.units(layer)
    check_oracle(units)
    counts = check_counts(counts, units)
    values = game.coalition_table(engine, layer, "accuracy", progress, cache, "the oracle reference",
                                  "use the greedy reference (reference='greedy')")
    size = game.coalition_sizes(units)
    best = np.full(units + 1, -1)  # best[k] = bitmask of the best coalition with k units on
    for kept in range(units + 1):
        candidates = np.flatnonzero(size == kept)
        best[kept] = candidates[np.argmax(values[candidates])]
    removed = [[j for j in range(units) if not best[units - n] >> j & 1] for n in counts]
    keep = np.ones((len(counts), units), dtype=np.float32)
    for row, off in enumerate(removed):
        keep[row, off] = 0
    loss = engine.evaluate_masks(layer, keep).loss  # the table holds accuracy; the loss of the best masks
    accuracy = np.array([values[best[units - n]] for n in counts])
    return Curve(ORACLE_LABEL, layer, counts, accuracy, np.asarray(loss), removed, "least", "oracle", units)


def check_oracle(units: int) -> None:
    """One line when a layer is too wide for the exhaustive oracle."""
    game.check_exhaustive(units, "the oracle reference", "use the greedy reference (reference='greedy')")


def greedy_curve(engine: Engine, layer: str, counts: Sequence[int] | None = None,
                 progress: Progress | None = None) -> Curve:
    """Greedy backward elimination: at each step remove the unit whose removal keeps the highest accuracy
    (ties: lower loss, then the lower unit index). One batched ``evaluate_masks`` call per step."""
    units = engine.units(layer)
    counts = check_counts(counts, units)
    keep = np.ones(units, dtype=np.float32)
    order: list[int] = []
    accuracy, loss = np.empty(units + 1), np.empty(units + 1)
    first = engine.evaluate_masks(layer, keep[None])
    accuracy[0], loss[0] = first.accuracy[0], first.loss[0]
    for step in range(units):
        remaining = np.flatnonzero(keep)
        trial = np.repeat(keep[None], len(remaining), 0)
        trial[np.arange(len(remaining)), remaining] = 0
        result = engine.evaluate_masks(layer, trial)
        pick = np.lexsort((remaining, result.loss, -result.accuracy))[0]
        order.append(int(remaining[pick]))
        keep[remaining[pick]] = 0
        accuracy[step + 1], loss[step + 1] = result.accuracy[pick], result.loss[pick]
        if progress:
            progress(step + 1, units)
    return Curve(GREEDY_LABEL, layer, counts, accuracy[counts], loss[counts], [order[:n] for n in counts],
                 "least", "greedy", units)


def greedy_evaluations(units: int) -> int:
    """Masks the greedy reference evaluates: 1 + N + (N - 1) + ... + 1 = 1 + N(N+1)/2."""
    return 1 + units * (units + 1) // 2


def reference_curve(engine: Engine, layer: str, reference: str = "auto", counts: Sequence[int] | None = None,
                    progress: Progress | None = None) -> Curve:
    """``"oracle"``, ``"greedy"`` or ``"auto"`` (the oracle up to ORACLE_LIMIT units, greedy above)."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {', '.join(REFERENCES)} (got {reference!r})")
    if reference == "auto":
        reference = "oracle" if engine.units(layer) <= ORACLE_LIMIT else "greedy"
    if reference == "oracle":
        return oracle_curve(engine, layer, counts, progress)
    return greedy_curve(engine, layer, counts, progress)
