"""Acting on a ranking (the acting half of both papers): pruning curves (``curves``, ``curve_sets``,
``network_curves``, ``curve_plots``), compression plans (``plans``, ``budgets``), physical pruning (``prune``),
training and fine-tuning (``train``), export (``export``) and the compression report (``report``).
Stands on every room below it; only ``cli`` and the package face stand above."""
from .curve_plots import curves_figure, sensitivity_figure
from .curve_sets import CurveSet, curve_set, summarize
from .curves import Curve, RandomBand, layer_curve, random_band
from .export import export_checkpoint, export_onnx, verify_onnx
from .network_curves import Sensitivity, network_curves, sensitivity_grid
from .prune import prune_model  # before .plans: the package's name ``prune`` is plans.prune, not this module
from .plans import Plan, layer_clusters, layer_rankings, plan_from_pr, plan_from_widths, pr_count, prune
from .budgets import plan_from_budget
from .oracle import greedy_curve, oracle_curve, reference_curve
from .report_card import ReportCard, report_card
from .report import CompressionResult, Row, compress_model, report_csv, report_markdown
from .train import RECIPES, Cancelled, FinetuneResult, Recipe, finetune, make_recipe

__all__ = ["Curve", "CurveSet", "RandomBand", "Sensitivity", "layer_curve", "random_band", "curve_set",
           "network_curves", "sensitivity_grid", "summarize", "curves_figure", "sensitivity_figure", "Plan",
           "layer_rankings", "layer_clusters", "plan_from_widths", "plan_from_pr", "plan_from_budget", "prune",
           "prune_model", "RECIPES", "Recipe", "make_recipe", "finetune", "FinetuneResult", "Cancelled",
           "export_checkpoint", "export_onnx", "verify_onnx", "compress_model", "CompressionResult", "Row",
           "report_csv", "report_markdown", "pr_count"]
__all__ += ["oracle_curve", "greedy_curve", "reference_curve", "report_card", "ReportCard"]  # issue 19
