"""Training (and later fine-tuning): SGD with momentum, early stopping on the validation split."""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataSplit, load_dataset
from ..engine import Engine
from ..engine.compute import Cancelled  # noqa: F401  (core.Cancelled: fine-tuning raises it too)
from ..network.models import LENET5_WIDTHS, ModelMeta, build_model

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


# --- fine-tuning a pruned model (paper A Table 2, paper B Figs. 6-8) ---------------------------------

@dataclass(frozen=True)
class Recipe:
    """How to fine-tune. ``lr_end`` None = constant lr, else exponential decay lr -> lr_end over the run;
    ``patience`` None = no early stopping (the last weights), else stop after that many epochs without a
    better validation accuracy and keep the best weights. ``augment``: "none", "shift" (random
    translation by 10 %), "flip-crop" (random horizontal flip + 4-pixel padded crop, CIFAR-style) or
    "auto" (flip-crop for 3-channel 32x32 images, none otherwise)."""

    name: str = "custom"
    epochs: int = 20
    lr: float = 0.1
    lr_end: float | None = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    patience: int | None = 5
    augment: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    # paper A: SGD, momentum 0.9, weight decay 5e-4, lr 0.1 decreasing to 0.001, early stopping on validation
    "paper-a": Recipe("paper-a", epochs=20, lr=0.1, lr_end=0.001, patience=5),
    # paper B: constant lr 0.001 for 20 epochs (1/8 of training); flip + 4-px crop on CIFAR-style data
    "paper-b": Recipe("paper-b", epochs=20, lr=0.001, lr_end=None, patience=None),
}
AUGMENTS = ("auto", "none", "shift", "flip-crop")


def make_recipe(recipe: str | Recipe = "paper-a", **overrides) -> Recipe:
    """A named preset (``RECIPES``) or a Recipe, with user settings (any Recipe field) on top; checked."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; presets: {', '.join(RECIPES)}")
        recipe = RECIPES[recipe]
    unknown = sorted(set(overrides) - set(Recipe.__dataclass_fields__))
    if unknown:
        raise ValueError(f"recipe has no setting {unknown[0]!r} (settings: {', '.join(Recipe.__dataclass_fields__)})")
    given = {k: v for k, v in overrides.items() if v is not None or k in ("lr_end", "patience")}
    result = replace(recipe, **given, name=recipe.name if not given else f"{recipe.name}+custom")
    if result.epochs < 1:
        raise ValueError(f"epochs must be at least 1 (got {result.epochs})")
    if not result.lr > 0 or (result.lr_end is not None and not result.lr_end > 0):
        raise ValueError("learning rates must be positive")
    if result.batch_size < 1:
        raise ValueError(f"batch size must be at least 1 (got {result.batch_size})")
    if result.augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTS)} (got {result.augment!r})")
    return result


@dataclass
class FinetuneResult:
    """The fine-tuned copy and what happened on the way."""

    model: nn.Module
    recipe: Recipe
    history: list[dict]  # {"iteration", "epoch", "val_accuracy", "loss"}, every eval_every iterations
    am_frames: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (iteration, AM image of the tracked unit)
    drift: list[float] = field(default_factory=list)  # AM pattern distance from iteration 0 (0 = same, max 2)
    drift_floor: float | None = None  # the same distance between two AM seeds at iteration 0: AM's own noise
    tracked: tuple[str, int] | None = None
    iterations: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0  # optimizer steps only (no evaluation, no AM)
    images_seen: int = 0

    @property
    def accuracy(self) -> float:
        """Validation accuracy of the returned model."""
        return float(self.model.meta.accuracy.get("val_finetuned", self.history[-1]["val_accuracy"])) \
            if hasattr(self.model, "meta") else float(self.history[-1]["val_accuracy"])

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.train_seconds if self.train_seconds > 0 else 0.0


FinetuneProgress = Callable[[int, int, dict], None]  # (iteration, total iterations, latest stats)


def finetune(model: nn.Module, train: DataSplit, val: DataSplit, recipe: str | Recipe = "paper-a",
             eval_every: int = 50, track: tuple[str, int] | None = None, am_every: int | None = None,
             am_steps: int = 64, seed: int = 0, progress: FinetuneProgress | None = None,
             cancel: Callable[[], bool] | None = None, **overrides) -> FinetuneResult:
    """Fine-tune a *copy* of ``model`` (the one passed in is never modified) with a recipe.

    Records validation accuracy every ``eval_every`` iterations (and at 0 and the end), and with
    ``track=(layer, unit)`` (a unit of this model) that unit's AM image every ``am_every`` iterations
    with its drift from iteration 0 (AM pattern distance, ``core.interpret.similarity.pattern_vectors``).
    ``drift_floor`` is the distance between two AM seeds on the iteration-0 weights: drift near it
    means the unit's function did not change beyond AM's own noise.
    ``cancel()`` is polled every iteration; when true, raises ``Cancelled``."""
    from ..interpret.am import optimize_units
    from ..network.models import layer_names, unit_count, weight_module
    from ..interpret.similarity import pattern_vectors

    recipe = make_recipe(recipe, **overrides)
    if eval_every < 1:
        raise ValueError(f"eval_every must be at least 1 (got {eval_every})")
    if track is not None:
        layer, unit = track
        if layer not in layer_names(model):
            raise ValueError(f"unknown layer {layer!r} to track; prunable layers: {', '.join(layer_names(model))}")
        if not 0 <= int(unit) < unit_count(model, layer):
            raise ValueError(f"{layer} has units 0..{unit_count(model, layer) - 1}; cannot track unit {unit}")
    start = time.perf_counter()
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.requires_grad_(True)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    images, labels = train.images.to(device), train.labels.to(device)
    per_epoch = -(-len(images) // recipe.batch_size)
    total = per_epoch * recipe.epochs
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    gamma = 1.0 if recipe.lr_end is None else (recipe.lr_end / recipe.lr) ** (1 / max(1, total - 1))
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
    augment = _augmenter(recipe.augment, images.shape[1:])
    am_every = am_every or eval_every
    generator = torch.Generator(device="cpu").manual_seed(seed)
    result = FinetuneResult(model, recipe, [], tracked=(track[0], int(track[1])) if track else None)
    first_pattern = None
    conv_unit = track is not None and isinstance(weight_module(model, track[0]), nn.Conv2d)
    best, best_state, stale, last_loss = -1.0, None, 0, float("nan")

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("fine-tuning cancelled")

    def record(iteration: int, epoch: float) -> float:
        accuracy = Engine(model, val).evaluate().accuracy
        result.history.append({"iteration": iteration, "epoch": epoch, "val_accuracy": accuracy, "loss": last_loss,
                               "lr": optimizer.param_groups[0]["lr"]})
        return accuracy

    def snapshot(iteration: int) -> None:
        nonlocal first_pattern
        image = optimize_units(model, track[0], [int(track[1])], am_steps, 0.05, seed)[0].cpu().numpy()
        # conv units: spectrum amplitude (where AM's stripes fall is arbitrary); fc units: pixels
        pattern = pattern_vectors(image[None], translation_invariant=conv_unit)[0]
        if first_pattern is None:
            first_pattern = pattern
            other = optimize_units(model, track[0], [int(track[1])], am_steps, 0.05, seed + 1)[0].cpu().numpy()
            result.drift_floor = float(np.linalg.norm(
                pattern_vectors(other[None], translation_invariant=conv_unit)[0] - pattern))
        result.am_frames.append((iteration, image))
        result.drift.append(float(np.linalg.norm(pattern - first_pattern)))

    iteration = 0
    best = record(0, 0.0)
    best_state = copy.deepcopy(model.state_dict())
    if track is not None:
        snapshot(0)
    if progress:
        progress(0, total, result.history[-1])
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(images), generator=generator).to(device)
        for lo in range(0, len(order), recipe.batch_size):
            check()
            tick = time.perf_counter()
            model.train()
            idx = order[lo:lo + recipe.batch_size]
            loss = F.cross_entropy(model(augment(images[idx], generator)), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            last_loss = float(loss.detach())
            result.train_seconds += time.perf_counter() - tick
            result.images_seen += len(idx)
            iteration += 1
            if iteration % eval_every == 0 or iteration == total:
                record(iteration, iteration / per_epoch)
                if progress:
                    progress(iteration, total, result.history[-1])
            if track is not None and (iteration % am_every == 0 or iteration == total):
                snapshot(iteration)
        if recipe.patience is not None:  # early stopping on the validation split, per epoch
            accuracy = result.history[-1]["val_accuracy"] if result.history[-1]["iteration"] == iteration \
                else record(iteration, iteration / per_epoch)
            if accuracy > best:
                best, best_state, stale = accuracy, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if stale >= recipe.patience:
                    break
    check()
    if recipe.patience is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.iterations = iteration
    result.seconds = time.perf_counter() - start
    if hasattr(model, "meta"):
        model.meta.accuracy = {**model.meta.accuracy, "val_finetuned": Engine(model, val).evaluate().accuracy}
    return result


def _augmenter(kind: str, shape: torch.Size) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    if kind == "auto":
        kind = "flip-crop" if shape[0] == 3 and shape[1] == shape[2] == 32 else "none"
    if kind == "shift":
        return lambda x, g: _translate(x, 0.1)
    if kind == "flip-crop":
        return _flip_crop
    return lambda x, g: x


def _flip_crop(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and a random crop of the image padded by ``pad`` pixels (zeros)."""
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip.to(images.device).view(n, 1, 1, 1), images.flip(-1), images)
    padded = F.pad(images, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
