"""Plotly figures of pruning curves and of the sensitivity grid; nothing here touches an engine."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .curve_sets import CurveSet
    from .curves import Curve
    from .network_curves import Sensitivity


# --- plotly figures -----------------------------------------------------------------------------------

MIRROR_SUFFIX = " (most important first)"
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _hover(curve: Curve, i: int, limit: int = 40) -> str:
    off = curve.off(i)
    if curve.masks is not None:
        return "<br>".join(f"{layer}: {len(units)} off" for layer, units in off.items()) or "none"
    units = [str(u) for u in curve.removed[i]]  # removal order
    return (" ".join(units[:limit]) + (f" … (+{len(units) - limit})" if len(units) > limit else "")) or "none"


def curves_figure(curves: CurveSet, mirror: CurveSet | None = None, title: str | None = None) -> "go.Figure":
    """Accuracy vs units removed (a layer) or pruning rate (whole network): one line per method, the
    random band (min-max over seeds) shaded with its mean dashed; ``mirror`` adds the
    most-important-first curves dotted. Hover shows the units removed at each point; each point's
    ``customdata`` is [trace name, point index, units off] (the page uses it to carry a mask to the
    toggles page; a mirror trace's name ends in MIRROR_SUFFIX)."""
    import plotly.graph_objects as go

    network = curves.whole_network
    band = curves.random
    x_of = (lambda c: c.rates * 100) if network else (lambda c: c.counts)
    fig = go.Figure()
    fig.add_scatter(x=x_of(band), y=band.hi * 100, mode="lines", line=dict(width=0), showlegend=False,
                    hoverinfo="skip", name="random max")
    fig.add_scatter(x=x_of(band), y=band.lo * 100, mode="lines", line=dict(width=0), fill="tonexty",
                    fillcolor="rgba(120,120,120,0.25)", name=f"random band (min-max of {len(band.seeds)} seeds)",
                    hoverinfo="skip")
    fig.add_scatter(x=x_of(band), y=band.mean * 100, mode="lines", line=dict(color="#666", dash="dash"),
                    name=band.label, hovertemplate="random mean: %{y:.2f}%<extra></extra>")
    for number, (group, dash) in enumerate(((curves, None), (mirror, "dot"))):
        if group is None:
            continue
        for i, curve in enumerate(group.curves):
            suffix = MIRROR_SUFFIX if group.direction == "most" and mirror is not None else ""
            fig.add_scatter(
                x=x_of(curve), y=curve.accuracy * 100, mode="lines+markers", name=curve.label + suffix,
                line=dict(color=COLORS[i % len(COLORS)], dash=dash), marker=dict(size=5),
                customdata=[[curve.label + suffix, p, _hover(curve, p)] for p in range(len(curve.counts))],
                hovertemplate=(f"<b>{curve.label}{suffix}</b><br>"
                               + ("rate %{x:.0f}%" if network else "%{x} removed")
                               + ": %{y:.2f}%<br>off: %{customdata[2]}<extra></extra>"))
    reference = curves.reference
    if reference is not None:  # the oracle / greedy reference: what the best removal keeps
        fig.add_scatter(
            x=x_of(reference), y=reference.accuracy * 100, mode="lines+markers", name=reference.label,
            line=dict(color="black", width=2.5, dash="dash"), marker=dict(size=4, symbol="diamond"),
            customdata=[[reference.label, p, _hover(reference, p)] for p in range(len(reference.counts))],
            hovertemplate=(f"<b>{reference.label}</b><br>%{{x}} removed: %{{y:.2f}}%<br>off: %{{customdata[2]}}"
                           "<extra></extra>"))
    fig.add_hline(y=curves.full_accuracy * 100, line=dict(color="#999", width=1, dash="dot"),
                  annotation_text="full model", annotation_position="bottom left")
    what = "least important first" if curves.direction == "least" else "most important first"
    fig.update_layout(
        title=title or (f"Pruning curves — {curves.layer} ({what}, no retraining)"),
        xaxis_title="pruning rate of every layer (%)" if network else f"units removed (of {curves.units})",
        yaxis=dict(title="accuracy (%)", range=[0, 101]), height=440, hovermode="closest",
        margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.18, traceorder="normal"))
    return fig


def sensitivity_figure(sensitivity: Sensitivity, label: str) -> "go.Figure":
    """Paper B Fig. 4 as a heatmap: layers x pruning rate -> accuracy (%) with only that layer pruned."""
    import plotly.graph_objects as go

    grid = sensitivity.grid(label) * 100
    fig = go.Figure(go.Heatmap(
        z=grid, x=[f"{r * 100:.0f}%" for r in sensitivity.rates], y=sensitivity.layers, zmin=0, zmax=100,
        colorscale="Viridis", colorbar=dict(title="accuracy %"), text=np.round(grid, 1), texttemplate="%{text}",
        hovertemplate="%{y} at %{x}: %{z:.2f}%<extra></extra>"))
    fig.update_layout(title=f"Sensitivity — {label} (one layer pruned at a time)", xaxis_title="pruning rate",
                      yaxis=dict(title="layer", autorange="reversed"), height=120 + 40 * len(sensitivity.layers),
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig
