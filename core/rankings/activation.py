"""Mean activation of each unit over the data (after the layer's nonlinearity)."""
from __future__ import annotations

import numpy as np
import torch

from ..engine import Engine
from ..engine.plots import unit_activations

DEFAULTS: dict = {}


def label(params: dict) -> str:
    return "Mean activation"


@torch.no_grad()
def compute(engine: Engine, layer: str, progress=None):
    acts = unit_activations(engine, layer)  # (N, C, ...) after BN/ReLU: the prefix cache, or hooked passes (torchvision)
    dims = [d for d in range(acts.dim()) if d != 1]
    scores = acts.mean(dim=dims).cpu().numpy().astype(np.float64)
    if progress:
        progress(1, 1)
    return scores, None, {}
