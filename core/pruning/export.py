"""Export a pruned (fine-tuned) model: a project checkpoint with its lineage, and ONNX checked by onnxruntime.

Every write is atomic: the file is written under a temporary name in the same folder and renamed
over the target only when complete, so a cancel or a crash never leaves a half-written file.
"""
from __future__ import annotations

import copy
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..network.checkpoint import save_checkpoint
from ..network.models import input_shape, is_staged


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None],
                 cancel: Callable[[], bool] | None = None) -> Path:
    """``write(tmp)`` fills a temporary file next to ``path``; it replaces ``path`` only when complete.

    On any exception (or ``cancel()`` true after writing) the temporary file is removed and
    ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if cancel is not None and cancel():
            from .train import Cancelled
            raise Cancelled("export cancelled")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def with_lineage(model: nn.Module, parent: nn.Module | None = None, **lineage) -> nn.Module:
    """A shallow copy of ``model`` whose metadata records how it was made (parent sha256, plan, ...)."""
    result = copy.copy(model)
    result.meta = copy.deepcopy(model.meta)
    parent_meta = getattr(parent, "meta", None)
    if parent_meta is not None:
        lineage.setdefault("parent_sha256", parent_meta.sha256)
        lineage.setdefault("parent_source", parent_meta.source)
        lineage.setdefault("parent_widths", list(parent_meta.arch_params.get("widths", [])))
    result.meta.lineage = {**result.meta.lineage, **_plain(lineage)}
    return result


def _plain(value):
    """JSON-like values only (a checkpoint must load with weights_only=True)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def export_checkpoint(model: nn.Module, path: str | os.PathLike, cancel: Callable[[], bool] | None = None) -> Path:
    """Save a pruned model of ours in the project's checkpoint format (``core.load_model`` reads it)."""
    if not is_staged(model) or not hasattr(model, "meta"):
        raise ValueError("checkpoints hold our own models (lenet5, vgg16); export a pruned torchvision "
                         "model as ONNX instead")
    return atomic_write(path, lambda tmp: save_checkpoint(model, tmp), cancel)


def onnx_bytes(model: nn.Module) -> bytes:
    """The model as ONNX (opset 17, dynamic batch), exported from a CPU copy in eval mode."""
    model = copy.deepcopy(model).cpu().eval()
    example = torch.zeros(1, *input_shape(model))
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated in favour of dynamo (needs onnxscript)
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    return buffer.getvalue()


def onnx_session(source: bytes | str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session (``threads``: intra-op threads; None = onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    payload = source if isinstance(source, bytes) else str(source)
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def verify_onnx(model: nn.Module, source: bytes | str | os.PathLike, images: torch.Tensor,
                tolerance: float = 1e-4) -> float:
    """Largest |logit difference| between onnxruntime and PyTorch on ``images``; raises above ``tolerance``."""
    with torch.no_grad():
        expected = copy.deepcopy(model).cpu().eval()(images.cpu().float()).numpy()
    got = onnx_session(source).run(None, {"images": images.cpu().float().numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if not diff <= tolerance:
        raise ValueError(f"the ONNX export differs from the PyTorch model by {diff:.2e} (> {tolerance:g})")
    return diff


def export_onnx(model: nn.Module, path: str | os.PathLike, images: torch.Tensor | None = None,
                tolerance: float = 1e-4, cancel: Callable[[], bool] | None = None) -> tuple[Path, float]:
    """Write ONNX atomically after checking it with onnxruntime on ``images`` (default: 8 random
    inputs); returns (path, largest logit difference)."""
    data = onnx_bytes(model)
    if images is None:
        images = torch.rand(8, *input_shape(model), generator=torch.Generator().manual_seed(0))
    diff = verify_onnx(model, data, images, tolerance)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), cancel), diff


__all__ = ["atomic_write", "with_lineage", "export_checkpoint", "onnx_bytes", "onnx_session", "verify_onnx",
           "export_onnx"]
