"""Plotly figures of rankings (the app shows them; notebooks can too)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from . import Ranking


def scores_bar(ranking: Ranking, z: float = 1.96) -> go.Figure:
    """Scores per unit, most important first; error bars (+-z standard errors) where the method has them."""
    order = ranking.order()
    error = None
    if ranking.stderr is not None:
        error = dict(type="data", array=z * ranking.stderr[order], visible=True)
    figure = go.Figure(go.Bar(x=[f"unit {i}" for i in order], y=ranking.scores[order], error_y=error,
                              hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    figure.update_layout(title=f"{ranking.label} — {ranking.layer}", yaxis_title="score (higher = more important)",
                         xaxis=dict(type="category"), height=360, margin=dict(l=10, r=10, t=50, b=10))
    return figure


def switch_curve(ranking: Ranking) -> go.Figure:
    """Training curve of importance switches: mean log-likelihood per image and the KL term."""
    if "likelihood" not in ranking.extra:
        raise ValueError(f"{ranking.label} has no training curve (only importance switches do)")
    steps = np.arange(1, len(ranking.extra["likelihood"]) + 1)
    figure = go.Figure()
    figure.add_scatter(x=steps, y=ranking.extra["likelihood"], name="log-likelihood (mean per image)")
    figure.add_scatter(x=steps, y=ranking.extra["kl"], name="KL(q || prior)", yaxis="y2")
    figure.update_layout(title=f"Switch training — {ranking.layer}", xaxis_title="step",
                         yaxis=dict(title="log-likelihood"), yaxis2=dict(title="KL", overlaying="y", side="right"),
                         height=360, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2))
    return figure
