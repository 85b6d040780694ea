"""Curve sets: the curves of several rankings of one layer (or of the whole network) beside the
random band, the rankings they need, and their summary table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from ..engine import Engine
from ..rankings import Ranking
from .curves import (DIRECTIONS, Curve, Progress, RandomBand, _layer_curves, _scores, check_counts,
                     check_seeds)


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
    reference: Curve | None = None  # the oracle (or greedy) reference of a layer, when asked for (issue 19)

    @property
    def whole_network(self) -> bool:
        return self.layer == ALL_LAYERS

    def get(self, label: str) -> Curve:
        for curve in [*self.curves, *([self.reference] if self.reference is not None else [])]:
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
        if n in list(curve.counts):  # the point's own mask (the oracle's best sets are not nested)
            return list(curve.removed[list(curve.counts).index(n)])
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
                **({"reference": self.reference.to_dict()} if self.reference is not None else {}),
                "summary": [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
                            for row in self.summary().to_dict(orient="records")]}

    def to_frame(self) -> "pd.DataFrame":
        """Long table, one row per (curve, point): for CSV export."""
        import pandas as pd

        rows = []
        reference = [self.reference] if self.reference is not None else []
        for curve in [*self.curves, *reference, *(self.random.curve(i) for i in range(len(self.random.seeds)))]:
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
    from ..rankings import METHODS, rank

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
              rank_engine: Engine | None = None, progress: Progress | None = None, pool=None,
              reference: str | None = None) -> CurveSet:
    """Layer curves of several rankings plus a random band of ``seeds`` seeds (min-max), evaluated on
    ``engine``'s data in one batched call. ``methods``: Rankings of ``layer`` and/or method names
    (computed on ``rank_engine``'s data, e.g. the validation split, with ``params[name]``).
    ``pool``: a ``core.engine.pools`` pool on ``engine`` that evaluates the curves (the rankings are
    computed here); the result equals the local one exactly.
    ``reference``: also the ``"oracle"`` (best of all removals, exhaustive), ``"greedy"`` or ``"auto"``
    reference line (core/pruning/oracle.py), on the same split and counts (``CurveSet.reference``)."""
    from .oracle import REFERENCES, check_oracle, reference_curve

    check_seeds(seeds)
    check_counts(counts, engine.units(layer))
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'least' or 'most' (got {direction!r})")
    if reference is not None and reference not in REFERENCES:
        raise ValueError(f"reference must be one of {', '.join(REFERENCES)} or None (got {reference!r})")
    if reference is not None and direction != "least":
        raise ValueError("the oracle / greedy reference is the best removal: it goes with direction='least'")
    if reference == "oracle":
        check_oracle(engine.units(layer))  # before any ranking is computed
    rankings = resolve_methods(engine, layer, methods, params, rank_engine, progress)
    curves, band, full = _layer_curves(engine, layer, rankings, seeds, counts, direction, full=True, pool=pool)
    ref = reference_curve(engine, layer, reference, counts) if reference is not None else None
    return CurveSet(layer, direction, curves, band, full, engine.units(layer), engine.data.split, ref)


# --- summary ------------------------------------------------------------------------------------------


def _area(rates: np.ndarray, accuracy: np.ndarray) -> float:
    """Mean accuracy over the range of rates covered (area under the curve / width of the range)."""
    if len(rates) < 2 or rates[-1] == rates[0]:
        return float(accuracy.mean())
    order = np.argsort(rates, kind="stable")
    x, y = rates[order], accuracy[order]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def _within(rates: np.ndarray, accuracy: np.ndarray, full: float, tolerance: float) -> float:
    """The largest rate up to which every point stays within ``tolerance`` of the full model's accuracy."""
    order = np.argsort(rates, kind="stable")
    best = np.nan
    for i in order:
        if accuracy[i] < full - tolerance - 1e-12:
            break
        best = rates[i]
    return float(best)


def summarize(curves: CurveSet, tolerance: float = 0.01) -> "pd.DataFrame":
    """One row per method plus the random mean, a table a reader can quote:

    * ``area``: mean accuracy over the rates covered (area under the curve, rate axis scaled to 1);
    * ``max rate within 1 pt``: the largest rate before the curve first drops more than ``tolerance``
      (0.01 = 1 point) below the full model (``units within 1 pt``: how many units that is, for a layer);
    * ``above band`` / ``below band``: points strictly above the best / below the worst random seed, out of
      the points strictly between nothing and everything removed (the two ends are one network for all);
    * ``first above band``: the smallest rate where the curve rises above the random band;
    * ``vs L1``: points above / below the L1 curve (when L1 is among the curves)."""
    import pandas as pd

    band = curves.random
    l1 = next((c for c in curves.curves if c.method == "l1"), None)
    rows = []
    for curve in [*curves.curves, *([curves.reference] if curves.reference is not None else []), None]:
        rates = band.rates if curve is None else curve.rates
        accuracy = band.mean if curve is None else curve.accuracy
        row = {"method": band.label if curve is None else curve.label,
               "area": _area(rates, accuracy),
               f"max rate within {tolerance * 100:g} pt": _within(rates, accuracy, curves.full_accuracy, tolerance)}
        if not curves.whole_network:
            counts = band.counts if curve is None else curve.counts
            ok = row[f"max rate within {tolerance * 100:g} pt"]
            row[f"units within {tolerance * 100:g} pt"] = int(counts[np.argmin(np.abs(rates - ok))]) if ok == ok else 0
        # the end points (nothing removed, everything removed) are the same network for every ranking:
        # they are not counted, in the numerators nor the denominators
        inner = (rates > 0) & (rates < 1)
        above = (accuracy > band.hi + 1e-12) & inner
        below = (accuracy < band.lo - 1e-12) & inner
        row["above band"] = f"{int(above.sum())}/{int(inner.sum())}" if curve is not None else ""
        row["below band"] = f"{int(below.sum())}/{int(inner.sum())}" if curve is not None else ""
        row["first above band"] = float(rates[np.argmax(above)]) if curve is not None and above.any() else np.nan
        if l1 is not None:
            if curve is None or curve is l1:
                row["vs L1 (above/below)"] = ""
            else:
                row["vs L1 (above/below)"] = (f"{int((curve.accuracy > l1.accuracy + 1e-12).sum())}/"
                                              f"{int((curve.accuracy < l1.accuracy - 1e-12).sum())}")
        rows.append(row)
    return pd.DataFrame(rows)
