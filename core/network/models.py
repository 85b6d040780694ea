"""Model architectures and the notion of a *prunable layer*.

Our own models (LeNet-5, VGG-16) are *staged*: an ``nn.Sequential`` of named blocks where
each prunable block ends after its nonlinearity. A unit's "off" switch is applied to the
block's output, i.e. where the channel enters the rest of the network, so that turning a
unit off equals physically removing it even with BatchNorm (DESIGN.md section 3).

Any torchvision classifier can be loaded by name too; there a unit is switched off at the
output of the BatchNorm that follows its conv (or the conv/linear itself when none does).
"""
from __future__ import annotations

import copy
import hashlib

from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import nn


LENET5_WIDTHS = (10, 20, 100, 25)
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class Normalize(nn.Module):
    """Input normalization inside the model, so every API takes images in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass
class ModelMeta:
    """What the product needs to know about a model besides its weights."""

    arch: str
    arch_params: dict
    input_shape: tuple[int, int, int]
    class_names: list[str]
    mean: list[float]
    std: list[float]
    dataset: str | None = None
    accuracy: dict = field(default_factory=dict)
    source: str = ""
    sha256: str = ""  # content hash of the checkpoint file; keys on-disk caches
    lineage: dict = field(default_factory=dict)  # how it was made from a parent (compression: plan, recipe, ...)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class LayerInfo:
    """One prunable layer: ``units`` conv filters or fc neurons."""

    name: str
    kind: str  # "conv" or "fc"
    units: int
    params: int
    flops: int  # multiply-accumulates for one input image


def lenet5(widths: Sequence[int] = LENET5_WIDTHS, in_channels: int = 1, num_classes: int = 10,
           mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)) -> nn.Sequential:
    """Paper A's LeNet-5: conv k5 -> maxpool 2 -> ReLU (x2), then fc, fc, fc. Input 28x28."""
    c1, c2, f1, f2 = widths
    return nn.Sequential(
        OrderedDict(
            input=Normalize(mean, std),
            conv1=nn.Sequential(nn.Conv2d(in_channels, c1, 5), nn.MaxPool2d(2), nn.ReLU()),
            conv2=nn.Sequential(nn.Conv2d(c1, c2, 5), nn.MaxPool2d(2), nn.ReLU()),
            flatten=nn.Flatten(),
            fc1=nn.Sequential(nn.Linear(c2 * 4 * 4, f1), nn.ReLU()),
            fc2=nn.Sequential(nn.Linear(f1, f2), nn.ReLU()),
            fc3=nn.Linear(f2, num_classes),
        )
    )


def vgg16(width_mult: float = 1.0, num_classes: int = 10, in_channels: int = 3,
          mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
          std: Sequence[float] = (0.2470, 0.2435, 0.2616),
          widths: Sequence[int] | None = None, hidden_layers: int = 1) -> nn.Sequential:
    """VGG-16 for 32x32 inputs: 13 conv-BN-ReLU blocks, then ``hidden_layers`` hidden FC 512 layers.

    ``hidden_layers=1``: FC 512 -> 512 -> classes (14 prunable widths); ``hidden_layers=2``: paper A's
    classifier, FC 512 -> 512 -> 512 -> classes (13 conv + 2 FC = its 15-width strings).
    ``width_mult`` scales every layer (tests use small ones); ``widths`` (13 conv + hidden) gives
    each layer its own width, as after pruning."""
    if hidden_layers not in (1, 2):
        raise ValueError(f"vgg16 has 1 or 2 hidden FC layers (got {hidden_layers})")
    widths = list(widths) if widths else [max(1, int(round(w * width_mult))) for w in VGG16_CFG if w != "M"] \
        + [max(1, int(round(512 * width_mult)))] * hidden_layers
    if len(widths) != 13 + hidden_layers:
        raise ValueError(f"vgg16 with {hidden_layers} hidden FC layer(s) takes {13 + hidden_layers} widths, "
                         f"got {len(widths)}")
    blocks: dict[str, nn.Module] = {"input": Normalize(mean, std)}
    channels, index = in_channels, 0
    for item in VGG16_CFG:
        if item == "M":  # the pool joins the preceding block: it commutes with the unit mask
            last = blocks[f"conv{index}"]
            last.append(nn.MaxPool2d(2))
            continue
        width = widths[index]
        index += 1
        blocks[f"conv{index}"] = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1),
                                               nn.BatchNorm2d(width), nn.ReLU())
        channels = width
    blocks["flatten"] = nn.Flatten()
    for i, hidden in enumerate(widths[13:], 1):
        blocks[f"fc{i}"] = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU())
        channels = hidden
    blocks[f"fc{hidden_layers + 1}"] = nn.Linear(channels, num_classes)
    return nn.Sequential(OrderedDict(blocks))


def build_model(arch: str, arch_params: dict, num_classes: int, mean: Sequence[float],
                std: Sequence[float]) -> nn.Sequential:
    """Instantiate one of our own architectures from checkpoint metadata."""
    if arch == "lenet5":
        return lenet5(tuple(arch_params.get("widths", LENET5_WIDTHS)),
                      arch_params.get("in_channels", 1), num_classes, mean, std)
    if arch == "vgg16":
        return vgg16(float(arch_params.get("width_mult", 1.0)), num_classes,
                     arch_params.get("in_channels", 3), mean, std, arch_params.get("widths"),
                     int(arch_params.get("hidden_layers", 1)))
    raise ValueError(f"unknown architecture {arch!r}; known: lenet5, vgg16, or a torchvision model name")


# --- prunable layers -----------------------------------------------------------------------

def is_staged(model: nn.Module) -> bool:
    """Our own models: a Sequential of named blocks, with the input normalization first."""
    return isinstance(model, nn.Sequential) and "input" in model._modules


def _weight_module(block: nn.Module) -> nn.Module:
    """The conv/linear whose output units a block exposes."""
    if isinstance(block, (nn.Conv2d, nn.Linear)):
        return block
    return next(m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def layer_names(model: nn.Module) -> list[str]:
    """Names of the prunable layers, in forward order (the classifier output is not prunable)."""
    if is_staged(model):
        names = [n for n, b in model.named_children()
                 if isinstance(b, nn.Sequential) and any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in b.modules())]
        return names
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return names[:-1]


def weight_module(model: nn.Module, layer: str) -> nn.Module:
    """The nn.Conv2d / nn.Linear that holds a layer's filters (one per unit)."""
    return _weight_module(model.get_submodule(layer))


def mask_point(model: nn.Module, layer: str) -> nn.Module:
    """The module whose output carries the layer's units into the rest of the network."""
    if is_staged(model):
        return model.get_submodule(layer)
    # torchvision: the BatchNorm right after the conv in registration order, else the conv.
    modules = list(model.named_modules())
    for i, (name, module) in enumerate(modules):
        if name == layer:
            if i + 1 < len(modules) and isinstance(modules[i + 1][1], nn.BatchNorm2d) \
                    and modules[i + 1][1].num_features == getattr(module, "out_channels", -1):
                return modules[i + 1][1]
            return module
    raise KeyError(layer)


def unit_count(model: nn.Module, layer: str) -> int:
    module = weight_module(model, layer)
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy without the hooks that others may have registered on the original (deepcopy copies them)."""
    copied = copy.deepcopy(model)
    for module in copied.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            hooks = getattr(module, name, None)
            if hooks:
                hooks.clear()
    return copied


def _macs_per_module(original: nn.Module, input_shape: Sequence[int]) -> dict[nn.Module, int]:
    """Multiply-adds of every conv/linear of ``original`` (keys: its modules), counted on a private copy."""
    macs: dict[nn.Module, int] = {}

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs[module] = int(output[0].numel() * per_out)
        else:
            macs[module] = int(module.in_features * module.out_features)

    # a private copy: hooks and a forward pass on a model others may be using (another thread, a
    # partly frozen model whose modules have their own modes) would change what they see
    private = private_copy(original).eval()
    for m in private.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    device = next(private.parameters()).device
    with torch.no_grad():
        private(torch.zeros(1, *input_shape, device=device))
    originals = dict(zip(private.modules(), original.modules()))
    return {originals[m]: n for m, n in macs.items()}


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model takes: its metadata's, else inferred for a freshly built model
    (LeNet-5 28x28, VGG-16 32x32, torchvision 224x224; channels from the first conv)."""
    meta: ModelMeta | None = getattr(model, "meta", None)
    if meta is not None:
        return tuple(meta.input_shape)
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    channels = getattr(first, "in_channels", 1)
    if not is_staged(model):
        return (channels, 224, 224)
    return (channels, 28, 28) if "conv3" not in model._modules else (channels, 32, 32)


def prunable_layers(model: nn.Module) -> list[LayerInfo]:
    """Every prunable layer with its unit count, parameters and FLOPs (multiply-adds per image)."""
    macs = _macs_per_module(model, input_shape(model))
    layers = []
    for name in layer_names(model):
        module = weight_module(model, name)
        scope = model.get_submodule(name) if is_staged(model) else module
        params = sum(p.numel() for p in scope.parameters())
        layers.append(LayerInfo(name, "conv" if isinstance(module, nn.Conv2d) else "fc",
                                unit_count(model, name), params, macs.get(module, 0)))
    return layers


def model_totals(model: nn.Module, shape: Sequence[int] | None = None) -> dict[str, int]:
    """Parameter and FLOP (multiply-add) totals of the whole network, for one image of ``shape``
    (default: the model's input shape, from its metadata or inferred, see ``input_shape``).

    Checked against ``torch.utils.flop_counter.FlopCounterMode`` in the tests (it counts 2 FLOPs
    per multiply-add)."""
    macs = _macs_per_module(model, tuple(shape) if shape else input_shape(model))
    return {"params": sum(p.numel() for p in model.parameters()), "flops": sum(macs.values())}


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Model in eval mode with weights not requiring grad, both restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = [m for m in model.modules() if m.training]  # per module: a partly frozen model keeps its modes
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for module in training:
            module.training = True


def weights_digest(model: nn.Module) -> str:
    """Content hash of every parameter and buffer: a copied-and-edited model never hits a stale entry."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
