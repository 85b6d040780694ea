"""Checkpoints: weights plus the metadata the product needs, loaded with ``weights_only=True``.

A checkpoint is a plain dict (tensors, strings, numbers, lists), so PyTorch's safe unpickler
can read it; anything that needs code to load is refused before any of it runs.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .models import ModelMeta, build_model, is_staged

FORMAT = "neuron-ranking-explorer/checkpoint"
ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_CHECKPOINT = ASSETS / "lenet5_digits.pt"


class CheckpointError(Exception):
    """A checkpoint cannot be used; the message says why."""


def _payload(model: nn.Module) -> dict:
    meta: ModelMeta = model.meta
    payload = {"format": FORMAT, "version": 1, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "meta": {k: v for k, v in asdict(meta).items() if k not in ("sha256", "source")}}
    payload["meta"]["input_shape"] = list(meta.input_shape)
    return payload


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write weights + metadata atomically (a half-written file never replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(_payload(model), tmp)
    os.replace(tmp, path)
    return path


def checkpoint_bytes(model: nn.Module) -> bytes:
    """The checkpoint file's bytes, in memory (what Ray workers load the model from)."""
    buffer = io.BytesIO()
    torch.save(_payload(model), buffer)
    return buffer.getvalue()


def load_checkpoint(source: str | os.PathLike | bytes, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a checkpoint file (or its bytes, e.g. an upload) into a model in eval mode.

    Raises CheckpointError with a one-line reason for a corrupt file, a pickle carrying
    code or objects, a file that is not ours, or weights that do not fit their architecture.
    """
    if isinstance(source, (bytes, bytearray)):
        raw, label = bytes(source), "uploaded file"
    else:
        label = str(source)
        try:
            raw = Path(source).read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {label} does not exist") from None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {label}: {exc.strerror}") from None
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; we give our own message
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # name the code it would import (torch's own message is long; protocol-4 pickles stop its reader early)
        culprit = _pickled_global(raw) or (_first_unsupported(str(exc)) if "GLOBAL" in str(exc)
                                           or "Unsupported global" in str(exc) else None)
        if culprit is None:
            raise CheckpointError(f"{label} is not a readable PyTorch checkpoint (corrupt or not a torch file): "
                                  "choose a .pt file saved by `python -m core train` or core.save_checkpoint") from None
        raise CheckpointError(f"refused {label}: it holds Python objects, not just weights, and loading it "
                              f"could run code (it imports {culprit})") from None
    except Exception as exc:  # zip/EOF/runtime errors all mean "not a readable checkpoint"
        # the loader's own words (an IndexError, a zip offset) mean nothing to a user: say what to do
        raise CheckpointError(f"{label} is not a readable PyTorch checkpoint (corrupt or not a torch file): "
                              "choose a .pt file saved by `python -m core train` or core.save_checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{label} is not a Neuron Ranking Explorer checkpoint (no metadata); "
                              f"create one with `python -m core train`")
    try:
        meta_dict = dict(payload["meta"])
        meta = ModelMeta(**{**meta_dict, "input_shape": tuple(meta_dict["input_shape"])})
        state = payload["state_dict"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{label} has incomplete metadata ({exc})") from None
    try:
        model = build_model(meta.arch, meta.arch_params, meta.num_classes, meta.mean, meta.std)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{label}: {exc}") from None
    _check_fits(model, state, meta, label)
    model.load_state_dict(state)
    meta.sha256 = hashlib.sha256(raw).hexdigest()
    meta.source = label
    model.meta = meta
    return model.eval()


def _pickled_global(raw: bytes) -> str | None:
    """The first global (importable code) a pickle names, or None; pickletools only reads, it runs nothing."""
    if raw[:2] == b"PK":  # torch's zip format: the pickle is the archive's data.pkl
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                raw = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        except (zipfile.BadZipFile, StopIteration, OSError):
            return None
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(raw)):
            if opcode.name in ("GLOBAL", "INST"):
                return str(arg).replace(" ", ".")
            if opcode.name == "STACK_GLOBAL":
                return ".".join(strings[-2:])
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:  # a corrupt stream: not a pickle we can judge
        return None
    return None


def _first_unsupported(message: str) -> str:
    for line in message.splitlines():
        if "GLOBAL" in line or "Unsupported global" in line:
            return line.strip().rstrip(".")[:160]
    return "unsupported pickle content"


def _check_fits(model: nn.Module, state: dict, meta: ModelMeta, label: str) -> None:
    """Refuse weights whose names or shapes do not match the declared architecture."""
    expected = model.state_dict()
    arch = f"{meta.arch} {meta.arch_params}"
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        detail = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise CheckpointError(f"{label} does not hold weights for {arch}: {detail} "
                              f"({len(missing)} missing, {len(extra)} unexpected tensors)")
    for key, tensor in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise CheckpointError(f"{label} does not fit {arch}: {key} has shape {shape}, "
                                  f"expected {tuple(tensor.shape)}")


def torchvision_model(name: str, pretrained: bool = True) -> nn.Module:
    """Any torchvision classification model by name; weights need the internet (or a cached copy).

    ``name`` may be spelled as in the app's links: ``torchvision:resnet18`` (as ``resnet18``) and
    ``torchvision:resnet18:random`` (random weights, whatever ``pretrained`` says)."""
    from torchvision import models

    if name.startswith("torchvision:"):
        name, _, weights = name[len("torchvision:"):].partition(":")
        if weights not in ("", "random", "pretrained"):
            raise CheckpointError(f"torchvision:{name}:{weights}: the weights are 'random' or 'pretrained' "
                                  f"(e.g. torchvision:{name}:random)")
        pretrained = pretrained if not weights else weights == "pretrained"
    try:
        builder = models.get_model_builder(name)
    except ValueError:
        raise CheckpointError(f"unknown model {name!r}: not a checkpoint file, not lenet5/vgg16, "
                              f"and not a torchvision classification model") from None
    weights = models.get_model_weights(name).DEFAULT if pretrained else None
    try:
        model = builder(weights=weights)
    except Exception as exc:
        raise CheckpointError(f"could not get the pretrained weights of {name} ({type(exc).__name__}); "
                              f"this needs the internet or the file in {torch.hub.get_dir()}/checkpoints. "
                              f"Or use random weights: pretrained=False (in the app: untick 'Pretrained ImageNet weights')") from None
    categories = weights.meta["categories"] if weights else [str(i) for i in range(1000)]
    size = 299 if name.startswith("inception") else 224
    model.meta = ModelMeta(arch=name, arch_params={"pretrained": pretrained}, input_shape=(3, size, size),
                           class_names=list(categories), mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                           dataset="imagenet" if weights else None, source=f"torchvision:{name}",
                           sha256=f"torchvision:{name}:{pretrained}")
    return _with_normalization(model).eval()


class _Normalized(nn.Module):
    """Puts ImageNet normalization inside a torchvision model, so inputs are in [0, 1]."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        from .models import Normalize
        self.input = Normalize(mean, std)
        self.net = net

    def forward(self, x):
        return self.net(self.input(x))


def _with_normalization(model: nn.Module) -> nn.Module:
    wrapped = _Normalized(model, model.meta.mean, model.meta.std)
    wrapped.meta = model.meta
    return wrapped


def load_model(path_or_name: str | os.PathLike | bytes | None = None, device: str | None = None,
               pretrained: bool = True) -> nn.Module:
    """A model with its ``.meta``: a checkpoint path/bytes, a torchvision name, or the shipped default."""
    from .device import pick_device

    target = pick_device(device)
    if path_or_name is None:
        path_or_name = DEFAULT_CHECKPOINT
    if isinstance(path_or_name, (bytes, bytearray)) or Path(path_or_name).suffix in (".pt", ".pth", ".ckpt") \
            or Path(path_or_name).exists():
        model = load_checkpoint(path_or_name)
    else:
        model = torchvision_model(str(path_or_name), pretrained)
    return model.to(target)


__all__ = ["CheckpointError", "load_model", "load_checkpoint", "save_checkpoint", "checkpoint_bytes", "DEFAULT_CHECKPOINT", "is_staged"]
