"""Similar filters and clusters in a notebook, with a pruning-rate slider (the Similar filters page)."""
from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go
from torch import nn

import core
from core.interpret.similarity import MIN_SILHOUETTE, cluster_rows_image

from ._common import png


class ClusterView(widgets.VBox):
    """Paper B: k-means clusters of the layer's units on the similarity degree SD, one row of AM images per
    cluster (highest contribution index left), the units a pruning rate removes crossed out in red, the
    accuracy with those units off, the SD heatmap by cluster and the class-contribution heatmap.

    State: ``similarity``, ``clusters``, ``rate``, ``removed`` (= ``core.pruning_selection(clusters, rate)``),
    ``result`` (``core.EvalResult`` with ``removed`` off, through this view's ``engine``). Widget: ``rate_slider``."""

    def __init__(self, model: nn.Module, data: core.DataSplit, layer: str, rate: float = 0.3, steps: int = 256,
                 seed: int = 0):
        self.engine = core.Engine(model, data)
        self.layer = layer
        self.units = self.engine.units(layer)  # ValueError naming the prunable layers if unknown
        self.similarity = core.similarity_matrix(model, data, layer, steps, seed, engine=self.engine)
        self.clusters = core.cluster_filters(model, data, layer, steps, seed, similarity=self.similarity,
                                             engine=self.engine)
        self.baseline = self.engine.evaluate()
        self.rate_slider = widgets.FloatSlider(value=rate, min=0.0, max=0.9, step=0.05, description="Pruning rate",
                                               readout_format=".0%", style={"description_width": "initial"},
                                               layout=widgets.Layout(width="420px"))
        self.metrics = widgets.HTML()
        self.rows = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.sd_chart = go.FigureWidget(core.sd_figure(self.similarity, self.clusters))
        self.gamma_chart = go.FigureWidget(core.gamma_figure(
            self.similarity.gamma, data.class_names, self.clusters.order(),
            title="Class contributions γ (paper B Eq. 2), units by cluster"))
        for chart in (self.sd_chart, self.gamma_chart):
            chart.update_layout(width=560)
        self.rate_slider.observe(lambda _: self._refresh(), "value")
        title = widgets.HTML(f"<h3 style='margin:0'>Similar filters & clusters — {layer} ({self.units} units)</h3>"
                             "One row per cluster, AM images by contribution index (highest left); crossed out in "
                             "red: the units the pruning rate removes. A unit alone in its cluster is locked.")
        super().__init__([title, self.rate_slider, self.metrics, self.rows,
                          widgets.HBox([self.sd_chart, self.gamma_chart], layout=widgets.Layout(flex_flow="row wrap"))])
        self._refresh()

    @property
    def rate(self) -> float:
        return float(self.rate_slider.value)

    def _refresh(self) -> None:
        self.removed = core.pruning_selection(self.clusters, self.rate)
        self.result = self.engine.evaluate({self.layer: self.removed})
        self.rows.value = png(cluster_rows_image(self.similarity.am.images, self.clusters, self.removed))
        best = max(self.clusters.silhouette.values(), default=float("nan"))
        removed = ", ".join(map(str, self.removed)) or "none"
        self.metrics.value = (
            f"<div style='font-size:15px'><b>Clusters</b> k = {self.clusters.k} (best silhouette {best:.2f}; "
            f"k = 1 below {MIN_SILHOUETTE}) &nbsp;·&nbsp; <b>Locked</b> {len(self.clusters.locked)} &nbsp;·&nbsp; "
            f"<b>Pruned at this rate</b> {len(self.removed)} / {self.units}: {removed} &nbsp;·&nbsp; "
            f"<b>Accuracy with them off</b> {self.result.accuracy:.2%} "
            f"({(self.result.accuracy - self.baseline.accuracy) * 100:+.2f} pts)</div>")


def cluster_view(model: nn.Module, data: core.DataSplit, layer: str, rate: float = 0.3, steps: int = 256,
                 seed: int = 0) -> ClusterView:
    """Clusters of ``layer`` with a pruning-rate slider (see ``ClusterView``); ``steps``: AM optimization steps.
    Raises ValueError for an unknown layer."""
    return ClusterView(model, data, layer, rate, steps, seed)
