"""The engine's vocabulary: a mask (``Off``: the units turned off, per layer; ``keep_vector``), the
results of evaluating masked networks, and the checks a (model, data, precision) must pass."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..data import DataSplit

Off = Mapping[str, Iterable[int]]
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def keep_vector(units: int, off: Iterable[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """1 for units that stay on, 0 for units turned off."""
    keep = torch.ones(units, device=device)
    off = [int(i) for i in off]
    bad = [i for i in off if not 0 <= i < units]
    if bad:
        raise ValueError(f"unit {bad[0]} does not exist: the layer has units 0..{units - 1}")
    keep[off] = 0.0
    return keep


def parse_units(text: str, units: int) -> list[int]:
    """A unit search: '3, 10-12' -> [3, 10, 11, 12] (within range, no repeats); unreadable text raises ValueError."""
    found: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"'{part}' is not a unit number or range like 200-230")
        found.extend(range(int(lo), min(units, int(hi or lo) + 1)))
    return [i for i in dict.fromkeys(found) if i < units]


def _broadcast(keep: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """Shape a (C,) or per-sample (B, C) keep vector to multiply a (B, C, ...) activation."""
    shape = keep.shape if keep.dim() == 2 else (1, keep.shape[0])
    return keep.view(*shape, *([1] * (activation.dim() - 2)))


def check_compatible(model: nn.Module, data: DataSplit) -> None:
    """Refuse a dataset whose images or classes do not fit the model, with a clear reason."""
    meta = getattr(model, "meta", None)
    if meta is None:
        return
    if tuple(meta.input_shape) != data.input_shape:
        shape = "x".join(map(str, meta.input_shape))
        raise ValueError(f"the model takes {shape} images but {data.name} has "
                         f"{'x'.join(map(str, data.input_shape))}; pick a dataset that fits the model")
    if int(data.labels.max()) >= meta.num_classes:
        raise ValueError(f"the model has {meta.num_classes} classes but {data.name} has "
                         f"{len(data.class_names)}; pick a dataset that fits the model")


@dataclass
class EvalResult:
    """Accuracy of one masked network on a data split."""

    accuracy: float
    loss: float
    per_class: np.ndarray  # accuracy per true class (nan for a class with no images)
    confusion: np.ndarray  # [true, predicted] counts
    predictions: np.ndarray
    n: int


@dataclass
class BatchResult:
    """Accuracy and loss of K masked networks (one entry per mask)."""

    accuracy: np.ndarray
    loss: np.ndarray
    correct: np.ndarray | None = None  # (K, images) 0/1 per image, with per_image=True
    image_loss: np.ndarray | None = None  # (K, images) cross entropy per image, with per_image=True


def check_precision(precision: str, device: torch.device | str = "cpu") -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None for float32); ValueError when unknown or not usable on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return None
    device = torch.device(device)
    if not torch.amp.is_autocast_available(device.type):
        raise ValueError(f"{precision} needs autocast, which this torch does not offer on {device.type}; use float32")
    try:  # older torch builds silently ignore an unsupported autocast dtype (CPU float16): probe it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device_type=device.type, dtype=dtype):
                probe = torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except RuntimeError as exc:
        raise ValueError(f"{precision} is not usable on {device}: {exc}") from None
    if probe.dtype != dtype:
        raise ValueError(f"{precision} is not supported by autocast on {device.type} in this torch; use "
                         f"{'bfloat16 or ' if precision == 'float16' else ''}float32")
    return dtype
