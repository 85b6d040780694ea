"""Compression plans (which units each layer keeps) and physical pruning to a smaller real network.

Three ways to make a :class:`Plan` (paper A Table 2, paper B Tables 1-4)::

    rankings = core.layer_rankings(model, val, "shapley", samples=50)    # one Ranking per prunable layer
    core.plan_from_widths(model, "5-7-45-20", rankings)                   # (a) typed widths
    core.plan_from_pr(engine, rankings, pr=0.5)                           # (b) paper B's per-layer drop budget
    core.plan_from_budget(model, rankings, keep=0.5, kind="flops")        # (c) keep 50 % of the FLOPs
    small = core.prune(model, plan)                                       # a pruned copy; the model is untouched

Which units go inside a layer: the lowest of the ranking, or with ``clusters`` (``core.layer_clusters``)
paper B's cluster and filter levels: each unlocked cluster gives a share proportional to its size,
lowest contribution index first; locked (singleton) clusters are kept. The shares are apportioned one
unit at a time (D'Hondt: the next unit comes from the cluster with the largest size / (removed + 1)),
so removing more units always removes a superset. A cluster keeps its last unit unless
``empty_clusters=True`` (paper B's "prune B" in wide layers); the plan's notes say when a cluster is
emptied.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from torch import nn

from . import curves as _curves
from ..data import DataSplit
from ..engine import Engine
from ..network.models import build_model, is_staged, layer_names, model_totals, unit_count
from ..rankings import Ranking, rank
from ..interpret.similarity import Clusters, cluster_filters

RankingLike = Ranking | np.ndarray
Progress = Callable[[int, int], None]
_EPS = 1e-9


@dataclass
class Plan:
    """How many units each prunable layer keeps, and which units go."""

    units: dict[str, int]  # layer -> units before pruning
    off: dict[str, list[int]]  # layer -> units removed
    method: str = ""  # the ranking's label (or "clusters (...)")
    rule: str = "widths"  # "widths", "pr", "flops" or "params"
    target: float | str | None = None
    cluster_aware: bool = False
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # per-layer numbers of the rule (e.g. Pr costs)

    @property
    def widths(self) -> dict[str, int]:
        return {layer: n - len(self.off.get(layer, [])) for layer, n in self.units.items()}

    def widths_string(self) -> str:
        return "-".join(str(w) for w in self.widths.values())

    def removed(self) -> int:
        return sum(len(v) for v in self.off.values())

    def to_dict(self) -> dict:
        return {"widths": self.widths, "widths_string": self.widths_string(), "units": self.units,
                "off": self.off, "method": self.method, "rule": self.rule, "target": self.target,
                "cluster_aware": self.cluster_aware, "notes": self.notes, "details": self.details}


# --- rankings and clusters for every layer --------------------------------------------------

def layer_rankings(model: nn.Module, data: DataSplit, method: str = "l1", engine: Engine | None = None,
                   layers: Sequence[str] | None = None, progress: Progress | None = None,
                   **params) -> dict[str, Ranking]:
    """One ``core.rank`` result per prunable layer (cached on disk like every ranking)."""
    engine = engine or Engine(model, data)
    layers = list(layers or engine.layers)
    result = {}
    for i, layer in enumerate(layers):
        result[layer] = rank(model, data, layer, method, engine=engine, **params)
        if progress:
            progress(i + 1, len(layers))
    return result


def layer_clusters(model: nn.Module, data: DataSplit, engine: Engine | None = None,
                   layers: Sequence[str] | None = None, steps: int = 256, seed: int = 0,
                   progress: Progress | None = None) -> dict[str, Clusters]:
    """Paper B's clusters (``core.cluster_filters``) of every prunable layer."""
    engine = engine or Engine(model, data)
    layers = list(layers or engine.layers)
    result = {}
    for i, layer in enumerate(layers):
        result[layer] = cluster_filters(model, data, layer, steps, seed, engine=engine)
        if progress:
            progress(i + 1, len(layers))
    return result


# --- which units go inside a layer ----------------------------------------------------------

def _scores(ranking: RankingLike, units: int, layer: str) -> np.ndarray:
    scores = np.asarray(ranking.scores if isinstance(ranking, Ranking) else ranking, dtype=np.float64)
    if scores.shape != (units,):
        raise ValueError(f"the ranking for {layer} has {scores.size} scores but the layer has {units} units")
    return scores


def cluster_order(clusters: Clusters, empty_clusters: bool = False) -> tuple[list[int], dict[int, int]]:
    """Removal order by paper B's cluster and filter levels, and for each emptied cluster the position
    (number of units removed) at which it becomes empty.

    Locked singletons never appear; without ``empty_clusters`` every cluster keeps its last unit."""
    open_ = [list(m) for m in clusters.members if len(m) > 1]  # highest contribution first
    taken = [0] * len(open_)
    order: list[int] = []
    while True:
        room = [c for c in range(len(open_)) if taken[c] < len(open_[c]) - 1]
        if not room:
            break
        c = max(room, key=lambda c: (len(open_[c]) / (taken[c] + 1), len(open_[c]), -c))
        taken[c] += 1
        order.append(open_[c][len(open_[c]) - taken[c]])
    emptied: dict[int, int] = {}
    if empty_clusters:  # then whole clusters go, the one whose last unit contributes least first
        ids = [cid for cid, m in enumerate(clusters.members) if len(m) > 1]
        last = sorted(range(len(open_)), key=lambda c: clusters.contribution[open_[c][0]])
        for c in last:
            order.append(open_[c][0])
            emptied[ids[c]] = len(order)
    return order, emptied


def removal_order(layer: str, ranking: RankingLike | None, units: int, clusters: Clusters | None = None,
                  empty_clusters: bool = False) -> tuple[np.ndarray, dict[int, int]]:
    """Units of ``layer`` in the order a plan removes them (at most units - 1 of them)."""
    if clusters is not None:
        if len(clusters.labels) != units:
            raise ValueError(f"the clusters for {layer} cover {len(clusters.labels)} units, the layer has {units}")
        order, emptied = cluster_order(clusters, empty_clusters)
        return np.asarray(order[:units - 1], dtype=int), emptied
    if ranking is None:
        raise ValueError(f"no ranking for {layer}")
    scores = _scores(ranking, units, layer)
    return np.argsort(-scores, kind="stable")[::-1][:units - 1].copy(), {}


def _emptied_note(layer: str, emptied: dict[int, int], removed: int, clusters: Clusters | None) -> str | None:
    gone = [cid for cid, at in emptied.items() if at <= removed]
    if not gone:
        return None
    sizes = ", ".join(f"cluster {cid} ({len(clusters.members[cid])} units)" for cid in gone)
    return f"{layer}: {len(gone)} whole cluster(s) emptied (paper B's 'prune B'): {sizes}"


def _make(units: dict[str, int], counts: dict[str, int], orders: dict[str, tuple[np.ndarray, dict]],
          clusters: Mapping[str, Clusters] | None, **fields) -> Plan:
    off, notes = {}, list(fields.pop("notes", []))
    for layer, n in counts.items():
        order, emptied = orders[layer]
        off[layer] = sorted(int(u) for u in order[:n])
        note = _emptied_note(layer, emptied, n, (clusters or {}).get(layer))
        if note:
            notes.append(note)
    return Plan(units, {k: v for k, v in off.items() if v}, notes=notes,
                cluster_aware=clusters is not None, **fields)


def _label(rankings: Mapping[str, RankingLike] | None, clusters: Mapping[str, Clusters] | None) -> str:
    if clusters:
        return "clusters (paper B: share by cluster size, lowest contribution index first)"
    first = next(iter((rankings or {}).values()), None)
    return first.label if isinstance(first, Ranking) else "scores"


def _orders(model: nn.Module, rankings, clusters, empty_clusters: bool) -> tuple[dict, dict]:
    units = {layer: unit_count(model, layer) for layer in layer_names(model)}
    orders = {}
    for layer, n in units.items():
        ranking = (rankings or {}).get(layer)
        if ranking is None and (clusters or {}).get(layer) is None:
            raise ValueError(f"no ranking for {layer}: give one per prunable layer ({', '.join(units)})")
        orders[layer] = removal_order(layer, ranking, n, (clusters or {}).get(layer), empty_clusters)
    return units, orders


# --- (a) typed widths ---------------------------------------------------------------------------

def parse_widths(model: nn.Module, widths: str | Sequence[int] | Mapping[str, int]) -> dict[str, int]:
    """``"5-7-45-20"`` (or a list, or {layer: width}) -> {layer: width}, checked against the model."""
    names = layer_names(model)
    if isinstance(widths, Mapping):
        unknown = [k for k in widths if k not in names]
        if unknown:
            raise ValueError(f"unknown layer {unknown[0]!r}; prunable layers: {', '.join(names)}")
        chosen = {layer: int(widths.get(layer, unit_count(model, layer))) for layer in names}
    else:
        if isinstance(widths, str):
            parts = [p for p in re.split(r"[-,\s]+", widths.strip()) if p]
            try:
                values = [int(p) for p in parts]
            except ValueError:
                raise ValueError(f"widths {widths!r}: whole numbers separated by '-', e.g. "
                                 f"{'-'.join(str(unit_count(model, n)) for n in names)}") from None
        else:
            values = [int(w) for w in widths]
        if len(values) != len(names):
            raise ValueError(f"widths: this model has {len(names)} prunable layers ({', '.join(names)}), "
                             f"got {len(values)} numbers")
        chosen = dict(zip(names, values))
    for layer, width in chosen.items():
        units = unit_count(model, layer)
        if width < 1:
            raise ValueError(f"{layer}: width {width} would remove every unit and disconnect the network "
                             f"(keep at least 1)")
        if width > units:
            raise ValueError(f"{layer}: cannot keep {width} units, it has only {units}")
    return chosen


def plan_from_widths(model: nn.Module, widths: str | Sequence[int] | Mapping[str, int],
                     rankings: Mapping[str, RankingLike] | None = None,
                     clusters: Mapping[str, Clusters] | None = None, empty_clusters: bool = False) -> Plan:
    """A plan keeping exactly ``widths`` units per layer; the lowest-ranked (or by clusters) go."""
    chosen = parse_widths(model, widths)
    units, orders = _orders(model, rankings, clusters, empty_clusters)
    counts = {}
    for layer, width in chosen.items():
        n = units[layer] - width
        if n > len(orders[layer][0]):
            raise ValueError(f"{layer}: the clusters allow removing at most {len(orders[layer][0])} units "
                             f"(locked units{'' if empty_clusters else ' and each cluster’s last unit'} stay); "
                             f"width {width} needs {n}")
        counts[layer] = n
    return _make(units, counts, orders, clusters, method=_label(rankings, clusters), rule="widths",
                 target="-".join(str(w) for w in chosen.values()))


# --- (b) paper B's accuracy-drop budget Pr per layer ----------------------------------------------

def plan_from_pr(engine: Engine, rankings: Mapping[str, RankingLike] | None, pr: float,
                 clusters: Mapping[str, Clusters] | None = None, empty_clusters: bool = False,
                 layers: Sequence[str] | None = None, pool=None) -> Plan:
    """Paper B's layer level: for each layer the largest n whose removal *from that layer alone*
    (no retraining, the chosen order) costs at most ``pr`` accuracy points (0.5 = half a percent)
    on the engine's split; then all layers are pruned together.

    Each layer's costs are one batched ``core.pruning.curves.layer_curve`` over every count (an engine call).
    ``pool``: a ``core.engine.pools`` pool on ``engine`` (e.g. ``RayPool(engine)``) that runs those
    calls, one task per layer; the plan equals the local one exactly."""
    if not pr >= 0:
        raise ValueError(f"Pr is a tolerated accuracy drop in points and cannot be negative (got {pr})")
    model = engine.model
    units, orders = _orders(model, rankings, clusters, empty_clusters)
    base = engine.evaluate().accuracy
    counts, details = {}, {}
    chosen = list(layers or list(units))
    tasks = []
    for layer in chosen:  # what core.pruning.curves.layer_curve(engine, layer, scores, counts=0..len(order)) evaluates
        order = orders[layer][0]
        scores = np.full(units[layer], float(len(order) + 1))  # not in the order: never removed
        scores[order] = np.arange(len(order), dtype=float)  # removal order = lowest score first
        points = _curves.check_counts(range(len(order) + 1), engine.units(layer))
        tasks += _curves._order_blocks(layer, [_curves.removal_order(scores, "least")], points)  # one call
    results = _curves._run(engine, pool, _curves._masks_task, tasks)
    for layer, (_, _, points, _), (accuracy, _, _) in zip(chosen, tasks, results):
        drop = (base - accuracy[0]) * 100
        fits = np.nonzero(drop <= pr + _EPS)[0]
        n = int(points[fits.max()]) if len(fits) else 0
        counts[layer] = n
        details[layer] = {"removed": n, "cost_points": float(drop[list(points).index(n)]),
                          "curve_points": [float(d) for d in drop]}
    for layer in units:
        counts.setdefault(layer, 0)
    return _make(units, counts, orders, clusters, method=_label(rankings, clusters), rule="pr", target=pr,
                 details={"base_accuracy": base, "layers": details})


# --- (c) a budget of parameters or FLOPs -------------------------------------------------------

def normalized_scores(scores: np.ndarray) -> np.ndarray:
    """Scores made comparable across layers: shifted so the layer's lowest is 0, divided by the layer's
    mean (1 = a unit of average importance for its layer; all equal -> all 1)."""
    shifted = np.asarray(scores, dtype=np.float64) - np.min(scores)
    mean = shifted.mean()
    return shifted / mean if mean > 0 else np.ones_like(shifted)


def _structure(model: nn.Module) -> tuple[str, dict, int]:
    """(arch, arch params, classes) of one of our staged models, from its metadata or its layers."""
    meta = getattr(model, "meta", None)
    if meta is not None and meta.arch in ("lenet5", "vgg16"):
        return meta.arch, dict(meta.arch_params), meta.num_classes
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    fcs = [n for n in layer_names(model) if n.startswith("fc")]
    if "conv3" in model._modules:
        return "vgg16", {"in_channels": first.in_channels, "hidden_layers": len(fcs)}, last.out_features
    return "lenet5", {"in_channels": first.in_channels}, last.out_features


def totals_for_widths(model: nn.Module, widths: Sequence[int]) -> dict[str, int]:
    """Parameters and FLOPs of the same architecture with these widths (built, then counted)."""
    if not is_staged(model):
        raise ValueError("parameter/FLOP budgets need one of our own models (lenet5, vgg16); "
                         "for a torchvision model give widths or a Pr budget")
    arch, params, classes = _structure(model)
    params = {**params, "widths": list(widths)}
    from ..network.models import input_shape
    built = build_model(arch, params, classes, [0.0] * params.get("in_channels", 1),
                        [1.0] * params.get("in_channels", 1))
    return model_totals(built, input_shape(model))


def plan_from_budget(model: nn.Module, rankings: Mapping[str, RankingLike] | None, keep: float,
                     kind: str = "flops", clusters: Mapping[str, Clusters] | None = None,
                     empty_clusters: bool = False) -> Plan:
    """Remove the globally least important units until at most ``keep`` (a share, 0-1) of the model's
    parameters or FLOPs remain.

    Global order: every layer's units in its own removal order, merged by ``normalized_scores`` of the
    ranking (each layer's p-th removal gets the layer's p-th lowest normalized score); the fewest
    removals that reach the budget (binary search, counted on the built smaller architecture)."""
    if kind not in ("flops", "params"):
        raise ValueError(f"budget kind must be 'flops' or 'params' (got {kind!r})")
    if not 0 < keep <= 1:
        raise ValueError(f"the share of {kind} to keep must be in (0, 1] (got {keep})")
    units, orders = _orders(model, rankings, clusters, empty_clusters)
    queue = []
    for layer, (order, _) in orders.items():
        source = (clusters or {}).get(layer)
        raw = source.contribution if source is not None else _scores(rankings[layer], units[layer], layer)
        values = np.sort(normalized_scores(raw))[:len(order)]
        queue += [(float(v), p, layer) for p, v in enumerate(values)]
    queue.sort(key=lambda t: (t[0], t[1]))
    full = model_totals(model)[kind]
    goal = keep * full

    def counts_for(m: int) -> dict[str, int]:
        counts = dict.fromkeys(units, 0)
        for _, _, layer in queue[:m]:
            counts[layer] += 1
        return counts

    def cost(m: int) -> int:
        counts = counts_for(m)
        return totals_for_widths(model, [units[l] - counts[l] for l in units])[kind]

    if cost(len(queue)) > goal + _EPS:
        lowest = cost(len(queue)) / full
        raise ValueError(f"cannot reach {keep:.0%} of the {kind}: removing every removable unit leaves "
                         f"{lowest:.1%}")
    lo, hi = 0, len(queue)
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(mid) <= goal + _EPS:
            hi = mid
        else:
            lo = mid + 1
    counts = counts_for(lo)
    return _make(units, counts, orders, clusters, method=_label(rankings, clusters), rule=kind, target=keep,
                 details={"full": full, "pruned": cost(lo), "share": cost(lo) / full})


# --- physical pruning -----------------------------------------------------------------------------

def prune(model: nn.Module, plan: Plan | Mapping[str, Sequence[int]]) -> nn.Module:
    """A physically pruned copy (own models: ``core.prune_model``; torchvision: Torch-Pruning, coupled
    channels as groups). The model passed in is never modified."""
    off = plan.off if isinstance(plan, Plan) else {k: list(v) for k, v in plan.items()}
    if is_staged(model):
        from .prune import prune_model
        return prune_model(model, off)
    from ..network.coupling import prune_coupled
    return prune_coupled(model, off)


__all__ = ["Plan", "layer_rankings", "layer_clusters", "cluster_order", "removal_order", "parse_widths",
           "plan_from_widths", "plan_from_pr", "plan_from_budget", "normalized_scores", "totals_for_widths",
           "prune"]
