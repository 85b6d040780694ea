"""Device choice: CUDA when available, CPU otherwise; an explicit choice wins."""
from __future__ import annotations

import torch
from torch import nn

DEVICE_HELP = "cpu, cuda, cuda:N or auto (default auto: cuda when available, else cpu)"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" -> cuda when present, else cpu; "cpu", "cuda", "cuda:N" (checked to exist), "mps"."""
    if device is None or str(device).strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(str(device).strip().lower() if isinstance(device, str) else device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("CUDA was asked for but no CUDA device is available; use --device cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(f"there is no {chosen}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("MPS was asked for but is not available; use --device cpu")
    return chosen


def model_device(model: nn.Module) -> torch.device:
    """The device a model's weights are on (cpu for a model without parameters)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def device_label(device: str | torch.device) -> str:
    """Human-readable device: "CPU", "CUDA (NVIDIA H100 80GB HBM3)", "CUDA:1 (...)"."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        return f"CUDA{'' if device.index is None else f':{device.index}'} ({name})"
    return device.type.upper()
