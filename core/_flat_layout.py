"""The module paths of the flat layout ``core`` had before its rooms (``core.curves``,
``core.distributed``, ...), kept as aliases of the modules that now hold that code, so notebooks
and scripts written against them keep working: ``from core.curves import layer_curve`` still does.
New code imports from the rooms (``core.pruning.curves``); nothing inside ``core`` uses these."""
from __future__ import annotations

import importlib
import sys
import types

MOVED = {"models": "network.models", "checkpoint": "network.checkpoint", "coupling": "network.coupling",
         "device": "network.device", "distributed": "engine.pools", "cache": "engine.cache",
         "plots": "engine.plots", "am": "interpret.am", "contributions": "interpret.contributions",
         "similarity": "interpret.similarity", "prune": "pruning.prune",
         "train": "pruning.train", "export": "pruning.export", "report": "pruning.report"}
# core/curves.py (and curve_plots.py) became four modules; the old path offers all of their names
CURVES = ("pruning.curves", "pruning.curve_sets", "pruning.network_curves", "pruning.curve_plots")
COMPRESS = ("pruning.plans", "pruning.budgets")  # core/compress.py: plans, and the budgets split from them (issue 23)


def _install() -> None:
    package = sys.modules[__package__]
    aliases = {old: importlib.import_module(f"{__package__}.{new}") for old, new in MOVED.items()}
    curves = types.ModuleType(f"{__package__}.curves", "Pruning curves (the flat layout's core.curves).")
    for name in CURVES:
        module = importlib.import_module(f"{__package__}.{name}")
        curves.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    aliases["curves"] = aliases["curve_plots"] = curves
    compress = types.ModuleType(f"{__package__}.compress", "Compression plans (the flat layout's core.compress).")
    for name in COMPRESS:
        module = importlib.import_module(f"{__package__}.{name}")
        compress.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    aliases["compress"] = compress
    for old, module in aliases.items():
        sys.modules.setdefault(f"{__package__}.{old}", module)
        if not hasattr(package, old):  # core.prune stays the function, as before
            setattr(package, old, module)


_install()
