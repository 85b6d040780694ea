"""Live toggles in a notebook: switch units off and watch accuracy change (the app's Live toggles page)."""
from __future__ import annotations

from typing import Iterable

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from torch import nn

import core
from core.engine.plots import confusion_figure, per_class_figure

from ._common import RankingsArg, grid, pager, png, rankings_by_label, shown_units, unit_thumbnails

PAGE_SIZE = 60


class TogglePanel(widgets.VBox):
    """One switch per unit of ``layer`` (with its mean feature map, or for fc units its mean per class), "All on", "Invert", "Turn off k lowest
    by <ranking>", and the accuracy, loss, per-class accuracy and confusion matrix of the masked network,
    recomputed on every change through one ``core.Engine`` (prefix cache: a click costs what it costs in
    the app). Layers wider than ``page_size`` are paged and searchable ("17, 200-230").

    State for notebook code: ``off`` (units switched off, sorted), ``result`` (``core.EvalResult`` of the
    masked network), ``accuracy``, ``baseline`` (all units on), ``ranking`` (the chosen ``Ranking``),
    ``shown`` (units on the current page). Change it with ``set_off``, ``turn_off_lowest``, or the widgets
    themselves (``toggle(unit)``, ``k``, ``ranking_choice``, ``lowest_button``, ``page``, ``find``)."""

    def __init__(self, model: nn.Module, data: core.DataSplit, layer: str, rankings: RankingsArg = None,
                 page_size: int = PAGE_SIZE, columns: int = 10):
        self.engine = core.Engine(model, data)
        self.layer = layer
        self.units = self.engine.units(layer)  # ValueError naming the prunable layers if unknown
        self.page_size = page_size
        self.rankings = rankings_by_label(rankings, layer, self.units) or {
            r.label: r for r in [core.rank(model, data, layer, "l1", engine=self.engine)]}
        self.baseline = self.engine.evaluate()
        self.result = self.baseline
        self._off: set[int] = set()
        self._syncing = False
        self._thumbs = unit_thumbnails(self.engine, layer)

        button = widgets.Layout(width="auto")
        self.all_on_button = widgets.Button(description="All on", layout=button)
        self.invert_button = widgets.Button(description="Invert", layout=button)
        self.ranking_choice = widgets.Dropdown(options=list(self.rankings), description="Ranking",
                                               style={"description_width": "initial"},
                                               layout=widgets.Layout(width="360px"))
        self.k = widgets.BoundedIntText(value=min(5, self.units - 1), min=0, max=max(0, self.units - 1),
                                        description="k", style={"description_width": "initial"},
                                        layout=widgets.Layout(width="90px"))
        self.lowest_button = widgets.Button(description="Turn off k lowest", button_style="warning", layout=button)
        self.all_on_button.on_click(lambda _: self.set_off([]))
        self.invert_button.on_click(lambda _: self.set_off(set(range(self.units)) - self._off))
        self.lowest_button.on_click(lambda _: self.turn_off_lowest())
        self.page, self.find, self.message, paging = pager(self.units, page_size)
        self.page.observe(lambda _: self._show_page(), "value")
        self.find.observe(lambda _: self._show_page(), "value")

        self._toggles = [widgets.ToggleButton(value=True, layout=widgets.Layout(width="100%"))
                         for _ in range(min(page_size, self.units))]
        self._images = [widgets.Image(format="png", layout=widgets.Layout(width="100%")) for _ in self._toggles]
        self._cells = [widgets.VBox([image, toggle], layout=widgets.Layout(align_items="stretch"))
                       for image, toggle in zip(self._images, self._toggles)]
        for cell, toggle in enumerate(self._toggles):
            toggle.observe(lambda change, cell=cell: self._flipped(cell, change["new"]), "value")
        self.shown: list[int] = []

        self.metrics = widgets.HTML()
        names = data.class_names
        self.per_class_chart = go.FigureWidget(per_class_figure(self.result.per_class, names, self.baseline.per_class))
        self.confusion_chart = go.FigureWidget(confusion_figure(self.result.confusion, names))
        for chart, title in ((self.per_class_chart, "Accuracy per class"), (self.confusion_chart, "Confusion matrix")):
            chart.update_layout(title=title, width=480, margin=dict(t=50))
        title = widgets.HTML(f"<h3 style='margin:0'>Live toggles — {layer} ({self.units} units, "
                             f"{self.result.n} images of {data.name} {data.split})</h3>")
        controls = widgets.HBox([self.all_on_button, self.invert_button, self.ranking_choice, self.k,
                                 self.lowest_button], layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        super().__init__([title, controls, self.metrics, paging, grid(self._cells, columns),
                          widgets.HBox([self.per_class_chart, self.confusion_chart],
                                       layout=widgets.Layout(flex_flow="row wrap"))])
        self._show_page()
        self._refresh()

    # --- state ---------------------------------------------------------------------------------

    @property
    def off(self) -> list[int]:
        """Units switched off, sorted."""
        return sorted(self._off)

    @property
    def accuracy(self) -> float:
        return self.result.accuracy

    @property
    def ranking(self) -> core.Ranking:
        """The ranking chosen for "Turn off k lowest"."""
        return self.rankings[self.ranking_choice.value]

    def toggle(self, unit: int) -> widgets.ToggleButton:
        """The switch of ``unit`` (it must be on the current page or in the search result): value True = on."""
        if unit not in self.shown:
            raise ValueError(f"unit {unit} is not shown; go to its page or search for it")
        return self._toggles[self.shown.index(unit)]

    def set_off(self, units: Iterable[int]) -> None:
        """Switch exactly ``units`` off (all others on) and update the display."""
        units = {int(u) for u in units}
        core.engine.keep_vector(self.units, units)  # ValueError for a unit that does not exist
        self._off = units
        self._sync_toggles()
        self._refresh()

    def turn_off_lowest(self, k: int | None = None, ranking: str | None = None) -> list[int]:
        """Switch off the ``k`` lowest units of ``ranking`` (default: the widgets' k and ranking)."""
        if ranking is not None:
            self.ranking_choice.value = ranking
        if k is not None:
            self.k.value = k
        self.set_off(self.ranking.lowest(int(self.k.value)))
        return self.off

    # --- internals -----------------------------------------------------------------------------

    def _flipped(self, cell: int, on: bool) -> None:
        if self._syncing or cell >= len(self.shown):
            return
        unit = self.shown[cell]
        self._off.discard(unit) if on else self._off.add(unit)
        self._style(cell)
        self._refresh()

    def _show_page(self) -> None:
        try:
            shown = shown_units(self.units, self.page_size, self.page.value, self.find.value)
            self.message.value = ""
        except ValueError as error:
            self.message.value = f"<span style='color:#b00'>{error}</span>"
            return
        if len(shown) > len(self._cells):
            self.message.value = f"showing the first {len(self._cells)} of {len(shown)} units found"
            shown = shown[:len(self._cells)]
        self.shown = shown
        for cell, box in enumerate(self._cells):
            box.layout.display = None if cell < len(shown) else "none"
            if cell < len(shown):
                self._images[cell].value = png(self._thumbs[shown[cell]])
        self._sync_toggles()

    def _sync_toggles(self) -> None:
        self._syncing = True
        try:
            for cell, unit in enumerate(self.shown):
                self._toggles[cell].value = unit not in self._off
                self._style(cell)
        finally:
            self._syncing = False

    def _style(self, cell: int) -> None:
        toggle, unit = self._toggles[cell], self.shown[cell]
        toggle.description = f"{unit}: {'on' if toggle.value else 'off'}"
        toggle.button_style = "success" if toggle.value else "danger"

    def _refresh(self) -> None:
        self.result = result = self.engine.evaluate({self.layer: self.off})
        full = self.baseline
        self.metrics.value = (
            f"<div style='font-size:15px'><b>Accuracy</b> {result.accuracy:.2%} "
            f"(<span style='color:{'#b00' if result.accuracy < full.accuracy else '#070'}'>"
            f"{(result.accuracy - full.accuracy) * 100:+.2f} pts</span>) &nbsp;·&nbsp; "
            f"<b>Units off</b> {len(self._off)} / {self.units} &nbsp;·&nbsp; "
            f"<b>Loss</b> {result.loss:.3f} ({result.loss - full.loss:+.3f})</div>")
        totals = result.confusion.sum(1, keepdims=True).clip(min=1)
        with self.per_class_chart.batch_update():
            self.per_class_chart.data[-1].y = np.nan_to_num(result.per_class) * 100
        with self.confusion_chart.batch_update():
            self.confusion_chart.data[0].z = result.confusion / totals * 100
            self.confusion_chart.data[0].customdata = result.confusion
            if self.confusion_chart.data[0].text is not None:
                self.confusion_chart.data[0].text = result.confusion


def toggle_panel(model: nn.Module, data: core.DataSplit, layer: str, rankings: RankingsArg = None,
                 page_size: int = PAGE_SIZE) -> TogglePanel:
    """The live-toggle panel for ``layer`` (see ``TogglePanel``); ``rankings``: Ranking(s) offered for
    "Turn off k lowest" (default: the L1 norm). Raises ValueError for an unknown layer."""
    return TogglePanel(model, data, layer, rankings, page_size)
