"""Rankings side by side in a notebook: scores per method, the agreement table and heatmap (the Rankings page)."""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from torch import nn

import core
from core.rankings import Ranking
from core.rankings.agreement import METRICS, agreement_matrix, compare, heatmap, top_units_table
from core.rankings.plots import scores_bar

MethodSpec = Union[str, tuple[str, dict], Ranking]
DEFAULT_METHODS: tuple[MethodSpec, ...] = ("shapley", "l1", "l2", "taylor", "random")


def compute_rankings(model: nn.Module, data: core.DataSplit, layer: str,
                     methods: Sequence[MethodSpec] | Mapping[str, dict], engine: core.Engine) -> dict[str, Ranking]:
    """label -> Ranking for each method: a name (default parameters), (name, params), or a ready Ranking."""
    specs = list(methods.items()) if isinstance(methods, Mapping) else list(methods)
    out: dict[str, Ranking] = {}
    for spec in specs:
        if isinstance(spec, Ranking):
            ranking = spec
        else:
            name, params = (spec, {}) if isinstance(spec, str) else spec
            ranking = core.rank(model, data, layer, name, engine=engine, **params)
        if ranking.layer != layer:
            raise ValueError(f"the ranking {ranking.label!r} is of layer {ranking.layer}, not {layer}")
        out[ranking.label] = ranking
    if not out:
        raise ValueError("no ranking method given")
    return out


class RankingView(widgets.VBox):
    """Scores of every unit by each method side by side (a table ordered by the chosen method, and its bar
    chart with error bars where the method has them), paper A's Table 1 (top-k units per method), the
    pairwise agreement table (top-k overlap with its chance probability, Spearman, Kendall) and heatmap.

    State: ``rankings`` (label -> Ranking), ``chosen`` (label the table is ordered by), ``ranking`` (that
    Ranking), ``k``, ``metric``, ``agreement`` (the pair table as a DataFrame). Widgets: ``order_by``,
    ``k_slider``, ``metric_choice``."""

    def __init__(self, model: nn.Module, data: core.DataSplit, layer: str,
                 methods: Sequence[MethodSpec] | Mapping[str, dict] = DEFAULT_METHODS, k: int = 5):
        self.engine = core.Engine(model, data)
        self.layer = layer
        self.units = self.engine.units(layer)
        self.rankings = compute_rankings(model, data, layer, methods, self.engine)
        labels = list(self.rankings)
        self.order_by = widgets.Dropdown(options=labels, description="Order by", layout=widgets.Layout(width="320px"))
        self.k_slider = widgets.IntSlider(value=min(k, self.units), min=1, max=self.units, description="top k")
        self.metric_choice = widgets.Dropdown(options=list(METRICS), description="Heatmap")
        self.table = widgets.HTML(layout=widgets.Layout(max_height="420px", overflow="auto", flex="0 0 auto"))
        self.top_table = widgets.HTML()
        self.agreement_table = widgets.HTML()
        self.bar_chart = go.FigureWidget(scores_bar(self.ranking))
        self.bar_chart.update_layout(width=560)
        self.heatmap = go.FigureWidget(heatmap(list(self.rankings.values()), self.metric, self.k)) \
            if len(labels) > 1 else None
        self.order_by.observe(lambda _: self._refresh_order(), "value")
        self.k_slider.observe(lambda _: self._refresh_agreement(), "value")
        self.metric_choice.observe(lambda _: self._refresh_agreement(), "value")
        title = widgets.HTML(f"<h3 style='margin:0'>Rankings — {layer} ({self.units} units, "
                             f"{len(data)} images of {data.name} {data.split})</h3>")
        agreement = [widgets.HTML("<b>Top units per method</b> (paper A Table 1)"), self.top_table,
                     widgets.HTML("<b>Agreement between methods</b>"), self.agreement_table]
        if self.heatmap is not None:
            agreement.append(self.heatmap)
        side_by_side = widgets.HBox([self.table, self.bar_chart], layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([title, widgets.HBox([self.order_by, self.k_slider, self.metric_choice]),
                          side_by_side, *agreement])
        self._refresh_order()
        self._refresh_agreement()

    @property
    def chosen(self) -> str:
        return self.order_by.value

    @property
    def ranking(self) -> Ranking:
        return self.rankings[self.order_by.value]

    @property
    def k(self) -> int:
        return int(self.k_slider.value)

    @property
    def metric(self) -> str:
        return self.metric_choice.value

    def scores_table(self) -> pd.DataFrame:
        """One row per unit (ordered by the chosen method): each method's score and rank."""
        columns: dict[str, np.ndarray] = {}
        for label, ranking in self.rankings.items():
            rank = np.empty(self.units, dtype=int)
            rank[ranking.order()] = np.arange(1, self.units + 1)
            columns[f"{label} score"], columns[f"{label} rank"] = ranking.scores, rank
        table = pd.DataFrame(columns, index=pd.Index(range(self.units), name="unit"))
        return table.iloc[self.ranking.order()]

    def _refresh_order(self) -> None:
        table = self.scores_table()
        table.columns = pd.MultiIndex.from_tuples([tuple(c.rsplit(" ", 1)) for c in table.columns])  # method / kind
        self.table.value = table.to_html(float_format=lambda v: f"{v:.4g}", border=0)
        figure = scores_bar(self.ranking)
        with self.bar_chart.batch_update():
            self.bar_chart.data[0].x = figure.data[0].x
            self.bar_chart.data[0].y = figure.data[0].y
            self.bar_chart.data[0].error_y = figure.data[0].error_y
            self.bar_chart.layout.title = figure.layout.title

    def _refresh_agreement(self) -> None:
        rankings = list(self.rankings.values())
        self.top_table.value = top_units_table(rankings, self.k).to_html(border=0)
        if len(rankings) < 2:
            self.agreement = pd.DataFrame()
            self.agreement_table.value = "<i>one method only: nothing to compare</i>"
            return
        self.agreement = compare(rankings, self.k)
        self.agreement_table.value = self.agreement.to_html(index=False, border=0, float_format=lambda v: f"{v:.3g}")
        matrix = agreement_matrix(rankings, self.metric, self.k)
        figure = heatmap(rankings, self.metric, self.k)
        with self.heatmap.batch_update():
            self.heatmap.data[0].z = matrix.values
            self.heatmap.data[0].text = np.round(matrix.values, 2)
            self.heatmap.data[0].zmin = figure.data[0].zmin
            self.heatmap.layout.title = figure.layout.title


def ranking_view(model: nn.Module, data: core.DataSplit, layer: str,
                 methods: Sequence[MethodSpec] | Mapping[str, dict] = DEFAULT_METHODS, k: int = 5) -> RankingView:
    """Rankings of ``layer`` by ``methods`` side by side with their agreement (see ``RankingView``).

    ``methods``: names ("shapley", "switches", "l1", "l2", "taylor", "activation", "random"), (name, params)
    pairs such as ("shapley", {"samples": 50}), a mapping name -> params, or ready ``Ranking`` objects."""
    return RankingView(model, data, layer, methods, k)


__all__ = ["RankingView", "ranking_view", "compute_rankings", "DEFAULT_METHODS"]
