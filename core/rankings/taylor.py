"""Paper B Eq. 7 contribution index: I(F_i) = mean over images of |dZ/dA_i * A_i|, Z = the loss.

Gradient x activation per unit comes from Captum's LayerGradientXActivation on the module whose
output carries the layer's units (after BN/ReLU, where units are switched off). For a conv unit
the product is averaged over the feature map before the absolute value (first-order Taylor
estimate of the loss change when the whole channel is removed, as in Molchanov et al.)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerGradientXActivation

from ..engine import Engine
from ..models import mask_point

DEFAULTS = {"batch_size": 256}


def label(params: dict) -> str:
    return "Taylor (grad x act)"


def compute(engine: Engine, layer: str, progress=None, batch_size: int = 256):
    model, data = engine.model.eval(), engine.data

    def loss_per_image(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(images), labels, reduction="none")

    attribution = LayerGradientXActivation(loss_per_image, mask_point(model, layer))
    total = np.zeros(engine.units(layer))
    n = len(data)
    for lo in range(0, n, batch_size):
        images = data.images[lo:lo + batch_size].to(engine.device)
        labels = data.labels[lo:lo + batch_size].to(engine.device)
        attr = attribution.attribute(images, additional_forward_args=(labels,))
        per_unit = attr.flatten(2).mean(2) if attr.dim() > 2 else attr  # (B, units)
        total += per_unit.abs().sum(0).detach().cpu().numpy()
        if progress:
            progress(min(n, lo + batch_size), n)
    return total / n, None, {}
