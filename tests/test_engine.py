"""The masking + evaluation engine: a unit turned off equals the unit physically removed,
batched masks equal the same masks one at a time, and masks never touch the model."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import core
import core.engine
from core.network.checkpoint import torchvision_model
from core.data import DataSplit
from core.engine import Engine
from core.network.models import unit_count, vgg16
from core.pruning.prune import prune_model

LENET_LAYERS = ["conv1", "conv2", "fc1", "fc2"]


def as_double(model: nn.Module, data: DataSplit) -> tuple[nn.Module, DataSplit]:
    """A float64 copy: removal and masking then agree to ~1e-12, so 1e-6 is a real bound."""
    return (copy.deepcopy(model).double(),
            DataSplit(data.name, data.split, data.images.double(), data.labels, data.class_names))


def random_off(units: int, rng: np.random.Generator) -> list[int]:
    """A random non-empty, non-total set of units to turn off."""
    count = int(rng.integers(1, units))
    return sorted(rng.choice(units, size=count, replace=False).tolist())


def pruned_logits(model: nn.Module, off: dict, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return prune_model(model, off)(images)


def randomize_batchnorm(model: nn.Module, images: torch.Tensor, seed: int) -> None:
    """Random BN affine parameters, running stats measured on ``images`` (so signals neither die nor
    explode through many layers); the BN means are far from 0, so BN(0) = beta - gamma*mean/std != 0."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.6 - 0.1)
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass sets the statistics of these images
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()
    for m in bns:
        m.momentum = 0.1


@pytest.fixture(scope="module")
def lenet64(model, digits_val):
    return as_double(model, digits_val.subset(150))


@pytest.fixture(scope="module")
def bn_vgg():
    """vgg16(width_mult=0.125) (8..64 filters) in float64 with randomized BatchNorm, on 16 random images."""
    torch.manual_seed(0)
    net = vgg16(width_mult=0.125).double()
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    randomize_batchnorm(net, images, seed=1)
    with torch.no_grad():  # labels = the full network's answers, so accuracy starts at 1 and masks lower it
        labels = net(images).argmax(1)
    return net, DataSplit("random", "val", images, labels, [str(i) for i in range(10)])


# --- (1) masking == physical removal -----------------------------------------------------------

@pytest.mark.parametrize("layer", LENET_LAYERS)
def test_lenet_masked_logits_equal_pruned_network(lenet64, layer):
    net, data = lenet64
    engine = Engine(net, data)
    full = engine.logits()
    rng = np.random.default_rng(LENET_LAYERS.index(layer))
    for _ in range(3):
        off = {layer: random_off(engine.units(layer), rng)}
        pruned = prune_model(net, off)
        assert unit_count(pruned, layer) == engine.units(layer) - len(off[layer])
        masked = engine.logits(off)
        with torch.no_grad():
            removed = pruned(data.images)
        torch.testing.assert_close(masked, removed, atol=1e-6, rtol=0)
        assert (masked - full).abs().max() > 1e-3  # the mask really changed the network
        assert engine.evaluate(off).accuracy == Engine(pruned, data).evaluate().accuracy


def test_lenet_several_layers_masked_at_once_equal_pruned(lenet64):
    net, data = lenet64
    engine = Engine(net, data)
    rng = np.random.default_rng(7)
    for _ in range(3):
        off = {layer: random_off(engine.units(layer), rng) for layer in LENET_LAYERS}
        masked = engine.logits(off)
        torch.testing.assert_close(masked, pruned_logits(net, off, data.images), atol=1e-6, rtol=0)
        assert engine.evaluate(off).accuracy == Engine(prune_model(net, off), data).evaluate().accuracy


def test_shipped_float32_lenet_masked_accuracy_equals_pruned(model, digits_val):
    """What the app shows: accuracies of the float32 shipped model agree exactly."""
    engine = Engine(model, digits_val)
    rng = np.random.default_rng(3)
    for layer in LENET_LAYERS:
        off = {layer: random_off(engine.units(layer), rng)}
        masked, removed = engine.evaluate(off), Engine(prune_model(model, off), digits_val).evaluate()
        assert masked.accuracy == removed.accuracy
        np.testing.assert_array_equal(masked.confusion, removed.confusion)
        scale = engine.logits().abs().max()
        torch.testing.assert_close(engine.logits(off), pruned_logits(model, off, digits_val.images),
                                   atol=1e-6 * float(scale), rtol=0)


@pytest.mark.parametrize("layer", ["conv1", "conv7", "conv13", "fc1"])
def test_bn_vgg_masked_equals_pruned(bn_vgg, layer):
    net, data = bn_vgg
    engine = Engine(net, data)
    rng = np.random.default_rng(int(layer[-1]))
    for _ in range(2):
        off = {layer: random_off(engine.units(layer), rng)}
        masked = engine.logits(off)
        torch.testing.assert_close(masked, pruned_logits(net, off, data.images), atol=1e-6, rtol=0)
        assert (masked - engine.logits()).abs().max() > 1e-3


def test_bn_vgg_several_layers_at_once(bn_vgg):
    net, data = bn_vgg
    engine = Engine(net, data)
    rng = np.random.default_rng(11)
    off = {layer: random_off(engine.units(layer), rng) for layer in ("conv2", "conv6", "conv13", "fc1")}
    torch.testing.assert_close(engine.logits(off), pruned_logits(net, off, data.images), atol=1e-6, rtol=0)
    assert engine.evaluate(off).accuracy == Engine(prune_model(net, off), data).evaluate().accuracy


def test_zeroing_conv_weights_is_not_removal_under_batchnorm(bn_vgg):
    """Why the engine masks after BN: BN(0) = beta - gamma * mean / std, not 0."""
    net, data = bn_vgg
    layer = "conv5"
    naive = copy.deepcopy(net)
    conv, bn = naive.get_submodule(layer)[:2]
    bn_of_zero = bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
    off = torch.nonzero(bn_of_zero > 0.05).flatten()[:4].tolist()
    assert len(off) == 4
    with torch.no_grad():
        conv.weight[off] = 0
        conv.bias[off] = 0
        block_out = naive[: list(naive._modules).index(layer) + 1](data.images)
        naive_logits = naive(data.images)
    # the "zeroed" channels still carry the constant ReLU(BN(0)) = BN(0) > 0 into the next layer
    expected = bn_of_zero[off].detach().view(1, -1, 1, 1).expand_as(block_out[:, off])
    torch.testing.assert_close(block_out[:, off], expected)
    removed = pruned_logits(net, {layer: off}, data.images)
    assert (naive_logits - removed).abs().max() > 1e-2
    torch.testing.assert_close(Engine(net, data).logits({layer: off}), removed, atol=1e-6, rtol=0)


# --- (2) K masks batched == one at a time --------------------------------------------------------

def keep_matrix(units: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    keep = (torch.rand(k, units, generator=g) < 0.6).float()
    keep[0] = 1  # the full layer
    keep[1] = 0  # every unit off
    return keep


def one_at_a_time(engine: Engine, layer: str, keep: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    results = [engine.evaluate({layer: torch.nonzero(row == 0).flatten().tolist()}) for row in keep]
    return np.array([r.accuracy for r in results]), np.array([r.loss for r in results])


@pytest.mark.parametrize("path", ["linear", "generic"])
@pytest.mark.parametrize("layer", LENET_LAYERS)
def test_lenet_batched_masks_equal_one_at_a_time(model, digits_val, monkeypatch, layer, path):
    if path == "generic":
        monkeypatch.setattr(core.engine.masking, "_LINEAR_CACHE_BYTES", 0)
    engine = Engine(model, digits_val)
    keep = keep_matrix(engine.units(layer), 8, seed=len(layer))
    batched = engine.evaluate_masks(layer, keep)
    assert (engine._linear[layer] is not None) == (path == "linear")  # the path under test was taken
    accuracy, loss = one_at_a_time(Engine(model, digits_val), layer, keep)
    np.testing.assert_array_equal(batched.accuracy, accuracy)
    np.testing.assert_allclose(batched.loss, loss, rtol=1e-5)
    assert len(set(batched.accuracy.tolist())) > 2  # masks differ, and so do their accuracies


@pytest.mark.parametrize("path", ["linear", "generic"])
@pytest.mark.parametrize("layer", ["conv4", "conv13"])
def test_bn_vgg_batched_masks_equal_one_at_a_time(bn_vgg, monkeypatch, layer, path):
    net, data = bn_vgg
    if path == "generic":
        monkeypatch.setattr(core.engine.masking, "_LINEAR_CACHE_BYTES", 0)
    engine = Engine(net, data)
    keep = keep_matrix(engine.units(layer), 6, seed=5)
    batched = engine.evaluate_masks(layer, keep)
    assert (engine._linear[layer] is not None) == (path == "linear")
    accuracy, loss = one_at_a_time(Engine(net, data), layer, keep)
    np.testing.assert_array_equal(batched.accuracy, accuracy)
    np.testing.assert_allclose(batched.loss, loss, rtol=1e-9)


def test_evaluate_masks_rejects_wrong_width(model, digits_val):
    engine = Engine(model, digits_val)
    with pytest.raises(ValueError, match="conv2 has 20 units, masks have 7"):
        engine.evaluate_masks("conv2", torch.ones(3, 7))


# --- results and bad input -------------------------------------------------------------------------

def test_eval_result_is_consistent(model, digits_val):
    result = Engine(model, digits_val).evaluate({"conv1": [0, 1, 2]})
    assert result.n == len(digits_val) == result.confusion.sum()
    assert result.accuracy == pytest.approx(np.trace(result.confusion) / result.n)
    np.testing.assert_allclose(result.per_class, np.diag(result.confusion) / result.confusion.sum(1))
    assert result.accuracy == pytest.approx((result.predictions == digits_val.labels.numpy()).mean())
    assert core.evaluate(model, digits_val, {"conv1": [0, 1, 2]}).accuracy == result.accuracy


def test_shipped_model_is_accurate_and_a_mask_hurts_it(model, digits_test):
    engine = Engine(model, digits_test)
    full = engine.evaluate().accuracy
    assert full >= 0.97
    assert engine.evaluate({"conv1": list(range(8))}).accuracy < full - 0.1


@pytest.mark.parametrize("off, message", [({"conv2": [20]}, "unit 20 does not exist: the layer has units 0..19"),
                                          ({"conv2": [-1]}, "unit -1 does not exist"),
                                          ({"conv9": [0]}, "unknown layer 'conv9'; prunable layers: conv1")])
def test_bad_masks_are_refused_with_a_message(model, digits_val, off, message):
    with pytest.raises(ValueError, match=message):
        Engine(model, digits_val).evaluate(off)


def test_gated_logits_match_masks_and_are_differentiable(model, digits_val):
    engine = Engine(model, digits_val)
    gate = torch.ones(20, requires_grad=True)
    index = torch.arange(50)
    logits = engine.gated_logits("conv2", gate, index)
    torch.testing.assert_close(logits.detach(), engine.logits()[:50])
    logits.sum().backward()
    assert gate.grad is not None and gate.grad.abs().sum() > 0
    off_gate = torch.ones(20)
    off_gate[[1, 4]] = 0
    torch.testing.assert_close(engine.gated_logits("conv2", off_gate), engine.logits({"conv2": [1, 4]}),
                               atol=1e-5, rtol=1e-5)


# --- (3) masks never mutate the model -------------------------------------------------------------

def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_masks_never_mutate_the_model(model, digits_val):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = Engine(model, digits_val)
    baseline = engine.evaluate()
    rng = np.random.default_rng(0)
    for _ in range(5):
        for layer in LENET_LAYERS:
            engine.evaluate({layer: random_off(engine.units(layer), rng)})
            engine.evaluate_masks(layer, keep_matrix(engine.units(layer), 4, seed=1))
    engine.evaluate({layer: random_off(engine.units(layer), rng) for layer in LENET_LAYERS})
    engine.gated_logits("fc1", torch.zeros(100, requires_grad=True)).sum().backward()
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert no_hooks(model)
    again = Engine(model, digits_val).evaluate()
    assert again.accuracy == baseline.accuracy
    np.testing.assert_array_equal(again.predictions, baseline.predictions)


# --- any torchvision model: the hooked path ----------------------------------------------------------

@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    net = torchvision_model("resnet18", pretrained=False)
    images = torch.rand(2, *net.meta.input_shape, generator=torch.Generator().manual_seed(4))
    randomize_batchnorm(net, images, seed=3)
    data = DataSplit("random", "val", images, torch.tensor([3, 7]), [str(i) for i in range(1000)])
    return net, data


def test_torchvision_model_loads_with_metadata(resnet):
    net, _ = resnet
    assert not core.network.models.is_staged(net)
    assert net.meta.input_shape == (3, 224, 224) and net.meta.num_classes == 1000
    assert net.meta.arch == "resnet18" and not net.training
    layers = [layer.name for layer in core.prunable_layers(net)]
    assert layers[0] == "net.conv1" and "net.layer4.1.conv2" in layers and "net.fc" not in layers
    assert core.prunable_layers(net)[0].units == 64


def test_unknown_torchvision_name_is_refused():
    with pytest.raises(core.CheckpointError, match="unknown model 'no_such_net'"):
        core.load_model("no_such_net")


@pytest.mark.parametrize("layer, consumer", [("net.conv1", "net.layer1.0.conv1"),
                                             ("net.layer1.0.conv1", "net.layer1.0.conv2")])
def test_torchvision_masks_zero_the_channel_after_batchnorm(resnet, layer, consumer):
    net, data = resnet
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []
    handle = net.get_submodule(consumer).register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    try:
        engine = Engine(net, data)
        full = engine.logits()
        off = [0, 5, 17, 40]
        masked = engine.logits({layer: off})
    finally:
        handle.remove()
    full_input, masked_input = seen
    on = [c for c in range(64) if c not in off]
    assert full_input[:, off].abs().amax() > 1e-2  # BN(0) != 0 here, so this is not trivially zero
    assert masked_input[:, off].abs().amax() == 0  # turned-off channels are exactly zero after BN + ReLU
    assert masked_input[:, on].abs().amax() > 0
    assert (masked - full).abs().max() > 1e-4  # turning units off changes the outputs
    batched = engine.evaluate_masks(layer, torch.stack([torch.ones(64), torch.ones(64).index_fill(0, torch.tensor(off), 0)]))
    one = [engine.evaluate(), engine.evaluate({layer: off})]
    np.testing.assert_allclose(batched.loss, [r.loss for r in one], rtol=1e-6)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert no_hooks(net)


def test_engine_evaluates_in_eval_mode_and_leaves_a_train_mode_model_as_it_was(bn_vgg):
    """A notebook user's model in train mode (BatchNorm batch statistics) is evaluated as in eval mode and
    is still in train mode afterwards, with its running statistics untouched."""
    net, data = bn_vgg
    expected = Engine(net, data).evaluate_masks("conv5", np.eye(net.conv5[0].out_channels)[:3])
    training = copy.deepcopy(net).train()
    training.conv3.eval()  # a module the user froze stays frozen
    stats = {k: v.clone() for k, v in training.state_dict().items()}
    engine = Engine(training, data)
    got = engine.evaluate_masks("conv5", np.eye(net.conv5[0].out_channels)[:3])
    np.testing.assert_allclose(got.accuracy, expected.accuracy)
    np.testing.assert_allclose(got.loss, expected.loss, rtol=1e-9)
    assert engine.evaluate().accuracy == Engine(net, data).evaluate().accuracy
    assert training.training and not training.conv3.training and training.conv5.training
    assert all(torch.equal(v, stats[k]) for k, v in training.state_dict().items())
