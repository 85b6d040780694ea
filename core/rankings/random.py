"""Random scores (seeded): the baseline every informed ranking must beat."""
from __future__ import annotations

import numpy as np

from ..engine import Engine

DEFAULTS = {"seed": 0}


LABELLED = ("seed",)

def label(params: dict) -> str:
    return f"Random (seed {params['seed']})"


def compute(engine: Engine, layer: str, progress=None, seed: int = 0):
    scores = np.random.default_rng(int(seed)).random(engine.units(layer))
    if progress:
        progress(1, 1)
    return scores, None, {}
