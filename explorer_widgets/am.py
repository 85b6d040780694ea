"""AM gallery in a notebook: every unit's activation-maximization image, ordered by a ranking (the AM page)."""
from __future__ import annotations

import ipywidgets as widgets
from torch import nn

import core
from core.engine.plots import heat_thumbnails, to_display

from ._common import RankingsArg, grid, layer_activations, pager, png, rankings_by_label, shown_units

PAGE_SIZE = 40
UNIT_ORDER = "unit number"
TOP_IMAGES = 8


class AMGallery(widgets.VBox):
    """AM images (paper B Eq. 1) of every unit of ``layer``, most important first by the chosen ranking,
    paged; one unit up close (large image and, when ``data`` is given, the validation images that activate
    it most with its feature maps on them).

    State: ``result`` (``core.AMResult``), ``rankings`` (label -> Ranking), ``chosen`` (the ordering's label),
    ``order`` (units in display order), ``shown`` (units on the current page), ``unit`` (the one up close).
    Widgets: ``order_by``, ``page``, ``find``, ``unit_choice``."""

    def __init__(self, model: nn.Module, layer: str, ranking: RankingsArg = None, data: core.DataSplit | None = None,
                 steps: int = 256, lr: float = 0.05, seed: int = 0, page_size: int = PAGE_SIZE, columns: int = 8):
        self.result = core.am_images(model, layer, steps=steps, lr=lr, seed=seed)  # ValueError: unknown layer
        self.layer, self.units, self.page_size = layer, self.result.units, page_size
        self.rankings = rankings_by_label(ranking, layer, self.units)
        self.engine = core.Engine(model, data) if data is not None else None
        self.data = data
        self._acts = None  # the layer's activations on data, computed when a unit is first shown up close
        self.order_by = widgets.Dropdown(options=[*self.rankings, UNIT_ORDER], description="Order by",
                                         layout=widgets.Layout(width="320px"))
        self.page, self.find, self.message, paging = pager(self.units, page_size)
        self._images = [widgets.Image(format="png", layout=widgets.Layout(width="100%"))
                        for _ in range(min(page_size, self.units))]
        self._captions = [widgets.HTML() for _ in self._images]
        self._cells = [widgets.VBox([image, caption]) for image, caption in zip(self._images, self._captions)]
        self.unit_choice = widgets.Dropdown(description="Unit", layout=widgets.Layout(width="320px"))
        self.close_up = widgets.Image(format="png", layout=widgets.Layout(width="240px"))
        self.top_images = widgets.HBox()
        self.order: list[int] = []
        self.shown: list[int] = []
        for control in (self.order_by, self.page, self.find):
            control.observe(lambda _: self._refresh(), "value")
        self.unit_choice.observe(lambda _: self._show_unit(), "value")
        summary = widgets.HTML(f"<h3 style='margin:0'>Activation maximization — {layer} ({self.units} units, "
                               f"{self.result.params['steps']} steps)</h3>{self.result.selectivity():.0%} of the "
                               "units respond more to their own image than to any other unit's image.")
        super().__init__([summary, widgets.HBox([self.order_by, paging]), grid(self._cells, columns),
                          widgets.HTML("<b>One unit up close</b>"), self.unit_choice,
                          widgets.HBox([self.close_up, self.top_images])])
        self._refresh()

    @property
    def chosen(self) -> str:
        return self.order_by.value

    @property
    def unit(self) -> int:
        return int(self.unit_choice.value)

    def _caption(self, unit: int) -> str:
        if self.chosen == UNIT_ORDER:
            return f"unit {unit}"
        ranking = self.rankings[self.chosen]
        return f"#{self.order.index(unit) + 1} · unit {unit} · {ranking.scores[unit]:.3g}"

    def _refresh(self) -> None:
        self.order = list(range(self.units)) if self.chosen == UNIT_ORDER else \
            [int(u) for u in self.rankings[self.chosen].order()]
        try:
            positions = shown_units(self.units, self.page_size, self.page.value, self.find.value)
            self.message.value = ""
        except ValueError as error:
            self.message.value = f"<span style='color:#b00'>{error}</span>"
            return
        # a search names units; a page is a slice of the ranking order
        self.shown = positions[:len(self._cells)] if self.find.value.strip() else [self.order[p] for p in positions]
        for cell, box in enumerate(self._cells):
            box.layout.display = None if cell < len(self.shown) else "none"
            if cell < len(self.shown):
                self._images[cell].value = png(to_display(self.result.images[self.shown[cell]], size=112))
                self._captions[cell].value = f"<small>{self._caption(self.shown[cell])}</small>"
        previous = self.unit_choice.value
        self.unit_choice.options = [(self._caption(u), u) for u in self.order]
        self.unit_choice.value = previous if previous in self.order else self.order[0]

    def _show_unit(self) -> None:
        if self.unit_choice.value is None:
            return
        unit = self.unit
        self.close_up.value = png(to_display(self.result.images[unit], size=240))
        if self.engine is None:
            return
        if self._acts is None:
            self._acts = layer_activations(self.engine, self.layer)
        acts = self._acts[:, unit]
        strength = acts.flatten(1).mean(1) if acts.dim() > 1 else acts
        top = strength.argsort(descending=True)[:TOP_IMAGES].tolist()
        maps = heat_thumbnails(acts[top], size=96) if acts.dim() > 1 else [None] * len(top)
        cells = []
        for i, heat in zip(top, maps):
            label = self.data.class_names[int(self.data.labels[i])]
            parts = [widgets.Image(value=png(to_display(self.data.images[i], size=96)), format="png"),
                     widgets.HTML(f"<small>{label} · {float(strength[i]):.2f}</small>")]
            if heat is not None:
                parts.insert(1, widgets.Image(value=png(heat), format="png"))
            cells.append(widgets.VBox(parts, layout=widgets.Layout(width="100px")))
        self.top_images.children = cells


def am_gallery(model: nn.Module, layer: str, ranking: RankingsArg = None, data: core.DataSplit | None = None,
               steps: int = 256, seed: int = 0, page_size: int = PAGE_SIZE) -> AMGallery:
    """AM gallery of ``layer`` (see ``AMGallery``); ``ranking``: Ranking(s) to order by (else unit order);
    ``data``: show the images that activate the chosen unit most. Raises ValueError for an unknown layer."""
    return AMGallery(model, layer, ranking, data, steps=steps, seed=seed, page_size=page_size)
