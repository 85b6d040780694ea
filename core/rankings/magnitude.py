"""L1 / L2 norm of each unit's weights ("magnitude pruning", paper A's baselines). Bias excluded."""
from __future__ import annotations

import numpy as np
import torch

from ..engine import Engine
from ..network.models import weight_module


class Norm:
    """One weight-norm method; ``L1`` and ``L2`` below are the registered instances."""

    DEFAULTS: dict = {}

    def __init__(self, p: int):
        self.p = p

    def label(self, params: dict) -> str:
        return f"L{self.p} norm"

    @torch.no_grad()
    def compute(self, engine: Engine, layer: str, progress=None, **params):
        weight = weight_module(engine.model, layer).weight
        scores = weight.flatten(1).norm(p=self.p, dim=1).cpu().numpy().astype(np.float64)
        if progress:
            progress(1, 1)
        return scores, None, {}


L1, L2 = Norm(1), Norm(2)
