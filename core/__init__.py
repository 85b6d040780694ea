"""Neuron Ranking Explorer — the library behind the app and the CLI (never imports streamlit).

Notebook entry points::

    import core
    model = core.load_model()                      # shipped LeNet-5 on digits (or a path / torchvision name)
    val = core.load_dataset("digits", "val")
    core.prunable_layers(model)                    # [LayerInfo(name="conv1", kind="conv", units=10, ...), ...]
    result = core.evaluate(model, val, off={"conv2": [0, 3]})
    result.accuracy, result.per_class, result.confusion
    core.rank(model, val, layer="conv2", method="shapley", samples=200).order()
"""
from __future__ import annotations

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint, load_model, save_checkpoint
from .data import DataError, DataSplit, image_to_tensor, load_dataset
from .device import pick_device
from .distributed import LocalPool, RayPool, WorkerError
from .engine import BatchResult, Engine, EvalResult, Off
from .models import LayerInfo, ModelMeta, lenet5, model_totals, prunable_layers, vgg16
from .prune import prune_model
from .am import AMResult, am_images, contact_sheet
from .contributions import class_contributions, gamma_figure
from .similarity import Clusters, Similarity, cluster_filters, pruning_selection, sd_figure, similarity_matrix
from .rankings import Ranking, rank
from .rankings.by_hand import ShapleyByHand, shapley_by_hand
from . import plots  # noqa: E402,F401  the whole package loads at once: the app imports it before any page runs
from .rankings import agreement as _agreement, plots as _ranking_plots  # noqa: E402,F401
from .curves import (Curve, CurveSet, RandomBand, Sensitivity, curve_set, curves_figure, layer_curve,
                     network_curves, random_band, sensitivity_figure, sensitivity_grid, summarize)
from .compress import (Plan, layer_clusters, layer_rankings, plan_from_budget, plan_from_pr, plan_from_widths,
                       prune)
from .train import RECIPES, Cancelled, FinetuneResult, Recipe, finetune, make_recipe
from .export import export_checkpoint, export_onnx, verify_onnx
from .report import CompressionResult, Row, compress_model, report_csv, report_markdown
from . import coupling  # noqa: E402,F401  (Torch-Pruning itself is imported on use)


def evaluate(model, data: DataSplit, off: Off | None = None) -> EvalResult:
    """Accuracy (overall, per class, confusion) of ``model`` with the ``off`` units turned off.

    For repeated calls on the same model and data, keep an ``Engine`` instead: it caches."""
    return Engine(model, data).evaluate(off)


__all__ = ["load_model", "load_checkpoint", "save_checkpoint", "load_dataset", "prunable_layers", "evaluate",
           "Engine", "EvalResult", "BatchResult", "DataSplit", "LayerInfo", "ModelMeta", "CheckpointError",
           "DataError", "DEFAULT_CHECKPOINT", "lenet5", "vgg16", "prune_model", "model_totals",
           "image_to_tensor", "pick_device", "LocalPool", "RayPool", "WorkerError",
           "am_images", "AMResult", "contact_sheet", "class_contributions", "gamma_figure", "similarity_matrix",
           "cluster_filters", "pruning_selection", "shapley_by_hand", "ShapleyByHand", "Similarity", "Clusters", "sd_figure", "rank", "Ranking"]
__all__ += ["Curve", "CurveSet", "RandomBand", "Sensitivity", "layer_curve", "random_band", "curve_set",
            "network_curves", "sensitivity_grid", "summarize", "curves_figure", "sensitivity_figure"]
__all__ += ["Plan", "layer_rankings", "layer_clusters", "plan_from_widths", "plan_from_pr", "plan_from_budget",
            "prune", "RECIPES", "Recipe", "make_recipe", "finetune", "FinetuneResult", "Cancelled",
            "export_checkpoint", "export_onnx", "verify_onnx", "compress_model", "CompressionResult", "Row",
            "report_csv", "report_markdown"]
