"""Pruning curves: the accuracy a ranking keeps when you act on it, against random and L1.

    import core
    engine = core.Engine(model, test)
    c = core.layer_curve(engine, "conv2", ranking)            # remove 0..N least important units
    c.counts, c.accuracy, c.loss, c.removed                   # plain arrays; removed[i] = units off at point i
    band = core.random_band(engine, "conv2", seeds=5)         # >= 5 seeded random orders: mean, min-max band
    s = core.curve_set(engine, "conv2", [r_shapley, r_switches, "l1"], seeds=5, rankings_data=val)
    s.summary()                                              # AUC, largest rate within 1 point, band exits
    core.curves_figure(s)                                    # plotly lines with the random band shaded

Every accuracy comes from the one engine: a layer curve is one batched ``Engine.evaluate_masks``
call (all its masks stacked), and the masks of every method and seed of a ``curve_set`` go in
one call too. Whole-network curves mask several layers at once through ``Engine.evaluate``.
Nothing is retrained: this is paper A's Fig. 2 and paper B's Figs. 4 and 5.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .engine import Engine
from .rankings import Ranking

Progress = Callable[[int, int], None]  # (done, total)
DIRECTIONS = ("least", "most")  # remove the least important first (the pruning curve) / the most (its mirror)
FULL_GRID_MAX = 64  # layers up to this many units get every count 0..N; wider ones a grid of GRID_POINTS
GRID_POINTS = 33
MIN_SEEDS, MAX_SEEDS = 5, 100


@dataclass
class Curve:
    """Accuracy and loss after turning off the first ``counts[i]`` units of one removal order."""

    label: str
    layer: str
    counts: np.ndarray  # units removed at each point
    accuracy: np.ndarray
    loss: np.ndarray
    removed: list[list[int]]  # the units off at each point, in removal order
    direction: str = "least"
    method: str = ""
    units: int = 0  # units in the layer

    @property
    def rates(self) -> np.ndarray:
        """Fraction of the layer's units removed at each point."""
        return self.counts / max(1, self.units)

    def off(self, i: int) -> dict[str, list[int]]:
        """The mask of point ``i`` as an ``off`` mapping (for ``Engine.evaluate`` or the toggles page)."""
        return {self.layer: sorted(self.removed[i])}

    def to_dict(self) -> dict:
        return {"label": self.label, "method": self.method, "layer": self.layer, "direction": self.direction,
                "units": self.units, "counts": self.counts.tolist(), "accuracy": self.accuracy.tolist(),
                "loss": self.loss.tolist(), "removed": self.removed}


def _scores(engine: Engine, layer: str, ranking: Ranking | np.ndarray) -> tuple[np.ndarray, str, str]:
    """(scores, label, method) of a Ranking or a plain score array, checked against the layer."""
    units = engine.units(layer)
    if isinstance(ranking, Ranking):
        if ranking.layer != layer:
            raise ValueError(f"the ranking {ranking.label!r} is of {ranking.layer}, not {layer}")
        scores, label, method = ranking.scores, ranking.label, ranking.method
    else:
        scores, label, method = ranking, "scores", "scores"
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (units,):
        raise ValueError(f"{layer} has {units} units but the scores have shape {tuple(scores.shape)}")
    if not np.isfinite(scores).all():
        raise ValueError(f"the scores for {layer} contain NaN or infinite values")
    return scores, label, method


def removal_order(scores: np.ndarray, direction: str = "least") -> np.ndarray:
    """Units in the order they are removed: least important first (``"least"``) or most important first.

    Ties break as ``Ranking.lowest`` / ``Ranking.order`` break them, so "turn off the k lowest" on the
    toggles page removes exactly the units of the curve's point k."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'least' or 'most' (got {direction!r})")
    order = np.argsort(-np.asarray(scores), kind="stable")  # most important first
    return order[::-1].copy() if direction == "least" else order


def default_counts(units: int) -> np.ndarray:
    """0..N for layers up to FULL_GRID_MAX units, else GRID_POINTS evenly spaced counts from 0 to N."""
    if units <= FULL_GRID_MAX:
        return np.arange(units + 1)
    return np.unique(np.round(np.linspace(0, units, GRID_POINTS)).astype(int))


def check_counts(counts: Sequence[int] | None, units: int) -> np.ndarray:
    if counts is None:
        return default_counts(units)
    array = np.asarray(list(counts))
    if array.size == 0:
        raise ValueError("counts is empty: give at least one number of units to remove")
    if not np.all(np.equal(np.mod(array, 1), 0)):
        raise ValueError("counts must be whole numbers of units")
    array = array.astype(int)
    if array.min() < 0 or array.max() > units:
        raise ValueError(f"counts must be between 0 and {units} (the layer's units); got {array.min()}..{array.max()}")
    return array


def counts_for_rates(units: int, rates: Sequence[float], top: bool = True) -> np.ndarray:
    """Units removed for each rate (fraction of the layer), rounded; rates in [0, 1] (or [0, 1) if not ``top``)."""
    rates = check_rates(rates, allow_one=top)
    return np.round(rates * units).astype(int)


def check_rates(rates: Sequence[float], allow_one: bool = False) -> np.ndarray:
    array = np.asarray(list(rates), dtype=np.float64)
    if array.size == 0:
        raise ValueError("rates is empty: give at least one pruning rate")
    high_ok = array <= 1 if allow_one else array < 1
    if not np.all((array >= 0) & high_ok):
        bad = array[~((array >= 0) & high_ok)][0]
        raise ValueError(f"pruning rates must be in [0, {'1]' if allow_one else '1)'} (got {bad:g})")
    return array


def _evaluate_orders(engine: Engine, layer: str, orders: Sequence[np.ndarray],
                     counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[list[int]]]]:
    """Accuracy and loss (orders x points) and the removed units, for every order at every count:
    all masks stacked into ONE ``Engine.evaluate_masks`` call."""
    units = engine.units(layer)
    keep = np.ones((len(orders), len(counts), units), dtype=np.float32)
    removed = []
    for o, order in enumerate(orders):
        removed.append([])
        for p, n in enumerate(counts):
            keep[o, p, order[:n]] = 0.0
            removed[-1].append([int(u) for u in order[:n]])
    result = engine.evaluate_masks(layer, keep.reshape(-1, units))
    shape = (len(orders), len(counts))
    return result.accuracy.reshape(shape), result.loss.reshape(shape), removed


def layer_curve(engine: Engine, layer: str, ranking: Ranking | np.ndarray, counts: Sequence[int] | None = None,
                direction: str = "least") -> Curve:
    """Accuracy and loss of ``layer`` with its ``counts[i]`` least (``direction="least"``) or most
    (``"most"``) important units off, by ``ranking`` (a Ranking or scores, higher = more important).

    ``counts`` defaults to 0..N (a grid of GRID_POINTS counts for layers wider than FULL_GRID_MAX).
    All points are evaluated in one batched ``engine.evaluate_masks`` call; nothing is retrained."""
    scores, label, method = _scores(engine, layer, ranking)
    counts = check_counts(counts, len(scores))
    order = removal_order(scores, direction)
    accuracy, loss, removed = _evaluate_orders(engine, layer, [order], counts)
    return Curve(label, layer, counts, accuracy[0], loss[0], removed[0], direction, method, len(scores))
