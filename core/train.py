"""Training (and later fine-tuning): SGD with momentum, early stopping on the validation split."""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import DataSplit, load_dataset
from .engine import Engine
from .models import LENET5_WIDTHS, ModelMeta, build_model

Progress = Callable[[int, int, dict], None]  # (epoch, epochs, {"loss", "val_accuracy"})


def fit(model: nn.Module, train: DataSplit, val: DataSplit, epochs: int = 60, lr: float = 0.05,
        batch_size: int = 64, weight_decay: float = 5e-4, patience: int = 10, seed: int = 0,
        shift: float = 0.1, progress: Progress | None = None) -> nn.Module:
    """Train in place; keep the weights of the best validation epoch; return the model in eval mode.

    ``shift``: random translation augmentation, as a fraction of the image size (0 = none)."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    images, labels = train.images.to(device), train.labels.to(device)
    best, best_state, stale = -1.0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), device=device)
        total = 0.0
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            loss = F.cross_entropy(model(_translate(images[idx], shift)), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        schedule.step()
        model.eval()
        accuracy = Engine(model, val).evaluate().accuracy
        if accuracy > best:
            best, best_state, stale = accuracy, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if progress:
            progress(epoch + 1, epochs, {"loss": total / len(images), "val_accuracy": accuracy})
        if stale >= patience:
            break
    model.load_state_dict(best_state)
    return model.eval()


def _translate(images: torch.Tensor, shift: float) -> torch.Tensor:
    """Shift each image by a random offset of up to ``shift`` of its size (zeros fill in)."""
    if shift <= 0:
        return images
    theta = torch.zeros(len(images), 2, 3, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(len(images), 2, device=images.device) * 2 - 1) * shift * 2
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def train_new(arch: str = "lenet5", dataset: str = "digits", root: str | None = None,
              arch_params: dict | None = None, device: str | torch.device = "cpu",
              progress: Progress | None = None, **fit_args) -> nn.Module:
    """Build a fresh model for a dataset, train it, and attach metadata incl. test accuracy."""
    train = load_dataset(dataset, "train", root)
    val, test = load_dataset(dataset, "val", root), load_dataset(dataset, "test", root)
    channels = train.input_shape[0]
    mean = train.images.mean(dim=(0, 2, 3)).tolist()
    std = train.images.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    params = dict(arch_params or ({"widths": list(LENET5_WIDTHS)} if arch == "lenet5" else {"width_mult": 1.0}))
    params["in_channels"] = channels
    torch.manual_seed(fit_args.get("seed", 0))
    model = build_model(arch, params, len(train.class_names), mean, std).to(device)
    fit(model, train, val, progress=progress, **fit_args)
    accuracy = {split: Engine(model, data).evaluate().accuracy for split, data in (("val", val), ("test", test))}
    model.meta = ModelMeta(arch=arch, arch_params=params, input_shape=train.input_shape,
                           class_names=train.class_names, mean=mean, std=std, dataset=dataset,
                           accuracy=accuracy)
    return model
