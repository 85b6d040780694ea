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
import weakref
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from torch import nn

from . import curves as _curves
from ..data import DataSplit
from ..engine import Engine
from ..network.models import is_staged, layer_names, unit_count
from ..rankings import Ranking, rank
from ..interpret.similarity import Clusters, cluster_filters, cluster_removal_order

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
    groups: list[list[str]] = field(default_factory=list)  # coupled layers: one unit of the plan each

    def planning_units(self) -> list[list[str]]:
        """What the plan decides on, in layer order: each coupled group once (its members), every other
        layer alone. The members of a group keep the same units (their channels are one)."""
        return plan_groups(list(self.units), self.groups)

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
                "cluster_aware": self.cluster_aware, "notes": self.notes, "details": self.details,
                "groups": self.groups}


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
                   progress: Progress | None = None, size: int | Mapping[str, int] | None = None) -> dict[str, Clusters]:
    """Paper B's clusters (``core.cluster_filters``) of every prunable layer; ``size``: the AM images' side,
    one for every layer or per layer (a torchvision model's deep layers take smaller ones, ``am_images``)."""
    engine = engine or Engine(model, data)
    layers = list(layers or engine.layers)
    result = {}
    for i, layer in enumerate(layers):
        side = size.get(layer) if isinstance(size, Mapping) else size
        result[layer] = cluster_filters(model, data, layer, steps, seed, engine=engine, size=side)
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
    order = cluster_removal_order(clusters)
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
          clusters: Mapping[str, Clusters] | None, groups: list[list[str]] | None = None, **fields) -> Plan:
    off, notes = {}, list(fields.pop("notes", []))
    for members in plan_groups(list(units), groups or []):
        counts_here = {counts.get(layer, 0) for layer in members}
        if len(counts_here) > 1:  # never: every rule plans a group as one unit
            raise ValueError(f"coupled layers {' + '.join(members)} were planned with different counts")
        for layer in members:
            order, emptied = orders[layer]
            off[layer] = sorted(int(u) for u in order[:counts.get(layer, 0)])
        note = _emptied_note(members[0], orders[members[0]][1], counts.get(members[0], 0),
                             (clusters or {}).get(members[0]))
        if note:
            notes.append(note)
    return Plan(units, {k: v for k, v in off.items() if v}, notes=notes,
                cluster_aware=clusters is not None, groups=[list(g) for g in groups or []], **fields)


_GROUPS: "weakref.WeakKeyDictionary[nn.Module, list[list[str]]]" = weakref.WeakKeyDictionary()


def coupled_layers(model: nn.Module) -> list[list[str]]:
    """The model's coupled groups (``core.network.coupling``; [] for our staged models), traced once per model."""
    if is_staged(model):
        return []
    if model not in _GROUPS:
        from ..network.coupling import coupled_groups
        _GROUPS[model] = coupled_groups(model)
    return _GROUPS[model]


def plan_groups(layers: Sequence[str], groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """``layers`` as the units a plan decides on: each coupled group once, in the order of its first member."""
    member_of = {layer: list(g) for g in groups for layer in g}
    result, seen = [], set()
    for layer in layers:
        if layer in seen:
            continue
        members = [m for m in member_of.get(layer, [layer]) if m in layers] or [layer]
        seen.update(members)
        result.append(members)
    return result


def _label(rankings: Mapping[str, RankingLike] | None, clusters: Mapping[str, Clusters] | None) -> str:
    if clusters:
        return "clusters (paper B: share by cluster size, lowest contribution index first)"
    first = next(iter((rankings or {}).values()), None)
    return first.label if isinstance(first, Ranking) else "scores"


def _orders(model: nn.Module, rankings, clusters, empty_clusters: bool) -> tuple[dict, dict, list]:
    """Units per layer, the removal order of every layer and the coupled groups.

    A coupled group (a residual stream: its channel c is one channel in every member) gets one order:
    by the mean of its members' scores for each channel (Torch-Pruning's group importance, mean
    reduction), or by its first member's clusters; every member removes the same units."""
    units = {layer: unit_count(model, layer) for layer in layer_names(model)}
    groups = coupled_layers(model)
    orders = {}
    for members in plan_groups(list(units), groups):
        lead, source = members[0], (clusters or {}).get(members[0])
        ranking = None
        if source is None:
            missing = [layer for layer in members if (rankings or {}).get(layer) is None]
            if missing:
                raise ValueError(f"no ranking for {missing[0]}: give one per prunable layer ({', '.join(units)})")
            ranking = np.mean([_scores(rankings[layer], units[layer], layer) for layer in members], axis=0)
        order = removal_order(lead, ranking, units[lead], source, empty_clusters)
        orders.update(dict.fromkeys(members, order))
    return units, orders, groups


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
    units, orders, groups = _orders(model, rankings, clusters, empty_clusters)
    for members in plan_groups(list(units), groups):
        if len({chosen[layer] for layer in members}) > 1:
            raise ValueError(f"{' + '.join(members)} share their channels (a residual add), so they keep the "
                             f"same units: give them one width, not {', '.join(str(chosen[l]) for l in members)}")
    counts = {}
    for layer, width in chosen.items():
        n = units[layer] - width
        if n > len(orders[layer][0]):
            raise ValueError(f"{layer}: the clusters allow removing at most {len(orders[layer][0])} units "
                             f"(locked units{'' if empty_clusters else ' and each cluster’s last unit'} stay); "
                             f"width {width} needs {n}")
        counts[layer] = n
    return _make(units, counts, orders, clusters, groups, method=_label(rankings, clusters), rule="widths",
                 target="-".join(str(w) for w in chosen.values()))


# --- (b) paper B's accuracy-drop budget Pr per layer ----------------------------------------------

CROSSINGS = ("first", "largest")


def pr_count(drop: Sequence[float], pr: float, crossing: str = "first") -> int:
    """Index into a cost curve (``drop[n]``: accuracy points lost removing n units) that paper B's Pr rule
    picks. ``"first"``: the last count before the curve first costs more than ``pr`` (a noisy curve
    that dips back under Pr later does not count); ``"largest"``: the largest count anywhere whose
    cost is within ``pr`` (a noisy curve's luckiest point)."""
    if crossing not in CROSSINGS:
        raise ValueError(f"crossing must be one of {', '.join(CROSSINGS)} (got {crossing!r})")
    fits = np.asarray(drop, dtype=np.float64) <= pr + _EPS
    if crossing == "largest":
        return int(np.nonzero(fits)[0].max()) if fits.any() else 0
    over = np.nonzero(~fits)[0]
    return max(0, int(over[0]) - 1) if len(over) else len(fits) - 1


def plan_from_pr(engine: Engine, rankings: Mapping[str, RankingLike] | None, pr: float,
                 clusters: Mapping[str, Clusters] | None = None, empty_clusters: bool = False,
                 layers: Sequence[str] | None = None, pool=None, crossing: str = "first") -> Plan:
    """Paper B's layer level: for each layer the most units n whose removal *from that layer alone*
    (no retraining, the chosen order) costs at most ``pr`` accuracy points (0.5 = half a percent)
    on the engine's split; then all layers are pruned together. ``crossing`` (``pr_count``): "first"
    (default) stops where the cost curve first exceeds Pr; "largest" takes the largest such n anywhere.

    A coupled group (ResNet residual stream) is one unit of the plan: its cost curve removes each
    channel from every member at once (the engine masks the whole group), which is what pruning does.
    ``details``: each layer's (group's) cost curve and chosen cost, and the whole plan's accuracy on
    the engine's split (``plan_accuracy``; all layers pruned together, no retraining).

    Each layer's costs are one batched ``core.pruning.curves.layer_curve`` over every count (an engine call).
    ``pool``: a ``core.engine.pools`` pool on ``engine`` (e.g. ``RayPool(engine)``) that runs those
    calls, one task per layer; the plan equals the local one exactly."""
    if not pr >= 0:
        raise ValueError(f"Pr is a tolerated accuracy drop in points and cannot be negative (got {pr})")
    if crossing not in CROSSINGS:
        raise ValueError(f"crossing must be one of {', '.join(CROSSINGS)} (got {crossing!r})")
    model = engine.model
    units, orders, groups = _orders(model, rankings, clusters, empty_clusters)
    base = engine.evaluate().accuracy
    counts, details = {}, {}
    wanted = set(layers or units)
    chosen = [members for members in plan_groups(list(units), groups) if wanted & set(members)]
    tasks = []
    for members in chosen:  # what core.pruning.curves.layer_curve(engine, lead, scores, counts=0..len(order)) evaluates
        layer = members[0]
        order = orders[layer][0]
        scores = np.full(units[layer], float(len(order) + 1))  # not in the order: never removed
        scores[order] = np.arange(len(order), dtype=float)  # removal order = lowest score first
        points = _curves.check_counts(range(len(order) + 1), engine.units(layer))
        tasks += _curves._order_blocks(layer, [_curves.removal_order(scores, "least")], points)  # one call
    results = _curves._run(engine, pool, _curves._masks_task, tasks)
    for members, (_, _, points, _), (accuracy, _, _) in zip(chosen, tasks, results):
        drop = (base - accuracy[0]) * 100
        index = pr_count(drop, pr, crossing)
        n = int(points[index])
        counts.update(dict.fromkeys(members, n))
        details[members[0]] = {"removed": n, "cost_points": float(drop[index]), "members": list(members),
                               "curve_points": [float(d) for d in drop]}
    for layer in units:
        counts.setdefault(layer, 0)
    plan = _make(units, counts, orders, clusters, groups, method=_label(rankings, clusters), rule="pr", target=pr,
                 details={"base_accuracy": base, "layers": details, "crossing": crossing})
    plan.details["plan_accuracy"] = engine.evaluate(plan.off).accuracy
    return plan


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
           "plan_from_widths", "plan_from_pr", "plan_groups", "prune"]
