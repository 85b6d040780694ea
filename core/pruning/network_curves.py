"""Whole-network curves (paper B Fig. 5: every layer pruned at the same rate at once) and the
sensitivity grid (paper B Fig. 4: each layer alone at each rate)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..engine import Engine
from ..rankings import Ranking
from .curve_sets import ALL_LAYERS, CurveSet, resolve_methods
from .curves import (DIRECTIONS, Curve, Progress, RandomBand, _assemble, _curves_and_band, _layer_orders,
                     _masks_task, _order_blocks, _removed, _run, check_rates, check_seeds, counts_for_rates,
                     random_scores, removal_order)


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
    ``pool``: a ``core.engine.pools`` pool on ``engine`` that evaluates the points (one task each; the
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
    ``pool``: a ``core.engine.pools`` pool on ``engine`` that runs those calls (the rankings are
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
