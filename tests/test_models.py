"""Architectures and their prunable layers: names, unit counts, parameters and FLOPs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import core
from core.network.models import ModelMeta, layer_names, lenet5, mask_point, unit_count, vgg16, weight_module


def with_meta(model: nn.Module, shape: tuple[int, int, int]) -> nn.Module:
    model.meta = ModelMeta("x", {}, shape, [str(i) for i in range(10)], [0.5], [0.5])
    return model


def test_lenet5_layers_params_and_flops(model):
    layers = core.prunable_layers(model)
    assert [(l.name, l.kind, l.units) for l in layers] == [("conv1", "conv", 10), ("conv2", "conv", 20),
                                                           ("fc1", "fc", 100), ("fc2", "fc", 25)]
    # conv1: 1->10 k5 on 28x28 -> 24x24; conv2: 10->20 k5 on 12x12 -> 8x8; fc1 320->100; fc2 100->25
    assert [l.params for l in layers] == [260, 5020, 32100, 2525]
    assert [l.flops for l in layers] == [24 * 24 * 10 * 25, 8 * 8 * 20 * 250, 32000, 2500]


def test_lenet5_totals(model):
    totals = core.model_totals(model)
    assert totals["params"] == 260 + 5020 + 32100 + 2525 + 260  # fc3 25->10 included; buffers are not params
    assert totals["flops"] == 144000 + 320000 + 32000 + 2500 + 250


def test_lenet5_custom_widths():
    net = with_meta(lenet5((4, 6, 30, 12)), (1, 28, 28))
    assert [l.units for l in core.prunable_layers(net)] == [4, 6, 30, 12]
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_vgg16_full_width_layers():
    net = with_meta(vgg16(), (3, 32, 32))
    layers = core.prunable_layers(net)
    assert [l.name for l in layers] == [f"conv{i}" for i in range(1, 14)] + ["fc1"]
    assert [l.units for l in layers] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512]
    assert layers[12].flops == 2 * 2 * 512 * 512 * 9  # conv13 runs on 2x2 maps
    assert layers[0].params == 3 * 64 * 9 + 64 + 2 * 64  # conv + bias + BN affine
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 13
    assert net.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_vgg16_width_mult_and_explicit_widths():
    small = vgg16(width_mult=0.125)
    assert [unit_count(small, n) for n in layer_names(small)] == [8, 8, 16, 16, 32, 32, 32] + [64] * 7
    widths = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    custom = vgg16(widths=widths)
    assert [unit_count(custom, n) for n in layer_names(custom)] == widths
    assert custom.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_weight_module_and_mask_point(model):
    assert weight_module(model, "conv2") is model.conv2[0]
    assert mask_point(model, "conv2") is model.conv2  # after pool and ReLU: where the channel leaves
    net = vgg16(width_mult=0.125)
    assert isinstance(weight_module(net, "conv5"), nn.Conv2d)
    assert mask_point(net, "conv5") is net.conv5  # after BN: masking equals removal


def test_build_model_refuses_unknown_architecture():
    from core.network.models import build_model

    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_model("resnet", {}, 10, [0.5], [0.5])
