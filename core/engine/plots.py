"""Plotly figures and display images shared by the app and notebooks."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import sample_colorscale


def to_display(image: torch.Tensor | np.ndarray, size: int = 112) -> np.ndarray:
    """A (C, H, W) image in [0, 1] as uint8 (H', W'[, 3]) upscaled with nearest neighbour for viewing."""
    array = torch.as_tensor(image).detach().float().cpu()
    scale = max(1, size // max(array.shape[-2:]))
    array = array.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    array = (array.clamp(0, 1) * 255).round().byte()
    return array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()


def unit_activations(engine, layer: str) -> torch.Tensor:
    """The layer's unmasked output on every image of ``engine``'s split (what unit thumbnails show).

    Staged models: the engine's prefix cache. Any other model (torchvision): the engine's batches through its
    private frozen copy (``Engine.layer_outputs``), so the shared model's eval mode is never flipped."""
    if engine.staged:
        return engine.activations(layer)
    return torch.cat([acts.cpu() for acts in engine.layer_outputs(layer)])


def heat_thumbnails(maps: torch.Tensor, size: int = 64, colorscale: str = "Viridis",
                    per_map: bool = False) -> list[np.ndarray]:
    """One colour image per map of (C, H, W) or (C,).

    Shared scale by default (brightness compares across units); ``per_map`` scales each
    spatial map to its own range so its pattern is visible (1x1 maps keep the shared scale)."""
    maps = torch.as_tensor(maps).detach().float().cpu()
    if maps.dim() == 1:
        maps = maps.view(-1, 1, 1)
    spatial = per_map and maps.shape[-1] * maps.shape[-2] > 1
    lo = maps.amin(dim=(1, 2), keepdim=True) if spatial else maps.min()
    hi = maps.amax(dim=(1, 2), keepdim=True) if spatial else maps.max()
    normed = ((maps - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi - lo))).clamp(0, 1)
    scale = max(1, size // max(normed.shape[-2:]))
    normed = normed.repeat_interleave(scale, -2).repeat_interleave(scale, -1).numpy()
    palette = np.array([_rgb(c) for c in sample_colorscale(colorscale, list(np.linspace(0, 1, 256)))], dtype=np.uint8)
    return [palette[(m * 255).round().astype(int)] for m in normed]


def class_profile_thumbnails(acts: torch.Tensor, labels: torch.Tensor, classes: int, size: int = 64) -> list[np.ndarray]:
    """One small bar chart per fc unit: its mean activation on each class's images (class 0 at the left),
    bars scaled to the unit's own largest class, so a unit's class preference shows at a glance."""
    acts = torch.as_tensor(acts).detach().float().cpu().flatten(1)
    labels = torch.as_tensor(labels).cpu()
    means = torch.stack([acts[labels == c].mean(0) if (labels == c).any() else torch.zeros(acts.shape[1])
                         for c in range(classes)], 1)  # (units, classes)
    top = means.amax(1, keepdim=True)
    heights = (means.clamp(min=0) / torch.where(top > 0, top, torch.ones_like(top)) * classes).round()
    rows = torch.arange(classes, 0, -1).view(1, classes, 1)  # row r is filled where a bar reaches it
    bars = (heights.unsqueeze(1) >= rows).float()  # (units, classes, classes)
    return heat_thumbnails(bars, size=size)


def _rgb(color: str) -> tuple[int, int, int]:
    if color.startswith("#"):
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    return tuple(int(float(v)) for v in color[color.index("(") + 1:-1].split(",")[:3])  # type: ignore[return-value]


def per_class_figure(per_class: np.ndarray, class_names: Sequence[str],
                     baseline: np.ndarray | None = None) -> go.Figure:
    """Accuracy per class, with the full model's as a reference outline."""
    fig = go.Figure()
    if baseline is not None:
        fig.add_bar(x=list(class_names), y=baseline * 100, name="all units on",
                    marker=dict(color="rgba(0,0,0,0)", line=dict(color="#888", width=1.5)))
    fig.add_bar(x=list(class_names), y=per_class * 100, name="with units off", marker_color="#3366cc")
    fig.update_layout(barmode="overlay", yaxis=dict(title="accuracy (%)", range=[0, 100]),
                      xaxis=dict(title="class", type="category"), height=320,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12))
    return fig


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str]) -> go.Figure:
    """Confusion matrix as a heatmap of row-normalized rates, counts in the hover."""
    totals = confusion.sum(1, keepdims=True).clip(min=1)
    rates = confusion / totals
    names = list(class_names)
    predicted = names + ["other"] * (confusion.shape[1] - len(names))  # the model's classes beyond the data's
    fig = go.Figure(go.Heatmap(z=rates * 100, x=predicted, y=names, colorscale="Blues", zmin=0, zmax=100,
                               customdata=confusion, colorbar=dict(title="% of row"),
                               hovertemplate="true %{y} → predicted %{x}<br>%{customdata} images (%{z:.1f}%)<extra></extra>"))
    if len(names) <= 20:
        fig.update_traces(text=confusion, texttemplate="%{text}")
    fig.update_layout(xaxis=dict(title="predicted", type="category"), height=380,
                      yaxis=dict(title="true", type="category", autorange="reversed"),
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig
