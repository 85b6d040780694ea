"""Helpers shared by the notebook widgets: images as PNG bytes, unit search, paging, rankings by label."""
from __future__ import annotations

import io
from typing import Iterable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import torch
from PIL import Image

import core
from core.engine import parse_units
from core.engine.plots import class_profile_thumbnails, heat_thumbnails
from core.rankings import Ranking

RankingsArg = Ranking | Sequence[Ranking] | Mapping[str, Ranking] | None
HOOKED_IMAGES = 128  # images for the thumbnails of a model without the prefix cache (e.g. torchvision)


def png(pixels: np.ndarray | Image.Image) -> bytes:
    """A uint8 (H, W) / (H, W, 3) array or a PIL image as PNG bytes (for ``widgets.Image``)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def layer_activations(engine: core.Engine, layer: str) -> torch.Tensor:
    """The layer's output on the split's images: all of them from the engine's prefix cache, or for a model
    without one (e.g. torchvision) on the first HOOKED_IMAGES images through a forward hook."""
    from core.rankings.plots import feature_maps

    if engine.staged:
        return engine.activations(layer)
    return feature_maps(engine.model, layer, engine.data.images[:HOOKED_IMAGES])


def unit_thumbnails(engine: core.Engine, layer: str, size: int = 64) -> list[np.ndarray]:
    """One picture per unit, as the app draws them: a conv unit's mean feature map over the split; an fc
    unit's mean activation per class as bars."""
    acts = layer_activations(engine, layer)
    if acts.dim() == 2:
        return class_profile_thumbnails(acts, engine.data.labels[:len(acts)], len(engine.data.class_names), size=size)
    return heat_thumbnails(acts.mean(0), size=size, per_map=True)


def page_count(items: int, page_size: int) -> int:
    return max(1, -(-items // page_size))


def rankings_by_label(rankings: RankingsArg, layer: str, units: int) -> dict[str, Ranking]:
    """label -> Ranking from one ranking, a list or a mapping; each must be of ``layer`` with ``units`` scores."""
    if rankings is None:
        return {}
    if isinstance(rankings, Ranking):
        rankings = [rankings]
    items: Iterable[Ranking] = rankings.values() if isinstance(rankings, Mapping) else rankings
    out: dict[str, Ranking] = {}
    for ranking in items:
        if not isinstance(ranking, Ranking):
            raise TypeError(f"expected a core Ranking (from core.rank), got {type(ranking).__name__}")
        if ranking.layer != layer or len(ranking.scores) != units:
            raise ValueError(f"the ranking {ranking.label!r} is of layer {ranking.layer} "
                             f"({len(ranking.scores)} units), not {layer} ({units} units)")
        out[ranking.label or ranking.method] = ranking
    return out


def pager(units: int, page_size: int) -> tuple[widgets.BoundedIntText, widgets.Text, widgets.HTML, widgets.HBox]:
    """Page number, unit search box ('17, 200-230'), message line, and a row holding them (hidden when
    everything fits on one page)."""
    pages = page_count(units, page_size)
    page = widgets.BoundedIntText(value=1, min=1, max=pages, description=f"Page (of {pages})",
                                  style={"description_width": "initial"}, layout=widgets.Layout(width="170px"))
    find = widgets.Text(placeholder="e.g. 17, 200-230", description="Find units",
                        style={"description_width": "initial"}, layout=widgets.Layout(width="260px"))
    message = widgets.HTML()
    row = widgets.HBox([page, find, message])
    if pages == 1:
        row.layout.display = "none"
    return page, find, message, row


def shown_units(units: int, page_size: int, page: int, query: str) -> list[int]:
    """The units a page shows: the search result when ``query`` is set, else page ``page`` (1-based)."""
    if query.strip():
        return parse_units(query, units)
    page = min(max(1, page), page_count(units, page_size))
    return list(range((page - 1) * page_size, min(units, page * page_size)))


def grid(cells: Sequence[widgets.Widget], columns: int) -> widgets.GridBox:
    return widgets.GridBox(list(cells), layout=widgets.Layout(
        grid_template_columns=f"repeat({columns}, minmax(0, 1fr))", grid_gap="6px 6px", width="99%"))
