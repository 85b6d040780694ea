"""Physical pruning: a smaller model with the units removed (staged models).

The engine's masks and this give the same outputs; the tests hold them to that.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..engine import Off
from ..network.models import is_staged, layer_names, unit_count


def prune_model(model: nn.Module, off: Off) -> nn.Module:
    """A copy of ``model`` with the ``off`` units physically removed; the original is untouched."""
    if not is_staged(model):
        raise ValueError("physical pruning supports our own models (lenet5, vgg16)")
    pruned = copy.deepcopy(model)
    children = list(pruned.named_children())
    names = [n for n, _ in children]
    for layer in layer_names(pruned):
        drop = set(int(i) for i in off.get(layer, ()))
        if not drop:
            continue
        units = unit_count(pruned, layer)
        keep = torch.tensor([i for i in range(units) if i not in drop], dtype=torch.long)
        if len(keep) == 0:
            raise ValueError(f"pruning every unit of {layer} would disconnect the network")
        block = pruned.get_submodule(layer)
        for module in block.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _slice_out(module, keep)
            elif isinstance(module, nn.BatchNorm2d):
                _slice_bn(module, keep)
        _slice_consumer(children[names.index(layer) + 1:], keep, units)
    if hasattr(model, "meta"):
        pruned.meta = copy.deepcopy(model.meta)
        pruned.meta.arch_params = {**pruned.meta.arch_params,
                                   "widths": [unit_count(pruned, n) for n in layer_names(pruned)]}
        pruned.meta.sha256 = ""
    return pruned


def _slice_out(module: nn.Module, keep: torch.Tensor) -> None:
    module.weight = nn.Parameter(module.weight.data[keep].clone())
    if module.bias is not None:
        module.bias = nn.Parameter(module.bias.data[keep].clone())
    if isinstance(module, nn.Conv2d):
        module.out_channels = len(keep)
    else:
        module.out_features = len(keep)


def _slice_bn(module: nn.BatchNorm2d, keep: torch.Tensor) -> None:
    module.num_features = len(keep)
    module.weight = nn.Parameter(module.weight.data[keep].clone())
    module.bias = nn.Parameter(module.bias.data[keep].clone())
    module.running_mean = module.running_mean[keep].clone()
    module.running_var = module.running_var[keep].clone()


def _slice_consumer(following: list[tuple[str, nn.Module]], keep: torch.Tensor, units: int) -> None:
    """Drop the removed channels from the input side of the next conv/linear."""
    for _, block in following:
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                module.weight = nn.Parameter(module.weight.data[:, keep].clone())
                module.in_channels = len(keep)
                return
            if isinstance(module, nn.Linear):
                out = module.out_features
                spatial = module.in_features // units  # > 1 when a Flatten of a conv output feeds it
                weight = module.weight.data.view(out, units, spatial)[:, keep].reshape(out, -1)
                module.weight = nn.Parameter(weight.clone())
                module.in_features = weight.shape[1]
                return
