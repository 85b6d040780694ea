"""Plans by a budget of parameters or FLOPs (paper A Table 2's "keep x % of the FLOPs").

    core.plan_from_budget(model, rankings, keep=0.5, kind="flops")
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from torch import nn

from ..interpret.similarity import Clusters
from ..network.models import build_model, is_staged, layer_names, model_totals
from ..rankings import METHODS, Ranking
from .plans import _EPS, Plan, RankingLike, _label, _make, _orders, _scores


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


CROSS_LAYER = ("auto", "raw", "normalized")


def comparable_across_layers(rankings: Mapping[str, RankingLike] | None) -> bool:
    """Whether every ranking's scores share one scale across layers: a method that says so
    (``COMPARABLE_ACROSS_LAYERS``: Shapley values are accuracy (or loss) points of the whole network),
    the same method and payoff in every layer. Bare score arrays never are."""
    values = list((rankings or {}).values())
    if not values or not all(isinstance(r, Ranking) for r in values):
        return False
    kinds = {(r.method, r.params.get("payoff")) for r in values}
    return len(kinds) == 1 and bool(getattr(METHODS.get(values[0].method), "COMPARABLE_ACROSS_LAYERS", False))


def removal_values(order: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The value of each removal of a layer's order: the removed unit's own score, made non-decreasing
    along the order (a running maximum) so the merged global order keeps every layer's own order."""
    return np.maximum.accumulate(np.asarray(scores, dtype=np.float64)[np.asarray(order, dtype=int)]) \
        if len(order) else np.zeros(0)


def plan_from_budget(model: nn.Module, rankings: Mapping[str, RankingLike] | None, keep: float,
                     kind: str = "flops", clusters: Mapping[str, Clusters] | None = None,
                     empty_clusters: bool = False, cross_layer: str = "auto") -> Plan:
    """Remove the least important units, across all layers, until at most ``keep`` (a share, 0-1) of the
    model's parameters or FLOPs remain.

    Global order: every layer's units in its own removal order, merged by the value of each removal
    (``removal_values``: the removed unit's own score; with ``clusters`` its contribution index).
    ``cross_layer`` says which scores are merged: "raw" (the scores as they are: right when their scale
    is one across layers, e.g. Shapley values in accuracy points), "normalized" (``normalized_scores``:
    each layer shifted to 0 and divided by its mean, so every layer loses its lowest unit before any
    loses a second) or "auto" (raw when ``comparable_across_layers``, else normalized). The plan's
    ``details["cross_layer"]`` says which ran. The fewest removals that reach the budget (binary
    search, counted on the built smaller architecture)."""
    if kind not in ("flops", "params"):
        raise ValueError(f"budget kind must be 'flops' or 'params' (got {kind!r})")
    if not 0 < keep <= 1:
        raise ValueError(f"the share of {kind} to keep must be in (0, 1] (got {keep})")
    if cross_layer not in CROSS_LAYER:
        raise ValueError(f"cross_layer must be one of {', '.join(CROSS_LAYER)} (got {cross_layer!r})")
    if cross_layer == "auto":
        cross_layer = "raw" if clusters is None and comparable_across_layers(rankings) else "normalized"
    units, orders, _ = _orders(model, rankings, clusters, empty_clusters)
    queue = []
    for layer, (order, _) in orders.items():
        source = (clusters or {}).get(layer)
        raw = source.contribution if source is not None else _scores(rankings[layer], units[layer], layer)
        scores = normalized_scores(raw) if cross_layer == "normalized" else np.asarray(raw, dtype=np.float64)
        queue += [(float(v), p, layer) for p, v in enumerate(removal_values(order, scores))]
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
                 details={"full": full, "pruned": cost(lo), "share": cost(lo) / full, "cross_layer": cross_layer})



__all__ = ["plan_from_budget", "normalized_scores", "totals_for_widths", "comparable_across_layers",
           "removal_values", "CROSS_LAYER"]
