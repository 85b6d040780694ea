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

from .network import (DEFAULT_CHECKPOINT, CheckpointError, LayerInfo, ModelMeta, lenet5, load_checkpoint, load_model,
                      model_totals, pick_device, prunable_layers, save_checkpoint, vgg16)
from .data import DataError, DataSplit, image_to_tensor, load_dataset
from .data import read_image, suggest_inversion
from .data import DATASETS, EMBEDDED, available_datasets, search_folders  # issue 20: where datasets are found
from .engine import BatchResult, Engine, EvalResult, LocalPool, Off, RayPool, WorkerError
from .engine import class_probabilities, predict
from .engine.compute import Scheduler, Token, default_threads, scheduler, set_threads
from .rankings import Ranking, rank
from .rankings.by_hand import ShapleyByHand, shapley_by_hand
from .rankings.by_hand import order_spread, teaching_players
from .rankings.interactions import Interactions, interactions
from .rankings import agreement as _agreement, plots as _ranking_plots  # noqa: F401  the whole package loads at once
from .interpret import SimilarityVsInteractions, interaction_figure, sd_interaction_scatter, similarity_vs_interactions
from .interpret import (AMResult, Clusters, Similarity, am_images, class_contributions, cluster_filters, contact_sheet,
                        gamma_figure, pruning_selection, sd_figure, similarity_matrix)
from .pruning import (RECIPES, Cancelled, CompressionResult, Curve, CurveSet, FinetuneResult, Plan, RandomBand, Recipe,
                      Row, Sensitivity, compress_model, curve_set, curves_figure, export_checkpoint, export_onnx,
                      finetune, layer_clusters, layer_curve, layer_rankings, make_recipe, network_curves,
                      plan_from_budget, plan_from_pr, plan_from_widths, prune, prune_model, random_band,
                      report_csv, report_markdown, sensitivity_figure, sensitivity_grid, summarize, verify_onnx)
from .pruning import pr_count  # noqa: E402  issue 23: paper B's Pr rule on one cost curve
from .engine.pools import check_pool  # noqa: E402  issue 23: a pool must evaluate on the engine's weights/data
from .rankings import ran_label  # noqa: E402  issue 23: the label of what ran
try:
    set_threads()  # the compute policy's default (core.engine.compute): few threads, a busy laptop is the normal case
except ValueError as _bad:  # a bad NRE_THREADS: said once, torch's own setting kept (the CLI refuses it with exit 2)
    import warnings
    warnings.warn(str(_bad), stacklevel=2)
from .pruning import ReportCard, greedy_curve, oracle_curve, reference_curve, report_card  # issue 19
from . import _flat_layout  # noqa: E402,F401  the module paths of the earlier flat layout, for old notebooks
from .engine import plots  # noqa: E402,F401  (core.plots, as before)
from .network import coupling  # noqa: E402,F401  (core.coupling, as before; Torch-Pruning is imported on use)

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
__all__ += ["pr_count", "check_pool", "ran_label"]  # issue 23
__all__ += ["teaching_players", "order_spread"]  # Shapley by hand: default players by a rule
__all__ += ["read_image", "suggest_inversion", "predict", "class_probabilities"]  # an uploaded drawing
__all__ += ["DATASETS", "EMBEDDED", "available_datasets", "search_folders"]  # issue 20
__all__ += ["set_threads", "default_threads", "Scheduler", "scheduler", "Token"]  # the compute policy (issue 21)
__all__ += ["Interactions", "interactions", "SimilarityVsInteractions", "similarity_vs_interactions",
            "interaction_figure", "sd_interaction_scatter"]
__all__ += ["oracle_curve", "greedy_curve", "reference_curve", "report_card", "ReportCard"]  # issue 19: oracle + report card
