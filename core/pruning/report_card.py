"""The report card of a layer: how close each ranking's pruning curve comes to the best possible removal.

    import core
    s = core.curve_set(test_engine, "conv2", rankings, reference="oracle")   # rankings: core.rank(...) results
    card = core.report_card(s, rankings, stability_seeds=3, rank_engine=val_engine)
    card.table, card.winner, card.reading

Per ranking (sorted, best first; the winner marked): its mean and largest gap to the reference over the
interior points (0 < n < N, in accuracy points), the units it can remove while staying within 1 point of
the full model beside the reference's, Spearman correlation with exact Shapley where one is given,
the evaluations and seconds it cost, and for sampled rankings the stability over seeds (mean pairwise
Spearman and the share of seeds that give the same top-5 set)."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from scipy.stats import spearmanr

from ..engine import Engine
from ..rankings import Ranking, rank
from .curve_sets import CurveSet
from .curves import Curve
from .oracle import ORACLE_LABEL

if TYPE_CHECKING:
    import pandas as pd

WITHOUT_EVALUATIONS = ("l1", "l2", "random")  # weights or a seed only: no masked evaluation
TOP = 5


@dataclass
class ReportCard:
    layer: str
    split: str
    reference: str  # the reference curve's label
    table: "pd.DataFrame"
    winner: str  # label of the ranking with the smallest mean gap
    reading: str  # one plain sentence

    def to_dict(self) -> dict:
        rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
                for row in self.table.to_dict(orient="records")]
        return {"layer": self.layer, "split": self.split, "reference": self.reference, "winner": self.winner,
                "reading": self.reading, "rows": rows}

    def markdown(self) -> str:
        """The table as Markdown (numbers to 2 decimals, missing values as —)."""
        def cell(value) -> str:
            if value is None:
                return "—"
            if isinstance(value, float):
                return "—" if value != value else f"{value:.2f}"
            return str(value)
        head = list(self.table.columns)
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.table.itertuples(index=False)]
        return "\n".join(lines)


def _gaps(curve: Curve, reference: Curve) -> np.ndarray:
    """Reference minus curve, in accuracy points, at the interior points (0 < n < N)."""
    if not np.array_equal(curve.counts, reference.counts):
        raise ValueError("the reference and the curves must share their counts (compute them in one curve_set)")
    interior = (curve.counts > 0) & (curve.counts < curve.units)
    return (reference.accuracy - curve.accuracy)[interior] * 100


def _within(curve: Curve, full: float, tolerance: float) -> int:
    """Units removed before the curve first drops more than ``tolerance`` below the full model."""
    best = 0
    for n, accuracy in zip(curve.counts, curve.accuracy):
        if accuracy < full - tolerance - 1e-12:
            break
        best = int(n)
    return best


def seed_stability(rankings: Sequence[Ranking]) -> tuple[float, float]:
    """(mean pairwise Spearman, share of rankings whose top-5 set is the most common one) over seeds."""
    pairs = [spearmanr(a.scores, b.scores)[0] for a, b in combinations(rankings, 2)]
    tops = [tuple(sorted(r.top(TOP))) for r in rankings]
    common = max(tops.count(t) for t in set(tops))
    return float(np.mean(pairs)) if pairs else float("nan"), common / len(tops)


def is_sampled(ranking: Ranking) -> bool:
    return ranking.params.get("estimator") == "sampled" and "seed" in ranking.params


def report_card(curves: CurveSet, rankings: Sequence[Ranking], exact_shapley: Ranking | None = None,
                stability_seeds: int = 0, rank_engine: Engine | None = None, tolerance: float = 0.01,
                progress: Callable[[int, int], None] | None = None) -> ReportCard:
    """The report card of ``curves`` (a layer's CurveSet with a reference) for ``rankings`` (the Rankings
    its curves were drawn from, matched by label). ``exact_shapley``: a Ranking of exact Shapley values
    to correlate with (default: one among ``rankings``). ``stability_seeds`` > 0: each sampled ranking is
    recomputed with that many further seeds on ``rank_engine`` (disk-cached) for the stability columns."""
    import pandas as pd

    reference = curves.reference
    if reference is None:
        raise ValueError("the report card needs a reference curve: curve_set(..., reference='auto')")
    by_label = {r.label: r for r in rankings}
    exact_shapley = exact_shapley or next((r for r in rankings if r.method == "shapley"
                                           and r.params.get("estimator") == "exact"), None)
    if stability_seeds and rank_engine is None:
        raise ValueError("stability over seeds recomputes the sampled rankings: give rank_engine")
    reference_within = _within(reference, curves.full_accuracy, tolerance)
    rows, tolerance_pts = [], f"{tolerance * 100:g} pt"
    sampled = [r for r in rankings if is_sampled(r)] if stability_seeds else []
    done = 0
    for curve in curves.curves:
        ranking = by_label.get(curve.label)
        gaps = _gaps(curve, reference)
        row = {"ranking": curve.label, "mean gap (pts)": float(gaps.mean()) if len(gaps) else 0.0,
               "largest gap (pts)": float(gaps.max()) if len(gaps) else 0.0,
               f"units within {tolerance_pts}": _within(curve, curves.full_accuracy, tolerance),
               f"reference within {tolerance_pts}": reference_within,
               "Spearman vs exact Shapley": float("nan"), "evaluations": None, "seconds": float("nan"),
               "seed Spearman": float("nan"), "same top-5 over seeds": float("nan")}
        if ranking is not None:
            if exact_shapley is not None:
                row["Spearman vs exact Shapley"] = float(spearmanr(ranking.scores, exact_shapley.scores)[0])
            evaluations = ranking.extra.get("evaluations", 0 if ranking.method in WITHOUT_EVALUATIONS else None)
            row["evaluations"] = None if evaluations is None else int(evaluations)
            row["seconds"] = float(ranking.seconds)
            if ranking in sampled:
                seeds = [ranking] + [rank(rank_engine.model, rank_engine.data, curves.layer, ranking.method,
                                          engine=rank_engine, **{**ranking.params, "seed": ranking.params["seed"] + s})
                                     for s in range(1, stability_seeds + 1)]
                row["seed Spearman"], row["same top-5 over seeds"] = seed_stability(seeds)
                done += 1
                if progress:
                    progress(done, len(sampled))
        rows.append(row)
    band = curves.random
    random_curve = Curve(band.label, curves.layer, band.counts, band.mean, band.mean, [], "least", "random",
                         curves.units)
    gaps = _gaps(random_curve, reference)
    table = pd.DataFrame(rows).astype({"evaluations": object}).sort_values(["mean gap (pts)", "largest gap (pts)"], kind="stable")
    table.insert(0, "", ["★"] + [""] * (len(table) - 1))
    table = pd.concat([table, pd.DataFrame([{"": "", "ranking": band.label, "mean gap (pts)": float(gaps.mean()),
                                             "largest gap (pts)": float(gaps.max()),
                                             f"units within {tolerance_pts}": _within(random_curve,
                                                                                      curves.full_accuracy, tolerance),
                                             f"reference within {tolerance_pts}": reference_within}])],
                      ignore_index=True).astype({"evaluations": object})
    table["evaluations"] = pd.Series([None if v is None or v != v else int(v) for v in table["evaluations"]],
                                     dtype=object, index=table.index)
    winner = str(table["ranking"].iloc[0])
    return ReportCard(curves.layer, curves.split, reference.label, table, winner,
                      reading(curves, winner, reference))


def reading(curves: CurveSet, winner: str, reference: Curve, close: float = 1.0) -> str:
    """One plain sentence: how far the winner stays close to the reference, and what L1 (or the runner-up)
    loses there."""
    what = "the best possible removal" if reference.label == ORACLE_LABEL else "the greedy reference"
    best = curves.get(winner)
    gap = (reference.accuracy - best.accuracy) * 100
    running = np.maximum.accumulate(gap)
    reach = int(np.flatnonzero(running <= close)[-1]) if (running <= close).any() else 0
    n = int(best.counts[reach])
    sentence = (f"on {curves.layer}, {winner} is within {running[reach]:.1f} points of {what} up to {n} "
                f"unit{'s' if n != 1 else ''}")
    other = next((c for c in curves.curves if c.method == "l1" and c.label != winner), None) or next(
        (c for c in curves.curves if c.label != winner), None)
    if other is not None and n > 0:
        lost = (reference.accuracy - other.accuracy)[: reach + 1].max() * 100
        sentence += f"; {other.label} loses {lost:.1f} points there"
    return sentence
