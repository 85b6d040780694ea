"""Leave-one-out: what the layer loses when only this unit is removed, v(all) - v(all minus i).

The semivalue with all its weight on the coalition of the N - 1 other units; N + 1 evaluations, one
batched engine call. It answers exactly the first step of pruning and nothing after it."""
from __future__ import annotations

import numpy as np

from ..engine import Engine
from . import game

DEFAULTS = {"payoff": "accuracy"}


def normalize(params: dict, engine: Engine | None = None) -> dict:
    return {"payoff": game.check_payoff(params["payoff"])}


LABELLED = tuple(DEFAULTS)


def label(params: dict) -> str:
    return f"Leave-one-out{' (loss)' if params['payoff'] == 'loss' else ''}"


def compute(engine: Engine, layer: str, progress=None, payoff: str = "accuracy"):
    units = engine.units(layer)
    keep = np.ones((units + 1, units), dtype=np.float32)  # row 0: all on; row 1 + i: unit i off
    keep[1:][np.arange(units), np.arange(units)] = 0
    values = game.evaluate_in_chunks(game.payoff(engine, layer, payoff), keep, progress)
    return values[0] - values[1:], None, {"v_all": float(values[0]), "evaluations": units + 1}
