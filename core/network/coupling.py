"""Channels coupled across residual adds (torchvision ResNets etc.), via Torch-Pruning's DependencyGraph.

In a ResNet the stem conv and the last conv of every block of a stage write into the same residual
stream: their output channel c is added together, so channel c can only be removed from all of them
at once. Torch-Pruning's dependency graph finds these groups (and every consumer of the channel);
we never track dependencies by hand.

Two promises, both tested on a random-weight ResNet-18:
- ``coupled_groups`` lists the prunable layers whose output channels are coupled. The engine masks
  a unit of one of them in *every* layer of its group (``Engine`` on a non-staged model), so the
  masked network is the same network as the pruned one.
- ``prune_coupled`` removes the units of each group (the union of what its layers ask for) from a
  copy of the model; the original is untouched.
"""
from __future__ import annotations

import copy
from typing import Iterable, Mapping

import torch
from torch import nn

from .models import input_shape, layer_names, mask_point, private_copy as _private_copy


def _graph(model: nn.Module):
    import torch_pruning as tp  # imported on use: only torchvision (non-staged) models need it

    device = next(model.parameters()).device
    example = torch.zeros(1, *input_shape(model), device=device)
    model.eval()  # only ever called on a private copy: tracing registers hooks and runs a forward pass
    with torch.enable_grad():  # the graph is traced through autograd
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    return tp, graph


def _out_handler(tp, module: nn.Module):
    return tp.prune_conv_out_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_out_channels


def _group_items(tp, graph, model: nn.Module, layer: str, names: dict[nn.Module, str]) -> list[tuple[str, str]]:
    """(module name, handler name) of everything that removing one output channel of ``layer`` touches."""
    module = model.get_submodule(layer)
    group = graph.get_pruning_group(module, _out_handler(tp, module), idxs=[0])
    return [(names.get(item.dep.target.module, ""), getattr(item.dep.handler, "__name__", "")) for item in group.items]


def _members(items: list[tuple[str, str]], layer: str, prunable: list[str]) -> list[str]:
    found = []
    for name, handler in items:
        if name in prunable and handler == "prune_out_channels" and name not in found:
            found.append(name)
    return sorted(found, key=prunable.index) if found else [layer]


def analyse(model: nn.Module) -> tuple[list[list[str]], dict[str, str]]:
    """(coupled groups, pre-activation layers) of a torchvision model, from one trace.

    Coupled groups: prunable layers whose output channels must be removed together (only groups of 2+).
    Pre-activation layers: {layer: a BatchNorm} where a layer's channels reach a BatchNorm that is not the
    layer's own (DenseNet: a layer's output is concatenated into the next layers' ``norm1``). Masking
    such a layer zeroes the channel *before* that BatchNorm, which still adds its shift, so the masked
    network is not the pruned one: the engine refuses to mask them."""
    model = _private_copy(model)  # never trace (hooks, a forward pass) on a model others may be using
    tp, graph = _graph(model)
    names = {m: n for n, m in model.named_modules()}
    prunable = list(dict.fromkeys(layer_names(model)))
    groups, seen, faults = [], set(), {}
    for layer in prunable:
        if layer in seen:
            continue
        items = _group_items(tp, graph, model, layer, names)
        members = _members(items, layer, prunable)
        seen.update(members)
        if len(members) > 1:
            groups.append(members)
        own = {names[mask_point(model, m)] for m in members}
        foreign = [name for name, _ in items
                   if isinstance(model.get_submodule(name) if name else None, nn.BatchNorm2d) and name not in own]
        for member in members:
            if foreign:
                faults[member] = foreign[0]
    return groups, faults


def coupled_groups(model: nn.Module) -> list[list[str]]:
    """Groups of prunable layers whose output channels must be removed together (only groups of 2+)."""
    return analyse(model)[0]


def couple_off(off: Mapping[str, Iterable[int]], groups: list[list[str]]) -> dict[str, list[int]]:
    """``off`` extended so every layer of a coupled group has the union of its group's units off."""
    result = {layer: sorted({int(u) for u in units}) for layer, units in off.items()}
    for group in groups:
        union = sorted({u for layer in group for u in result.get(layer, [])})
        if union:
            for layer in group:
                result[layer] = union
    return {layer: units for layer, units in result.items() if units}


def prune_coupled(model: nn.Module, off: Mapping[str, Iterable[int]]) -> nn.Module:
    """A physically pruned copy of a torchvision model: each coupled group loses the union of its units."""
    pruned = _private_copy(model)
    tp, graph = _graph(pruned)
    names = {m: n for n, m in pruned.named_modules()}
    prunable = layer_names(pruned)
    done: set[str] = set()
    requested = {layer: sorted({int(u) for u in units}) for layer, units in off.items() if list(units)}
    for layer in requested:
        if layer not in prunable:
            raise ValueError(f"unknown layer {layer!r}; prunable layers: {', '.join(prunable)}")
    for layer in prunable:
        if layer in done or layer not in requested:
            continue
        members = _members(_group_items(tp, graph, pruned, layer, names), layer, prunable)
        done.update(members)
        units = sorted({u for m in members for u in requested.get(m, [])})
        module = pruned.get_submodule(layer)
        total = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        if any(not 0 <= u < total for u in units):
            raise ValueError(f"{layer} has units 0..{total - 1}; cannot remove {max(units)}")
        if len(units) >= total:
            raise ValueError(f"pruning every unit of {layer} would disconnect the network")
        group = graph.get_pruning_group(module, _out_handler(tp, module), idxs=units)
        group.prune()
    if hasattr(model, "meta"):
        pruned.meta = copy.deepcopy(model.meta)
        pruned.meta.sha256 = ""
        pruned.meta.arch_params = {**pruned.meta.arch_params, "widths": [
            (lambda m: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)(pruned.get_submodule(n))
            for n in prunable]}
    return pruned.eval()
