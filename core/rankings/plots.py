"""Plotly figures of rankings (the app shows them; notebooks can too)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import torch

if TYPE_CHECKING:  # a runtime import of the package would be a cycle (two app threads import at once)
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


def feature_maps(model, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The layer's output (after BN/ReLU, where units are switched off) for (B, C, H, W) images in [0, 1].

    Read by a hook that acts only in the calling thread (``core.network.hooks``): on a model shared by
    app sessions, another session's forward pass at the same moment never lands in this result."""
    from ..network.hooks import module_output
    from ..network.models import mask_point

    device = next(model.parameters()).device
    with torch.no_grad():
        return module_output(model, mask_point(model, layer), images.to(device)).cpu()


def grid_title(position: int, order, marked: int) -> str:
    """A facet's title in the feature-map grid: '#rank · unit u', and on a second line ▲ top / ▼ bottom."""
    n = len(order)
    tag = "▲ top" if position < marked else "▼ bottom" if position >= n - marked else ""
    return f"#{position + 1} · unit {int(order[position])}" + (f"<br>{tag}" if tag else "")


def feature_map_grid(maps: torch.Tensor, ranking: Ranking, marked: int = 3, columns: int = 10) -> go.Figure:
    """Paper A Fig. 1: one image's feature maps (C, H, W), ordered by ``ranking``; top and bottom marked.

    Fully connected layers (maps of shape (C,)) are shown as activation bars in ranking order."""
    maps = torch.as_tensor(maps).detach().float().cpu()  # maps of a model on CUDA are drawn from the CPU
    order = ranking.order()
    n = len(order)
    names = []
    for position, unit in enumerate(order):
        tag = "▲ top" if position < marked else "▼ bottom" if position >= n - marked else ""
        names.append(f"#{position + 1} unit {unit} {tag}".strip())
    if maps.dim() == 1:
        colors = ["#2ca02c" if p < marked else "#d62728" if p >= n - marked else "#7f7f7f" for p in range(n)]
        figure = go.Figure(go.Bar(x=names, y=maps[order].numpy(), marker_color=colors))
        figure.update_layout(title=f"{ranking.layer} activations, ordered by {ranking.label}", height=380,
                             xaxis=dict(type="category"), margin=dict(l=10, r=10, t=50, b=10))
        return figure
    columns = min(columns, n)
    rows = -(-n // columns)
    title_px, map_px = 34, 118  # two short title lines above each map, so that neighbours never overlap
    height = 70 + rows * (title_px + map_px)
    figure = px.imshow(maps[order].numpy(), facet_col=0, facet_col_wrap=columns, color_continuous_scale="gray",
                       facet_col_spacing=0.015, facet_row_spacing=title_px / (height - 80) if rows > 1 else 0.0)
    for annotation in figure.layout.annotations:  # facet titles "facet_col=i" -> "#rank · unit u" / "▲ top"
        position = int(annotation.text.split("=")[1])
        annotation.text = grid_title(position, order, marked)
        annotation.font = dict(size=11, color="#2ca02c" if position < marked else
                               "#d62728" if position >= n - marked else "#444")
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    figure.update_layout(title=f"{ranking.layer} feature maps, ordered by {ranking.label} (green: top, red: bottom)",
                         height=height, margin=dict(l=10, r=10, t=70, b=10), coloraxis_showscale=False)
    return figure
