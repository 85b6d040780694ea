"""The compression workflow end to end, and its comparison table (paper A Table 2 / paper B Tables 1-4).

    result = core.compress_model(model, train, val, plan, recipe="paper-a", epochs=5, test=test)
    result.row                      # widths, params, FLOPs, ratios, accuracy before/after, wall times
    core.report_markdown([r.row for r in results]); core.report_csv(rows)
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable, Sequence

from torch import nn

from .plans import Plan, prune
from ..data import DataSplit
from ..engine import Engine
from .export import with_lineage
from ..network.models import model_totals
from .train import FinetuneResult, Recipe, finetune, make_recipe


@dataclass
class Row:
    """One compressed model: size, speed proxy and accuracy beside its parent."""

    method: str
    widths: str
    params: int
    flops: int  # multiply-adds per image (torch's FlopCounterMode counts 2 FLOPs per multiply-add)
    compression: float  # parent params / params
    flops_reduction: float  # 1 - flops / parent flops
    accuracy_parent: float
    accuracy_pruned: float  # no retraining
    accuracy_finetuned: float | None
    seconds_prune: float
    seconds_finetune: float
    split: str = "test"


@dataclass
class CompressionResult:
    plan: Plan
    pruned: nn.Module  # before fine-tuning
    model: nn.Module  # after fine-tuning (= pruned when epochs is 0)
    finetune: FinetuneResult | None
    row: Row


def compress_model(model: nn.Module, train: DataSplit | None, val: DataSplit, plan: Plan,
                   recipe: str | Recipe | None = "paper-a", test: DataSplit | None = None,
                   eval_every: int = 50, track: tuple[str, int] | None = None, am_steps: int = 64, seed: int = 0,
                   progress: Callable[[int, int, dict], None] | None = None,
                   cancel: Callable[[], bool] | None = None, label: str | None = None, **overrides) -> CompressionResult:
    """Prune a copy of ``model`` by ``plan``, fine-tune it (``recipe=None``: no fine-tuning), and measure.

    Accuracies are on ``test`` when given (else ``val``; fine-tuning's early stopping uses ``val``).
    The model passed in is never modified. ``track=(layer, unit)`` names a unit of the *original*
    model; it must be kept by the plan (its AM image is followed while fine-tuning)."""
    scored = test or val
    start = time.perf_counter()
    pruned = prune(model, plan)
    seconds_prune = time.perf_counter() - start
    parent_accuracy = Engine(model, scored).evaluate().accuracy
    pruned_accuracy = Engine(pruned, scored).evaluate().accuracy
    tuned = None
    final = pruned
    if recipe is not None:
        if train is None:
            raise ValueError("fine-tuning needs a training split")
        local = None
        if track is not None:
            layer, unit = track[0], int(track[1])
            if unit in plan.off.get(layer, []):
                raise ValueError(f"unit {unit} of {layer} is pruned by this plan; track a kept unit")
            local = (layer, unit - sum(1 for u in plan.off.get(layer, []) if u < unit))
        tuned = finetune(pruned, train, val, recipe, eval_every=eval_every, track=local, am_steps=am_steps,
                         seed=seed, progress=progress, cancel=cancel, **overrides)
        final = tuned.model
    parent, small = model_totals(model), model_totals(final)
    accuracy = Engine(final, scored).evaluate().accuracy if tuned is not None else None
    row = Row(label or plan.method, plan.widths_string(), small["params"], small["flops"],
              parent["params"] / small["params"], 1 - small["flops"] / parent["flops"], parent_accuracy,
              pruned_accuracy, accuracy, seconds_prune, tuned.seconds if tuned else 0.0, scored.split)
    if hasattr(final, "meta"):
        final = with_lineage(final, model, method=row.method, plan=plan.to_dict(),
                             recipe=tuned.recipe.to_dict() if tuned else None,
                             accuracies={"parent": parent_accuracy, "pruned": pruned_accuracy,
                                         "finetuned": accuracy, "split": scored.split})
        final.meta.accuracy = {**{k: v for k, v in final.meta.accuracy.items() if k == "val_finetuned"},
                               scored.split: accuracy if accuracy is not None else pruned_accuracy}
        if tuned is not None:
            tuned.model = final
    return CompressionResult(plan, pruned, final, tuned, row)


_HEADERS = {"method": "method", "widths": "kept widths", "params": "params", "flops": "FLOPs (MACs)",
            "compression": "compression", "flops_reduction": "FLOPs reduction",
            "accuracy_parent": "accuracy (original)", "accuracy_pruned": "after pruning",
            "accuracy_finetuned": "after fine-tuning", "seconds_prune": "prune s", "seconds_finetune": "fine-tune s",
            "split": "split"}


def report_rows(rows: Sequence[Row]) -> list[dict]:
    return [asdict(r) for r in rows]


def report_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, [f.name for f in fields(Row)])
    writer.writeheader()
    writer.writerows(report_rows(rows))
    return out.getvalue()


def _cell(key: str, value) -> str:
    if value is None:
        return "—"
    if key in ("params", "flops"):
        return f"{value:,}"
    if key == "compression":
        return f"{value:.1f}x"
    if key == "flops_reduction" or key.startswith("accuracy"):
        return f"{value:.2%}"
    if key.startswith("seconds"):
        return f"{value:.1f}"
    return str(value)


def report_table(rows: Sequence[Row]) -> list[dict[str, str]]:
    """Rows with readable headers and formatted cells (for display)."""
    keys = [f.name for f in fields(Row)]
    return [{_HEADERS[k]: _cell(k, getattr(r, k)) for k in keys} for r in rows]


def report_markdown(rows: Sequence[Row]) -> str:
    keys = [f.name for f in fields(Row)]
    lines = ["| " + " | ".join(_HEADERS[k] for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(k, getattr(r, k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


__all__ = ["Row", "CompressionResult", "compress_model", "report_rows", "report_table", "report_csv", "report_markdown",
           "make_recipe"]
