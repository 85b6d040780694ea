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
from typing import Callable, Mapping, Sequence

import numpy as np

from .distributed import LocalPool
from .engine import Engine
from .rankings import Ranking

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
    """``fn(engine, *args)`` for every task: on ``pool`` (a ``core.distributed`` pool) or here."""
    if pool is None:
        pool = LocalPool(engine)
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
    one more row of the first call (4th value). ``pool``: run the calls on a ``core.distributed``
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
    ``pool``: a ``core.distributed`` pool (e.g. ``RayPool(engine)``) that runs the call on a worker."""
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


@dataclass
class CurveSet:
    """Curves of several rankings of one layer (or of the whole network) and the random band."""

    layer: str  # a layer name, or ALL_LAYERS
    direction: str
    curves: list[Curve]
    random: RandomBand
    full_accuracy: float
    units: int  # units in the layer (whole network: in all prunable layers)
    split: str = ""

    @property
    def whole_network(self) -> bool:
        return self.layer == ALL_LAYERS

    def get(self, label: str) -> Curve:
        for curve in self.curves:
            if curve.label == label:
                return curve
        if label.startswith("Random (seed "):
            seed = int(label[len("Random (seed "):-1])
            if seed in self.random.seeds:
                return self.random.curve(self.random.seeds.index(seed))
        raise KeyError(f"no curve {label!r}; the curves are: {', '.join(c.label for c in self.curves)}")

    def removal(self, label: str, n: int) -> list[int]:
        """The units curve ``label`` turns off when it has removed ``n`` (in removal order; a layer curve)."""
        if self.whole_network:
            raise ValueError("a whole-network curve removes units of every layer: use curve.off(i)")
        curve = self.get(label)
        if not 0 <= n <= self.units:
            raise ValueError(f"n must be between 0 and {self.units} (got {n})")
        longest = max(curve.removed, key=len)
        if n > len(longest):
            raise ValueError(f"the curve {label!r} only goes to {len(longest)} units removed")
        return list(longest[:n])

    def counts_at(self, label: str, index: int) -> int:
        """Units removed at point ``index`` of curve ``label``."""
        return int(self.get(label).counts[index])

    def summary(self, tolerance: float = 0.01) -> "pd.DataFrame":
        """One row per method (and the random mean): see ``summarize``."""
        return summarize(self, tolerance)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "direction": self.direction, "split": self.split, "units": self.units,
                "full_accuracy": self.full_accuracy, "curves": [c.to_dict() for c in self.curves],
                "random": self.random.to_dict(),
                "summary": [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
                            for row in self.summary().to_dict(orient="records")]}

    def to_frame(self) -> "pd.DataFrame":
        """Long table, one row per (curve, point): for CSV export."""
        import pandas as pd

        rows = []
        for curve in [*self.curves, *(self.random.curve(i) for i in range(len(self.random.seeds)))]:
            for i in range(len(curve.counts)):
                rows.append({"layer": self.layer, "direction": self.direction, "method": curve.method,
                             "label": curve.label, "removed": int(curve.counts[i]), "rate": float(curve.rates[i]),
                             "accuracy": float(curve.accuracy[i]), "loss": float(curve.loss[i]),
                             "units_off": _describe_off(curve.off(i))})
        for i in range(len(self.random.counts)):
            for name, values in (("mean", self.random.mean), ("min", self.random.lo), ("max", self.random.hi)):
                rows.append({"layer": self.layer, "direction": self.direction, "method": "random",
                             "label": f"Random {name} of {len(self.random.seeds)} seeds",
                             "removed": int(self.random.counts[i]), "rate": float(self.random.rates[i]),
                             "accuracy": float(values[i]), "loss": float("nan"), "units_off": ""})
        return pd.DataFrame(rows)


ALL_LAYERS = "all layers"


def _describe_off(off: Mapping[str, Sequence[int]]) -> str:
    return "; ".join(f"{layer}: {' '.join(map(str, units))}" for layer, units in off.items() if len(units))


def resolve_methods(engine: Engine, layer: str, methods: Sequence[str | Ranking], params: Mapping[str, dict] | None = None,
                    rank_engine: Engine | None = None, progress: Progress | None = None) -> list[Ranking]:
    """Rankings of ``layer`` for each entry of ``methods``: a Ranking is used as given, a method name
    is computed with ``core.rank`` (on ``rank_engine``'s data, default the engine's; disk-cached).
    ``"random"`` is skipped: the random band is always drawn."""
    from .rankings import METHODS, rank

    methods = list(methods)
    if any(not isinstance(m, (str, Ranking)) and isinstance(m, Mapping) for m in methods):
        raise ValueError("a mapping of rankings per layer is for whole-network curves; give this layer's Ranking")
    names = [m for m in methods if isinstance(m, str)]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown ranking method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    informed = [m for m in methods if not (isinstance(m, str) and m == "random")]
    if not informed:
        raise ValueError("no ranking methods given: name at least one besides random (e.g. l1); "
                         "the random band is always drawn")
    rank_engine = rank_engine or engine
    params = dict(params or {})
    unused = sorted(set(params) - set(names))
    if unused:
        raise ValueError(f"parameters given for {unused[0]!r}, which is not among the methods")
    out: list[Ranking] = []
    for number, method in enumerate(informed):
        if isinstance(method, Ranking):
            ranking = method
        elif not isinstance(method, str):  # a plain score array
            scores, label, _ = _scores(engine, layer, method)
            ranking = Ranking(layer, "scores", {}, scores, label=label)
        else:
            def report(done: int, total: int, number=number) -> None:
                if progress:
                    progress(number * 1000 + int(1000 * min(1.0, done / max(1, total))), len(informed) * 1000)
            ranking = rank(rank_engine.model, rank_engine.data, layer, method, progress=report,
                           engine=rank_engine, **params.get(method, {}))
        if ranking.label not in [r.label for r in out]:
            out.append(ranking)
    if progress:
        progress(len(informed) * 1000, len(informed) * 1000)
    return out


def curve_set(engine: Engine, layer: str, methods: Sequence[str | Ranking], seeds: int = 5,
              counts: Sequence[int] | None = None, direction: str = "least", params: Mapping[str, dict] | None = None,
              rank_engine: Engine | None = None, progress: Progress | None = None, pool=None) -> CurveSet:
    """Layer curves of several rankings plus a random band of ``seeds`` seeds (min-max), evaluated on
    ``engine``'s data in one batched call. ``methods``: Rankings of ``layer`` and/or method names
    (computed on ``rank_engine``'s data, e.g. the validation split, with ``params[name]``).
    ``pool``: a ``core.distributed`` pool on ``engine`` that evaluates the curves (the rankings are
    computed here); the result equals the local one exactly."""
    check_seeds(seeds)
    check_counts(counts, engine.units(layer))
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'least' or 'most' (got {direction!r})")
    rankings = resolve_methods(engine, layer, methods, params, rank_engine, progress)
    curves, band, full = _layer_curves(engine, layer, rankings, seeds, counts, direction, full=True, pool=pool)
    return CurveSet(layer, direction, curves, band, full, engine.units(layer), engine.data.split)


# --- whole network (paper B Fig. 5) and the sensitivity grid (paper B Fig. 4) --------------------------

NETWORK_RATES = tuple(round(0.1 * i, 1) for i in range(10))  # 0, 0.1, ..., 0.9
GRID_RATES = tuple(round(0.1 * i, 1) for i in range(1, 10))  # 0.1, ..., 0.9


def layer_rankings(engine: Engine, methods: Sequence[str | Mapping[str, Ranking]], layers: Sequence[str] | None = None,
                   params: Mapping[str, dict] | None = None, rank_engine: Engine | None = None,
                   progress: Progress | None = None) -> list[dict[str, Ranking]]:
    """For each method (a name, or a mapping layer -> Ranking), its Ranking of every layer in ``layers``
    (default: every prunable layer). Names are computed with ``core.rank`` on ``rank_engine``'s data
    (disk-cached); ``"random"`` is skipped (the band is always drawn)."""
    layers = _check_layers(engine, layers)
    informed = [m for m in methods if not (isinstance(m, str) and m == "random")]
    for method in informed:
        if not isinstance(method, str):
            missing = [layer for layer in layers if layer not in method]
            if missing:
                raise ValueError(f"the rankings given have no ranking of {missing[0]}")
    total = len(layers) * max(1, len(informed))
    out: list[dict[str, Ranking]] = [{} for _ in informed]
    for j, layer in enumerate(layers):
        entries = [m if isinstance(m, str) else m[layer] for m in informed] or methods

        def report(done: int, count: int, j=j) -> None:
            if progress:
                progress(int(j * len(informed) + len(informed) * done / max(1, count)), total)
        rankings = resolve_methods(engine, layer, entries, params, rank_engine, report)
        if len(rankings) != len(informed):
            raise ValueError("the same ranking is listed twice")
        for i, ranking in enumerate(rankings):
            out[i][layer] = ranking
    return out


def _check_layers(engine: Engine, layers: Sequence[str] | None) -> list[str]:
    layers = list(engine.layers if layers is None else layers)
    if not layers:
        raise ValueError("no layers given")
    for layer in layers:
        engine.units(layer)  # validates the name
    return layers


def _network_off(orders: Mapping[str, np.ndarray], rate: float) -> dict[str, list[int]]:
    return {layer: [int(u) for u in order[:int(round(rate * len(order)))]] for layer, order in orders.items()}


def _point_task(engine: Engine, off: Mapping[str, list[int]]) -> tuple[float, float]:
    """Accuracy and loss of the network with ``off`` (several layers) turned off: one whole-network point."""
    result = engine.evaluate(off)
    return result.accuracy, result.loss


def network_curves(engine: Engine, methods: Sequence[str | Mapping[str, Ranking]], rates: Sequence[float] = NETWORK_RATES,
                   seeds: int = 5, direction: str = "least", layers: Sequence[str] | None = None,
                   params: Mapping[str, dict] | None = None, rank_engine: Engine | None = None,
                   progress: Progress | None = None, pool=None) -> CurveSet:
    """Paper B Fig. 5: every layer in ``layers`` (default all prunable layers) pruned at the same rate
    at once, by each method's ranking of that layer; plus ``seeds`` random orders per layer (min-max band).

    Each point masks several layers at once and is evaluated with ``Engine.evaluate(off)``.
    ``rates`` in [0, 1): rate r removes round(r * N) units of every layer of N units.
    ``pool``: a ``core.distributed`` pool on ``engine`` that evaluates the points (one task each; the
    rankings are computed here); the result equals the local one exactly."""
    seeds = check_seeds(seeds)
    rates = check_rates(rates)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'least' or 'most' (got {direction!r})")
    layers = _check_layers(engine, layers)
    if not [m for m in methods if not (isinstance(m, str) and m == "random")]:
        raise ValueError("no ranking methods given: name at least one besides random (e.g. l1); "
                         "the random band is always drawn")
    n_methods = len([m for m in methods if not (isinstance(m, str) and m == "random")])
    n_evals = (n_methods + seeds) * len(rates)
    weight = len(layers) * n_methods  # ranking steps count as one evaluation each in the progress

    def rank_progress(done: int, total: int) -> None:
        if progress:
            progress(int(weight * done / max(1, total)), weight + n_evals)
    per_layer = layer_rankings(engine, methods, layers, params, rank_engine, rank_progress)
    units = {layer: engine.units(layer) for layer in layers}
    seed_list = list(range(seeds))
    order_sets = [(r[layers[0]].label, r[layers[0]].method, {l: removal_order(r[l].scores, direction) for l in layers})
                  for r in per_layer]
    order_sets += [(f"Random (seed {s})", "random",
                    {l: removal_order(random_scores(units[l], s), direction) for l in layers}) for s in seed_list]
    all_masks = [[_network_off(orders, rate) for rate in rates] for _, _, orders in order_sets]
    done = [0]

    def report(_j: int, _result) -> None:
        done[0] += 1
        if progress:
            progress(weight + done[0], weight + n_evals)
    evaluated = _run(engine, pool, _point_task, [(off,) for masks in all_masks for off in masks], report)
    results = []
    for i, ((label, method, _), masks) in enumerate(zip(order_sets, all_masks)):
        points = evaluated[i * len(rates):(i + 1) * len(rates)]
        counts = np.array([sum(len(v) for v in off.values()) for off in masks])
        results.append((label, method, masks, counts, np.array([a for a, _ in points]),
                        np.array([l for _, l in points])))
    total_units = sum(units.values())
    curves = [Curve(label, ALL_LAYERS, counts, acc, loss, [[] for _ in masks], direction, method, total_units,
                    rates, masks) for label, method, masks, counts, acc, loss in results[:n_methods]]
    random_part = results[n_methods:]
    band = RandomBand(ALL_LAYERS, random_part[0][3], seed_list, np.stack([r[4] for r in random_part]),
                      np.stack([r[5] for r in random_part]), [[[] for _ in rates] for _ in seed_list], direction,
                      total_units, rates, [r[2] for r in random_part])
    return CurveSet(ALL_LAYERS, direction, curves, band, engine.evaluate().accuracy, total_units, engine.data.split)


@dataclass
class Sensitivity:
    """Paper B Fig. 4: accuracy with ONE layer pruned at each rate (the others intact), per method.

    ``accuracy[m, l, r]``: method ``labels[m]``, layer ``layers[l]``, rate ``rates[r]``; the last
    method is random, averaged over ``seeds`` seeds."""

    labels: list[str]
    layers: list[str]
    rates: np.ndarray
    accuracy: np.ndarray
    full_accuracy: float
    seeds: int
    direction: str = "least"

    def grid(self, label: str) -> np.ndarray:
        """(layers, rates) accuracy of one method."""
        if label not in self.labels:
            raise KeyError(f"no method {label!r}; the methods are: {', '.join(self.labels)}")
        return self.accuracy[self.labels.index(label)]

    def to_dict(self) -> dict:
        return {"labels": self.labels, "layers": self.layers, "rates": self.rates.tolist(),
                "accuracy": self.accuracy.tolist(), "full_accuracy": self.full_accuracy, "seeds": self.seeds,
                "direction": self.direction}


def sensitivity_grid(engine: Engine, methods: Sequence[str | Mapping[str, Ranking]], rates: Sequence[float] = GRID_RATES,
                     seeds: int = 5, layers: Sequence[str] | None = None, direction: str = "least",
                     params: Mapping[str, dict] | None = None, rank_engine: Engine | None = None,
                     progress: Progress | None = None, pool=None) -> Sensitivity:
    """Layers x rates -> accuracy with only that layer pruned, for each method and random (mean of
    ``seeds``); one batched engine call per layer (every method, seed and rate stacked).
    ``pool``: a ``core.distributed`` pool on ``engine`` that runs those calls (the rankings are
    computed here); the result equals the local one exactly."""
    seeds = check_seeds(seeds)
    rates = check_rates(rates)
    layers = _check_layers(engine, layers)
    per_layer = layer_rankings(engine, methods, layers, params, rank_engine,
                               (lambda d, t: progress(d, t + len(layers))) if progress else None)
    labels = [r[layers[0]].label for r in per_layer] + [f"Random (mean of {seeds} seeds)"]
    accuracy = np.zeros((len(labels), len(layers), len(rates)))
    prepared, tasks, owner = [], [], []
    for j, layer in enumerate(layers):
        prepared.append(_layer_orders(engine, layer, [r[layer] for r in per_layer], seeds,
                                      counts_for_rates(engine.units(layer), rates), direction))
        blocks = _order_blocks(layer, prepared[-1][1], prepared[-1][2])
        tasks += blocks
        owner += [j] * len(blocks)
    left = [owner.count(j) for j in range(len(layers))]
    ranked = len(layers) * len(per_layer)

    def report(t: int, _result) -> None:  # a layer is done when its last call is
        left[owner[t]] -= 1
        if progress:
            progress(ranked + sum(1 for n in left if n == 0), ranked + len(layers))
    results = _run(engine, pool, _masks_task, tasks, report)
    for j, layer in enumerate(layers):
        resolved, orders, counts, seed_list, units = prepared[j]
        mine = [r for r, o in zip(results, owner) if o == j]
        layer_accuracy, layer_loss, _ = _assemble(mine, len(orders), len(counts))
        curves, band = _curves_and_band(layer, resolved, layer_accuracy, layer_loss, _removed(orders, counts),
                                        counts, seed_list, direction, units)
        for i, curve in enumerate(curves):
            accuracy[i, j] = curve.accuracy
        accuracy[-1, j] = band.mean
    return Sensitivity(labels, layers, rates, accuracy, engine.evaluate().accuracy, seeds, direction)


# the summary table and the figures live in core/curve_plots.py; their names stay importable from here
from .curve_plots import (COLORS, MIRROR_SUFFIX, _area, _hover, _within, curves_figure,  # noqa: E402,F401
                          sensitivity_figure, summarize)
