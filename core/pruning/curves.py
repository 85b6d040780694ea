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

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..engine.pools import LocalPool, check_pool
from ..engine import Engine
from ..rankings import Ranking

Progress = Callable[[int, int], None]  # (done, total)
DIRECTIONS = ("least", "most")  # remove the least important first (the pruning curve) / the most (its mirror)
FULL_GRID_MAX = 64  # layers up to this many units get every count 0..N; wider ones a grid of GRID_POINTS
GRID_POINTS = 33
MIN_SEEDS, MAX_SEEDS = 5, 100
STACK_LIMIT = 256  # masks per batched engine call when several curves are evaluated together


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
    units: int = 0  # units in the layer (whole network: in all its prunable layers)
    grid_rates: np.ndarray | None = None  # whole-network curves: the pruning rate of each point
    masks: list[dict[str, list[int]]] | None = None  # whole-network curves: the units off per layer at each point

    @property
    def rates(self) -> np.ndarray:
        """Fraction of the units removed at each point (whole network: the rate applied to every layer)."""
        return self.grid_rates if self.grid_rates is not None else self.counts / max(1, self.units)

    def off(self, i: int) -> dict[str, list[int]]:
        """The mask of point ``i`` as an ``off`` mapping (for ``Engine.evaluate`` or the toggles page)."""
        if self.masks is not None:
            return {layer: sorted(units) for layer, units in self.masks[i].items() if len(units)}
        return {self.layer: sorted(self.removed[i])}

    def to_dict(self) -> dict:
        out = {"label": self.label, "method": self.method, "layer": self.layer, "direction": self.direction,
               "units": self.units, "counts": self.counts.tolist(), "rates": self.rates.tolist(),
               "accuracy": self.accuracy.tolist(), "loss": self.loss.tolist(), "removed": self.removed}
        if self.masks is not None:
            out["off"] = self.masks
        return out


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


def _order_blocks(layer: str, orders: Sequence[np.ndarray], counts: np.ndarray, full: bool = False) -> list[tuple]:
    """The engine calls of a set of curves, as ``_masks_task`` argument tuples: whole curves stacked
    up to STACK_LIMIT masks per call (a curve is never split); ``full`` adds the unmasked row to the
    first. The split depends only on the curves, never on a pool's workers, so every pool computes
    exactly the same calls."""
    per_call = max(1, STACK_LIMIT // max(1, len(counts)))
    return [(layer, [np.asarray(o) for o in orders[lo:lo + per_call]], np.asarray(counts), full and lo == 0)
            for lo in range(0, max(1, len(orders)), per_call)]


def _masks_task(engine: Engine, layer: str, orders: Sequence[np.ndarray], counts: np.ndarray,
                full: bool = False) -> tuple:
    """One ``Engine.evaluate_masks`` call: accuracy and loss (orders x points) of every order at every
    count, plus (``full``) the unmasked accuracy from one more row. Runs wherever the pool puts it."""
    units = engine.units(layer)
    keep = np.ones((len(orders), len(counts), units), dtype=np.float32)
    for o, order in enumerate(orders):
        for p, n in enumerate(counts):
            keep[o, p, order[:n]] = 0.0
    block = keep.reshape(-1, units)
    if full:
        block = np.concatenate([block, np.ones((1, units), dtype=np.float32)])
    shape = (len(orders), len(counts))
    if not len(block):
        return np.zeros(shape), np.zeros(shape), None
    result = engine.evaluate_masks(layer, block)
    rows = shape[0] * shape[1]
    return (np.asarray(result.accuracy[:rows]).reshape(shape), np.asarray(result.loss[:rows]).reshape(shape),
            float(result.accuracy[-1]) if full else None)


def _run(engine: Engine, pool, fn: Callable, arglist: Sequence[tuple], on_result=None) -> list:
    """``fn(engine, *args)`` for every task: on ``pool`` (a ``core.engine.pools`` pool) or here."""
    if pool is None:
        pool = LocalPool(engine)
    check_pool(pool, engine)  # another model's, split's or precision's pool is refused in one line
    return pool.map(fn, arglist, on_result)


def _assemble(results: Sequence[tuple], n_orders: int, n_counts: int) -> tuple:
    shape = (n_orders, n_counts)
    accuracy = np.concatenate([r[0] for r in results]).reshape(shape) if n_orders else np.zeros(shape)
    loss = np.concatenate([r[1] for r in results]).reshape(shape) if n_orders else np.zeros(shape)
    return accuracy, loss, results[0][2] if results else None


def _removed(orders: Sequence[np.ndarray], counts: np.ndarray) -> list[list[list[int]]]:
    return [[[int(u) for u in order[:n]] for n in counts] for order in orders]


def _evaluate_orders(engine: Engine, layer: str, orders: Sequence[np.ndarray], counts: np.ndarray,
                     full: bool = False, pool=None) -> tuple:
    """Accuracy and loss (orders x points) and the removed units, for every order at every count.

    The masks of whole curves are stacked into batched ``Engine.evaluate_masks`` calls: one call for
    everything up to STACK_LIMIT masks, else as many whole curves per call as fit (a curve is never
    split; past a few hundred masks the engine's image chunks get so small that one huge stack is
    slower, see benchmarks/bench_curves.py). ``full``: also the unmasked network's accuracy, from
    one more row of the first call (4th value). ``pool``: run the calls on a ``core.engine.pools``
    pool (Ray workers); the calls are the same, so the numbers are the same as here."""
    results = _run(engine, pool, _masks_task, _order_blocks(layer, orders, counts, full))
    accuracy, loss, full_accuracy = _assemble(results, len(orders), len(counts))
    out = (accuracy, loss, _removed(orders, counts))
    return (*out, full_accuracy) if full else out


def layer_curve(engine: Engine, layer: str, ranking: Ranking | np.ndarray, counts: Sequence[int] | None = None,
                direction: str = "least", pool=None) -> Curve:
    """Accuracy and loss of ``layer`` with its ``counts[i]`` least (``direction="least"``) or most
    (``"most"``) important units off, by ``ranking`` (a Ranking or scores, higher = more important).

    ``counts`` defaults to 0..N (a grid of GRID_POINTS counts for layers wider than FULL_GRID_MAX).
    All points are evaluated in one batched ``engine.evaluate_masks`` call; nothing is retrained.
    ``pool``: a ``core.engine.pools`` pool (e.g. ``RayPool(engine)``) that runs the call on a worker."""
    scores, label, method = _scores(engine, layer, ranking)
    counts = check_counts(counts, len(scores))
    order = removal_order(scores, direction)
    accuracy, loss, removed = _evaluate_orders(engine, layer, [order], counts, pool=pool)
    return Curve(label, layer, counts, accuracy[0], loss[0], removed[0], direction, method, len(scores))


# --- random band, several methods at once ---------------------------------------------------------


@dataclass
class RandomBand:
    """Curves of ``len(seeds)`` seeded random removal orders; the band is min-max over seeds."""

    layer: str
    counts: np.ndarray
    seeds: list[int]
    accuracy: np.ndarray  # (seeds, points)
    loss: np.ndarray
    removed: list[list[list[int]]]  # [seed][point] -> units off
    direction: str = "least"
    units: int = 0
    grid_rates: np.ndarray | None = None  # whole-network curves: the rate of each point
    masks: list[list[dict[str, list[int]]]] | None = None  # whole-network curves: [seed][point] -> off mapping

    @property
    def label(self) -> str:
        return f"Random (mean of {len(self.seeds)} seeds)"

    @property
    def rates(self) -> np.ndarray:
        return self.grid_rates if self.grid_rates is not None else self.counts / max(1, self.units)

    @property
    def mean(self) -> np.ndarray:
        return self.accuracy.mean(0)

    @property
    def std(self) -> np.ndarray:
        return self.accuracy.std(0)

    @property
    def lo(self) -> np.ndarray:
        """Lower edge of the band: the worst seed at each point."""
        return self.accuracy.min(0)

    @property
    def hi(self) -> np.ndarray:
        """Upper edge of the band: the best seed at each point."""
        return self.accuracy.max(0)

    def curve(self, i: int) -> Curve:
        """The curve of the i-th seed."""
        return Curve(f"Random (seed {self.seeds[i]})", self.layer, self.counts, self.accuracy[i], self.loss[i],
                     self.removed[i], self.direction, "random", self.units, self.grid_rates,
                     None if self.masks is None else self.masks[i])

    def to_dict(self) -> dict:
        return {"label": self.label, "layer": self.layer, "direction": self.direction, "seeds": self.seeds,
                "band": "min-max over seeds", "counts": self.counts.tolist(), "rates": self.rates.tolist(),
                "accuracy": self.accuracy.tolist(), "loss": self.loss.tolist(), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "lo": self.lo.tolist(), "hi": self.hi.tolist()}


def check_seeds(seeds: int) -> int:
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)):
        raise ValueError(f"the number of random seeds must be a whole number (got {seeds!r})")
    if not MIN_SEEDS <= seeds <= MAX_SEEDS:
        raise ValueError(f"the number of random seeds must be between {MIN_SEEDS} and {MAX_SEEDS} (got {seeds}): "
                         f"at least {MIN_SEEDS} so the band shows chance, at most {MAX_SEEDS} to stay fast")
    return int(seeds)


def random_scores(units: int, seed: int) -> np.ndarray:
    """The scores of ``core.rank(..., method="random", seed=seed)``: seed s of the band is that ranking."""
    return np.random.default_rng(int(seed)).random(units)


def random_band(engine: Engine, layer: str, seeds: int = 5, counts: Sequence[int] | None = None,
                direction: str = "least", first_seed: int = 0, pool=None) -> RandomBand:
    """``seeds`` random removal orders (seeds first_seed, first_seed+1, ...), all in one batched call
    (whole curves per call up to STACK_LIMIT masks; ``pool``: those calls on its workers)."""
    return _layer_curves(engine, layer, [], seeds, counts, direction, first_seed, pool=pool)[1]


def _layer_orders(engine: Engine, layer: str, rankings: Sequence[Ranking | np.ndarray], seeds: int,
                  counts: Sequence[int] | None, direction: str, first_seed: int = 0) -> tuple:
    """(resolved rankings, orders: the rankings' then the random seeds', counts, seed list, units)."""
    seeds = check_seeds(seeds)
    units = engine.units(layer)
    counts = check_counts(counts, units)
    resolved = [_scores(engine, layer, r) for r in rankings]
    orders = [removal_order(scores, direction) for scores, _, _ in resolved]
    seed_list = list(range(first_seed, first_seed + seeds))
    orders += [removal_order(random_scores(units, s), direction) for s in seed_list]
    return resolved, orders, counts, seed_list, units


def _layer_curves(engine: Engine, layer: str, rankings: Sequence[Ranking | np.ndarray], seeds: int,
                  counts: Sequence[int] | None, direction: str, first_seed: int = 0,
                  full: bool = False, pool=None) -> tuple:
    """Curves of every ranking plus the random band: every mask of every order in ONE engine call
    (``full``: and the unmasked accuracy from the same call, as a third value)."""
    resolved, orders, counts, seed_list, units = _layer_orders(engine, layer, rankings, seeds, counts, direction,
                                                               first_seed)
    accuracy, loss, removed, *full_accuracy = _evaluate_orders(engine, layer, orders, counts, full, pool)
    return _curves_and_band(layer, resolved, accuracy, loss, removed, counts, seed_list, direction, units,
                            full_accuracy)


def _curves_and_band(layer, resolved, accuracy, loss, removed, counts, seed_list, direction, units,
                     full_accuracy=()) -> tuple:
    k = len(resolved)
    curves = [Curve(label, layer, counts, accuracy[i], loss[i], removed[i], direction, method, units)
              for i, (_, label, method) in enumerate(resolved)]
    band = RandomBand(layer, counts, seed_list, accuracy[k:], loss[k:], removed[k:], direction, units)
    return (curves, band, *full_accuracy)
