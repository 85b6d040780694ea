"""Every coalition of one layer's units in one sweep: the payoff of all 2^N keep masks (exact Shapley,
the exact semivalues and the oracle reference read this one table).

When the layer's consumer is linear in the mask (the engine's fast path, ``Engine._linear_split``), the
consumer's pre-activation of coalition S is bias + sum over c in S of contribution[c]. Splitting the
units into a low block of L units and a high block of N - L, it is A[high part] + B[low part]: B (2^L
patterns) is computed once per image chunk, A by one small matrix product per block of high patterns, and
each coalition then costs one addition per pre-activation element instead of a sum over N channels.
Coalition ``high << L | low`` is row (high, low) of the sweep, so the values come out indexed by bitmask.
The rest of the network (the consumer's tail and the later blocks) runs as in ``evaluate_masks``."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOW_BITS = 6  # 64 low patterns per block
BLOCK_ELEMENTS = 2 ** 19  # pre-activation floats per (highs x lows x images) block: stays in cache (2^19-2^22 measured)


@torch.no_grad()
def all_coalition_values(engine, layer: str, kind: str = "accuracy", progress=None,
                         first: int | None = None) -> np.ndarray | None:
    """Payoff (accuracy, or minus the mean loss) of all 2^N coalitions, indexed by bitmask (bit j = unit j
    on), or None when the layer has no linear fast path (the caller then uses ``evaluate_masks``).
    ``first``: only the coalitions 0 .. first - 1 (rounded up to whole blocks of low patterns; benchmarks)."""
    units = engine.units(layer)
    if not engine.staged:
        return None
    engine.activations(layer)
    linear = engine._linear_split(layer)
    if linear is None:
        return None
    contrib, bias, tail, resume = linear
    low = min(LOW_BITS, units)
    high = units - low
    n_images = contrib.shape[0]
    per_pre = contrib[0, 0].numel()  # pre-activation elements per image and coalition
    lows = _bits(torch.arange(2 ** low, device=contrib.device), low).to(contrib.dtype)  # (2^L, L)
    highs_all = 2 ** high if first is None else min(2 ** high, -(-first // 2 ** low))
    images = max(1, min(n_images, BLOCK_ELEMENTS // (2 ** low * per_pre)))
    high_block = max(1, min(highs_all, BLOCK_ELEMENTS // (2 ** low * images * per_pre)))
    totals = torch.zeros(highs_all, 2 ** low, dtype=torch.float64, device=contrib.device)
    labels = engine._labels
    steps = -(-n_images // images) * -(-highs_all // high_block)
    done = 0
    modules = _flat([tail, *(block for _, block in engine._children[resume:])])
    buffer = torch.empty(high_block * 2 ** low * images * per_pre, dtype=contrib.dtype, device=contrib.device)
    for lo in range(0, n_images, images):
        part = contrib[lo:lo + images]  # (n, C, *out)
        flat = part.transpose(0, 1).reshape(units, -1)  # (C, n * out)
        low_sum = (lows @ flat[:low]).view(2 ** low, -1)  # (2^L, n * out)
        target = labels[lo:lo + images]
        for h0 in range(0, highs_all, high_block):
            h = torch.arange(h0, min(highs_all, h0 + high_block), device=contrib.device)
            high_sum = _bits(h, high).to(contrib.dtype) @ flat[low:] if high else torch.zeros(
                len(h), flat.shape[1], dtype=contrib.dtype, device=contrib.device)
            high_sum.view(len(h), len(target), *part.shape[2:]).add_(bias)  # the bias once per high pattern
            pre = buffer[:len(h) * 2 ** low * len(target) * per_pre].view(len(h), 2 ** low, -1)
            torch.add(high_sum[:, None, :], low_sum[None], out=pre)  # into one reused buffer: no allocation
            pre = pre.view(-1, *part.shape[2:])
            logits = _apply(pre, modules).view(len(h), 2 ** low, len(target), -1)
            if kind == "accuracy":
                score = (logits.argmax(-1) == target).sum(-1)
            else:
                score = -(torch.logsumexp(logits, -1) - logits.gather(-1, target.expand(*logits.shape[:2], -1)[
                    ..., None])[..., 0]).sum(-1)
            totals[h0:h0 + len(h)] += score.double()
            done += 1
            if progress:
                progress(done, steps)
    values = totals / n_images
    if kind == "accuracy":  # rounded as evaluate_masks rounds it (a float32 mean), so the two paths agree exactly
        values = values.float().double()
    return values.flatten().cpu().numpy()


def _flat(modules) -> list[nn.Module]:
    """The leaf modules of the network after the consumer's linear part, in order."""
    out = []
    for module in modules:
        out.extend(_flat(module) if isinstance(module, nn.Sequential) else [module])
    return out


def _apply(x: torch.Tensor, modules: list[nn.Module]) -> torch.Tensor:
    """The modules on ``x``, which this sweep owns: ReLUs in place (allocating fresh memory for every block
    made the sweep twice as slow), linear layers as F.linear, anything else as the module itself."""
    for module in modules:
        if isinstance(module, nn.ReLU):
            x = x.relu_()
        elif isinstance(module, nn.Linear):
            x = F.linear(x, module.weight, module.bias)
        else:
            x = module(x)
    return x


def _bits(masks: torch.Tensor, count: int) -> torch.Tensor:
    return (masks[:, None] >> torch.arange(count, device=masks.device)) & 1
