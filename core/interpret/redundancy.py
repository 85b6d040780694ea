"""Are paper B's similar filters the redundant ones? SD (small = similar) against the pairwise Shapley
interaction index (core/rankings/interactions.py; negative = redundant) over the pairs of one layer.

If "similar" meant "redundant", small SD would go with negative interaction: a *positive* rank
correlation between SD and I over the pairs i < j. ``similarity_vs_interactions`` measures it
(Spearman, with its p-value, and Pearson) and how many of the k most similar pairs are among the k
most redundant ones, against the hypergeometric chance of that overlap. ``interaction_figure``
draws I as a heatmap in the same unit order and with the same cluster boxes as ``sd_figure``."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import plotly.graph_objects as go
from scipy.stats import hypergeom, pearsonr, spearmanr

from ..rankings.interactions import Interactions
from .similarity import Clusters, Similarity, unit_matrix_layout


@dataclass
class SimilarityVsInteractions:
    """How SD and the interaction index of one layer's pairs agree."""

    layer: str
    pairs: int
    spearman: float  # > 0: similar pairs (small SD) tend to be redundant (negative I)
    p_value: float  # Spearman's two-sided p-value
    pearson: float
    k: int
    overlap: int  # of the k most similar pairs, how many are among the k most redundant
    p_overlap: float  # P(overlap >= this) for k pairs drawn at random
    interactions: str  # the interaction estimator's label

    def to_dict(self) -> dict:
        return asdict(self)

    def sentence(self) -> str:
        agree = "similar pairs tend to be the redundant ones" if self.spearman > 0 and self.p_value < 0.05 else \
            "similar pairs tend to be the *synergistic* ones" if self.spearman < 0 and self.p_value < 0.05 else \
            "SD says nothing measurable about redundancy"
        return (f"{self.layer}: Spearman {self.spearman:+.2f} (p = {self.p_value:.2g}) between SD and the "
                f"interaction index over {self.pairs} pairs — {agree}; {self.overlap} of the {self.k} most similar "
                f"pairs are among the {self.k} most redundant (chance p = {self.p_overlap:.2g}).")


def similarity_vs_interactions(similarity: Similarity, interactions: Interactions,
                               k: int = 5) -> SimilarityVsInteractions:
    """Rank correlation of SD and the interaction index over the pairs i < j, and the top-k pair overlap."""
    units = len(similarity.sd)
    if interactions.matrix.shape != (units, units) or similarity.layer != interactions.layer:
        raise ValueError(f"SD of {similarity.layer} ({units} units) and interactions of {interactions.layer} "
                         f"({len(interactions.matrix)} units) are not the same layer")
    if units < 3:
        raise ValueError(f"a correlation over pairs needs at least 3 units; {similarity.layer} has {units}")
    i, j = np.triu_indices(units, 1)
    sd, index = similarity.sd[i, j], interactions.matrix[i, j]
    rho, p = spearmanr(sd, index)
    pearson = pearsonr(sd, index)[0] if np.ptp(sd) > 0 and np.ptp(index) > 0 else float("nan")
    k = min(k, len(sd))
    similar = set(np.argsort(sd, kind="stable")[:k].tolist())
    redundant = set(np.argsort(index, kind="stable")[:k].tolist())
    overlap = len(similar & redundant)
    p_overlap = float(hypergeom.sf(overlap - 1, len(sd), k, k))
    return SimilarityVsInteractions(similarity.layer, len(sd), float(rho), float(p), float(pearson), k, overlap,
                                    p_overlap, interactions.label)


def interaction_figure(interactions: Interactions, clusters: Clusters | None = None,
                       title: str = "Shapley interaction index — red = redundant pair, blue = synergistic",
                       ) -> go.Figure:
    """Heatmap of I_ij, units in the clusters' order (when given, with their boxes), zero-centred colours."""
    matrix = interactions.matrix
    order = clusters.order() if clusters is not None else list(range(len(matrix)))
    labels = [f"unit {u}" for u in order]
    values = matrix[np.ix_(order, order)]
    limit = float(np.abs(values).max()) or 1.0
    text = None
    if interactions.stderr is not None:
        text = np.vectorize(lambda e: f" ± {e:.3f}")(interactions.stderr[np.ix_(order, order)])
    figure = go.Figure(go.Heatmap(
        z=values, x=labels, y=labels, colorscale="RdBu", zmin=-limit, zmax=limit, zmid=0, text=text,
        colorbar=dict(title=dict(text="I", side="right")),
        hovertemplate="%{y} with %{x}: I = %{z:.4f}" + ("%{text}" if text is not None else "") + "<extra></extra>"))
    return unit_matrix_layout(figure, len(order), title, clusters, "black")




def sd_interaction_scatter(similarity: Similarity, interactions: Interactions) -> go.Figure:
    """One point per pair i < j: SD (x) against the interaction index (y), hover = the pair."""
    i, j = np.triu_indices(len(similarity.sd), 1)
    error = None if interactions.stderr is None else dict(type="data", array=1.96 * interactions.stderr[i, j])
    figure = go.Figure(go.Scatter(
        x=similarity.sd[i, j], y=interactions.matrix[i, j], mode="markers", error_y=error,
        text=[f"units {a} & {b}" for a, b in zip(i, j)], marker=dict(size=6, opacity=0.7),
        hovertemplate="%{text}: SD = %{x:.2f}, I = %{y:.4f}<extra></extra>"))
    figure.add_hline(y=0, line=dict(color="grey", dash="dot"))
    figure.update_layout(title="Each pair: similarity degree vs interaction", xaxis_title="SD (small = similar)",
                         yaxis_title="I (negative = redundant)", height=420, margin=dict(l=10, r=10, t=50, b=10))
    return figure


__all__ = ["SimilarityVsInteractions", "similarity_vs_interactions", "interaction_figure", "sd_interaction_scatter"]
