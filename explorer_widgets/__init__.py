"""The explorer's headline views as Jupyter widgets (ipywidgets + plotly FigureWidget), computed by ``core``.

    import core, explorer_widgets as ew
    model, val = core.load_model(), core.load_dataset("digits", "val")
    panel = ew.toggle_panel(model, val, "conv2")   # displays as the cell's result; click units off
    panel.off, panel.accuracy                      # what the user clicked, and its accuracy
    ew.ranking_view(model, val, "conv2", methods=["l1", ("shapley", {"samples": 50})])
    ew.am_gallery(model, "conv2", ranking=panel.ranking)
    ew.cluster_view(model, val, "conv2")           # pruning-rate slider over paper B's clusters

Each view holds its own ``core.Engine`` (prefix cache), so views never share state and a click costs
what it costs in the app. ``core`` itself never imports a UI package.
"""
from __future__ import annotations

from .am import AMGallery, am_gallery
from .clusters import ClusterView, cluster_view
from .ranking import RankingView, ranking_view
from .toggle import TogglePanel, toggle_panel

__all__ = ["toggle_panel", "ranking_view", "am_gallery", "cluster_view",
           "TogglePanel", "RankingView", "AMGallery", "ClusterView"]
