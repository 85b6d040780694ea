"""How much two rankings of one layer agree.

Top-k overlap with its chance probability: if the top-k sets were drawn at random, the overlap
would be hypergeometric (N units, k "successes", k draws); ``p_chance`` = P(overlap >= observed).
Rank correlations (Spearman, Kendall) from scipy over all units. ``top_units_table`` is paper A's
Table 1 layout (top units of each method for one layer); ``heatmap`` is a plotly figure.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy.stats import hypergeom, kendalltau, spearmanr

if TYPE_CHECKING:  # a runtime import of the package would be a cycle (two app threads import at once)
    from . import Ranking

METRICS = ("overlap", "spearman", "kendall")


@dataclass
class Overlap:
    k: int
    common: list[int]  # units in both top-k sets
    fraction: float  # len(common) / k
    p_chance: float  # P(a random top-k set shares >= len(common) units)


def _scores(ranking: Ranking | np.ndarray) -> np.ndarray:
    return np.asarray(getattr(ranking, "scores", ranking), dtype=np.float64)


def _top(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def top_k_overlap(a: Ranking | np.ndarray, b: Ranking | np.ndarray, k: int = 5) -> Overlap:
    """Units shared by the two top-k sets, and how likely that many (or more) would be by chance."""
    sa, sb = _scores(a), _scores(b)
    if len(sa) != len(sb):
        raise ValueError(f"the rankings cover different numbers of units ({len(sa)} and {len(sb)})")
    if not 1 <= k <= len(sa):
        raise ValueError(f"k must be between 1 and {len(sa)}, got {k}")
    common = sorted(set(_top(sa, k)) & set(_top(sb, k)))
    p = float(hypergeom.sf(len(common) - 1, len(sa), k, k))
    return Overlap(k, common, len(common) / k, p)


def spearman(a: Ranking | np.ndarray, b: Ranking | np.ndarray) -> float:
    return float(spearmanr(_scores(a), _scores(b)).statistic)


def kendall(a: Ranking | np.ndarray, b: Ranking | np.ndarray) -> float:
    return float(kendalltau(_scores(a), _scores(b)).statistic)


def compare(rankings: Sequence[Ranking], k: int = 5) -> pd.DataFrame:
    """One row per pair of rankings: top-k overlap, its chance probability, Spearman, Kendall."""
    rows = []
    for a, b in combinations(rankings, 2):
        overlap = top_k_overlap(a, b, k)
        rows.append({"A": a.label, "B": b.label, f"top-{k} overlap": f"{len(overlap.common)}/{k}",
                     "overlap": overlap.fraction, "p(chance)": overlap.p_chance,
                     "Spearman": spearman(a, b), "Kendall": kendall(a, b)})
    return pd.DataFrame(rows)


def agreement_matrix(rankings: Sequence[Ranking], metric: str = "overlap", k: int = 5) -> pd.DataFrame:
    """Square table (labels x labels) of one metric: top-k overlap fraction, Spearman or Kendall."""
    if metric not in METRICS:
        raise ValueError(f"unknown agreement metric {metric!r}; choose one of {', '.join(METRICS)}")
    labels = [r.label for r in rankings]
    matrix = np.ones((len(rankings), len(rankings)))
    for i, j in combinations(range(len(rankings)), 2):
        a, b = rankings[i], rankings[j]
        value = top_k_overlap(a, b, k).fraction if metric == "overlap" else \
            spearman(a, b) if metric == "spearman" else kendall(a, b)
        matrix[i, j] = matrix[j, i] = value
    return pd.DataFrame(matrix, index=labels, columns=labels)


def top_units_table(rankings: Sequence[Ranking], k: int = 5) -> pd.DataFrame:
    """Paper A Table 1: for each method, the layer's k most important units, best first."""
    return pd.DataFrame({r.label: r.top(k) for r in rankings}, index=[f"#{i + 1}" for i in range(k)]).T


def heatmap(rankings: Sequence[Ranking], metric: str = "overlap", k: int = 5) -> go.Figure:
    """Agreement between every pair of methods as a heatmap."""
    matrix = agreement_matrix(rankings, metric, k)
    title = {"overlap": f"Top-{k} overlap (fraction)", "spearman": "Spearman correlation",
             "kendall": "Kendall correlation"}[metric]
    figure = go.Figure(go.Heatmap(z=matrix.values, x=list(matrix.columns), y=list(matrix.index),
                                  zmin=0 if metric == "overlap" else -1, zmax=1, colorscale="Viridis",
                                  text=np.round(matrix.values, 2), texttemplate="%{text}",
                                  hovertemplate="%{y} vs %{x}: %{z:.2f}<extra></extra>"))
    figure.update_layout(title=title, height=120 + 60 * len(rankings), margin=dict(l=10, r=10, t=50, b=10),
                         yaxis=dict(autorange="reversed"))
    return figure
