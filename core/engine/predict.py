"""What a model predicts for a few images of its own (an upload, a drawing): class probabilities and the top
classes by name. The engine evaluates a whole dataset under masks; this is one plain forward pass."""
from __future__ import annotations

import torch
from torch import nn

from ..network.device import model_device


def class_probabilities(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities (B, classes) of ``model`` for (B, C, H, W) or (C, H, W) images in [0, 1]."""
    images = images if images.dim() == 4 else images.unsqueeze(0)
    with torch.no_grad():
        return model.eval()(images.to(model_device(model))).float().softmax(-1).cpu()


def predict(model: nn.Module, image: torch.Tensor, top: int = 3) -> list[tuple[str, float]]:
    """The ``top`` most probable classes of one (C, H, W) image: [(class name, probability), ...], best first.
    Class names come from the checkpoint's metadata (numbers when it has none)."""
    probabilities = class_probabilities(model, image)[0]
    names = list(getattr(getattr(model, "meta", None), "class_names", None) or range(len(probabilities)))
    values, classes = probabilities.topk(min(top, len(probabilities)))
    return [(str(names[int(c)]), float(v)) for v, c in zip(values, classes)]
