"""Paper B Eq. 7 contribution index: I(F_i) = mean over images of |dZ/dA_i * A_i|, Z = the loss.

Gradient x activation per unit, at the point where the layer's units enter the rest of the
network (after BN/ReLU, where units are switched off). For a conv unit the product is averaged
over the feature map *before* the absolute value (first-order Taylor estimate of the loss change
when the whole channel is removed, as in Molchanov et al.), then |.| per image, then the mean
over images.

Computed with ``Engine.gated_logits`` and a per-image gate g (B, units) at 1: d loss_b / d g_bi =
sum_{h,w} dZ_b/dA_i(h,w) * A_i(h,w), divided by the map's size H*W. The engine runs a private
eval-mode copy (of the suffix from its prefix cache for a staged model, of the whole network for a
torchvision one), so the shared model's mode, hooks and gradients are never touched. On a torchvision
model A is the output of the layer's mask point (its BatchNorm), and a layer coupled across residual adds
is gated in every layer of its group, as masking removes it: the score is the whole group's, divided by
the selected layer's map size. Tests cross-check the values against autograd by hand and Captum's
LayerGradientXActivation (tests/test_generic_gradients.py).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import Engine

DEFAULTS = {"batch_size": 256}


def label(params: dict) -> str:
    return "Taylor (grad x act)"


def compute(engine: Engine, layer: str, progress=None, batch_size: int = 256):
    shape = engine.unit_shape(layer)  # (units, *map), from one image on a generic model
    positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    labels = engine.data.labels.to(engine.device)
    total = np.zeros(shape[0])
    n = len(engine.data)
    batch_size = engine.gradient_batch(batch_size)  # a generic model's full passes go in smaller batches
    dtype = next((p.dtype for p in engine.model.parameters() if p.is_floating_point()), torch.float32)
    for lo in range(0, n, batch_size):
        index = slice(lo, min(n, lo + batch_size))
        gate = torch.ones(index.stop - lo, shape[0], device=engine.device, dtype=dtype, requires_grad=True)
        with torch.enable_grad():
            loss = F.cross_entropy(engine.gated_logits(layer, gate, index), labels[index], reduction="sum")
            (grad,) = torch.autograd.grad(loss, gate)
        per_unit = grad / positions  # (B, units): spatial mean of grad x act, per image
        total += per_unit.abs().sum(0).detach().double().cpu().numpy()
        if progress:
            progress(index.stop, n)
    return total / n, None, {}
