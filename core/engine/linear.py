"""The engine's fast path for a staged layer whose consumer is linear in the mask (``Engine._linear_split``).

When the block after the masked layer starts with a conv or linear layer that reads the masked channels
directly, its pre-activation under a mask is bias + sum over kept channels c of contribution[c]; each
channel's contribution is computed once here and masks combine by one einsum.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def consumer(children: list[tuple[str, nn.Module]], position: int):
    """(conv/linear, the rest of its block, resume index, through a Flatten) for the block at ``position`` of a
    staged model's children (after a Flatten), when it consumes the masked channels directly; else None."""
    flatten = False
    if position < len(children) and isinstance(children[position][1], nn.Flatten):
        flatten, position = True, position + 1
    if position >= len(children):
        return None
    block = children[position][1]
    modules = list(block) if isinstance(block, nn.Sequential) else [block]
    if not isinstance(modules[0], (nn.Conv2d, nn.Linear)) or getattr(modules[0], "groups", 1) != 1:
        return None
    tail = nn.Sequential(*modules[1:])
    return modules[0], tail, position + 1, flatten


@torch.no_grad()
def consumer_out_numel(module: nn.Module, one: torch.Tensor, flatten: bool) -> int:
    """Elements of the consumer's output for one image (sizes the contribution cache)."""
    return module(one.flatten(1) if flatten else one)[0].numel()


@torch.no_grad()
def channel_contributions(module: nn.Module, acts: torch.Tensor, flatten: bool) -> torch.Tensor:
    """What each input channel adds to the consumer's pre-activation, per image: (N, C, *out)."""
    n, c = acts.shape[:2]
    if isinstance(module, nn.Conv2d):
        # Grouped conv: group i convolves input channel i with that channel's slice of every filter.
        weight = module.weight.transpose(0, 1).reshape(c * module.out_channels, 1, *module.kernel_size)
        out = F.conv2d(acts, weight, None, module.stride, module.padding, module.dilation, groups=c)
        return out.view(n, c, module.out_channels, *out.shape[2:])
    if flatten:  # (N, C, S) x (out, C, S) -> (N, C, out)
        return torch.einsum("ncs,ocs->nco", acts.flatten(2), module.weight.view(module.out_features, c, -1))
    return acts.unsqueeze(2) * module.weight.t().unsqueeze(0)  # (N, C, out)
