"""Gradient methods on a torchvision model through the one engine (issue 21): Taylor, importance switches
and the class contributions γ on a random-weight ResNet-18 (tiny 32x32 images), against autograd by hand
and Captum; a coupled layer is gated in every layer of its group, as masking removes it; the shared model
keeps no .grad, no hook, its modes and flags; AM's own-unit shortcut on such a model is exact."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import core
from core.data import DataSplit
from core.network.models import mask_point
from core.rankings import rank

SINGLE, COUPLED, DOWNSAMPLE = "layer1.0.conv1", "conv1", "layer2.0.downsample.0"


@pytest.fixture(scope="module")
def resnet():
    """A random ResNet-18 with 10 classes and non-trivial BatchNorm statistics (the shared model)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=10).eval()
    generator = torch.Generator().manual_seed(1)
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5, generator=generator)
        bn.running_var.uniform_(0.5, 2.0, generator=generator)
        bn.bias.data.uniform_(-0.5, 0.5, generator=generator)
    return net


@pytest.fixture(scope="module")
def tiny():
    generator = torch.Generator().manual_seed(2)
    return DataSplit("tiny", "val", torch.rand(6, 3, 32, 32, generator=generator), torch.tensor([0, 1, 2, 3, 4, 5]),
                     [str(i) for i in range(10)])


@pytest.fixture(scope="module")
def engine(resnet, tiny):
    return core.Engine(resnet, tiny)


def group_of(engine, layer):
    return next((g for g in engine.coupled_groups() if layer in g), [layer])


def captured_pass(net, points, images):
    """Logits of a private copy with the outputs of ``points`` captured (cloned onward: ResNet's in-place
    ``+=`` and ReLU would otherwise overwrite the captured tensors)."""
    outputs = []
    handles = [p.register_forward_hook(lambda _m, _i, out: (outputs.append(out), out.clone())[1]) for p in points]
    logits = net(images)
    for handle in handles:
        handle.remove()
    return logits, outputs


def taylor_by_hand(net, engine, data, layer):
    """Eq. 7 with the gate on every layer of the group: sum over members and positions of dZ/dA * A, divided by
    the selected layer's map size, |.| per image, mean over images."""
    net = copy.deepcopy(net)
    points = [mask_point(net, m) for m in group_of(engine, layer)]
    logits, outputs = captured_pass(net, points, data.images)
    grads = torch.autograd.grad(F.cross_entropy(logits, data.labels, reduction="sum"), outputs)
    per_image = sum((g * a).flatten(2).sum(2) for g, a in zip(grads, outputs))
    positions = outputs[points.index(mask_point(net, layer))][0, 0].numel()
    return (per_image / positions).abs().mean(0).detach().double().numpy()


def test_the_group_of_a_coupled_layer_is_the_residual_stream(engine):
    assert group_of(engine, COUPLED) == ["conv1", "layer1.0.conv2", "layer1.1.conv2"]
    assert DOWNSAMPLE in group_of(engine, "layer2.0.conv2") and group_of(engine, SINGLE) == [SINGLE]


@pytest.mark.parametrize("layer", [SINGLE, COUPLED, DOWNSAMPLE])
def test_taylor_on_a_resnet_equals_autograd_by_hand(resnet, engine, tiny, layer):
    scores = rank(resnet, tiny, layer, "taylor", engine=engine, cache=False).scores
    expected = taylor_by_hand(resnet, engine, tiny, layer)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-9)
    assert expected.max() > 0
    if layer != SINGLE:  # the group's gradient, not the selected layer's alone
        net = copy.deepcopy(resnet)
        logits, (alone,) = captured_pass(net, [mask_point(net, layer)], tiny.images)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, tiny.labels, reduction="sum"), alone)
        own = (grad * alone).mean((2, 3)).abs().mean(0).detach().double().numpy()
        assert not np.allclose(scores, own, rtol=1e-2)


@pytest.mark.parametrize("layer", [SINGLE, COUPLED])
def test_taylor_on_a_resnet_equals_captum(resnet, engine, tiny, layer):
    from captum.attr import LayerGradientXActivation

    net = copy.deepcopy(resnet)
    points = [mask_point(net, m) for m in group_of(engine, layer)]
    explainer = LayerGradientXActivation(lambda x: F.cross_entropy(net(x), tiny.labels, reduction="none"), points)
    attributions = explainer.attribute(tiny.images)
    attributions = list(attributions) if isinstance(attributions, (list, tuple)) else [attributions]
    positions = attributions[points.index(mask_point(net, layer))][0, 0].numel()
    expected = (sum(a.flatten(2).sum(2) for a in attributions) / positions).abs().mean(0).detach().double().numpy()
    scores = rank(resnet, tiny, layer, "taylor", engine=engine, cache=False).scores
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("definition", ["gate", "paper"])
@pytest.mark.parametrize("layer", [SINGLE, COUPLED])
def test_gamma_on_a_resnet_equals_autograd_by_hand(resnet, engine, tiny, layer, definition):
    """γ[i, j] = mean over images of d P_j / d g_i (gate: sum over members and positions of dP/dA * A; paper:
    of dP/dA, also divided by the positions), one backward per class by hand."""
    gamma = core.class_contributions(resnet, tiny, layer, engine=engine, cache=False, definition=definition,
                                     batch_size=4)  # two batches
    net = copy.deepcopy(resnet)
    points = [mask_point(net, m) for m in group_of(engine, layer)]
    logits, outputs = captured_pass(net, points, tiny.images)
    probability = logits.softmax(-1).sum(0)
    positions = outputs[points.index(mask_point(net, layer))][0, 0].numel()
    expected = np.zeros((64, 10))
    for j in range(10):
        grads = torch.autograd.grad(probability[j], outputs, retain_graph=True)
        if definition == "gate":
            expected[:, j] = sum((g * a).flatten(2).sum(2).sum(0) for g, a in zip(grads, outputs)).detach() / 6
        else:
            expected[:, j] = sum(g.flatten(2).sum(2).sum(0) for g in grads).detach() / (6 * positions)
    np.testing.assert_allclose(gamma, expected, rtol=1e-3, atol=1e-7)
    assert np.abs(expected).max() > 1e-4


def test_gamma_of_a_model_with_more_outputs_than_classes_covers_the_data_classes(resnet, tiny):
    """An ImageNet-sized head on ten classes of data: γ has the data's ten columns, P from all the outputs."""
    wide = copy.deepcopy(resnet)
    wide.fc = nn.Linear(512, 30)
    gamma = core.class_contributions(wide, tiny, SINGLE, cache=False)
    assert gamma.shape == (64, 10) and np.abs(gamma).max() > 0


@pytest.mark.parametrize("layer", [SINGLE, COUPLED, "layer1.0.conv2"])
def test_gate_zero_is_masking_the_unit_in_its_whole_group(engine, layer):
    gate = torch.ones(64)
    gate[[2, 5, 40]] = 0
    with torch.no_grad():
        gated = engine.gated_logits(layer, gate)
    torch.testing.assert_close(gated, engine.logits({layer: [2, 5, 40]}), atol=1e-5, rtol=1e-5)
    assert float((gated - engine.logits()).abs().max()) > 1e-4


def test_the_shared_model_keeps_no_grad_no_hook_its_modes_and_flags(resnet, tiny):
    shared = copy.deepcopy(resnet)
    engine = core.Engine(shared, tiny)
    shared.train()
    shared.layer1.eval()
    modes = [m.training for m in shared.modules()]
    flags = [p.requires_grad for p in shared.parameters()]
    state = {k: v.clone() for k, v in shared.state_dict().items()}
    rank(shared, tiny, COUPLED, "taylor", engine=engine, cache=False)
    rank(shared, tiny, SINGLE, "switches", engine=engine, train=engine, epochs=2, batch_size=4, cache=False)
    core.class_contributions(shared, tiny, COUPLED, engine=engine, cache=False, definition="paper")
    assert all(p.grad is None for p in shared.parameters())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in shared.modules()) == 0
    assert [m.training for m in shared.modules()] == modes
    assert [p.requires_grad for p in shared.parameters()] == flags
    assert all(torch.equal(state[k], v) for k, v in shared.state_dict().items())


def test_switches_train_on_a_resnet_layer(resnet, engine, tiny):
    result = rank(resnet, tiny, COUPLED, "switches", engine=engine, train=engine, epochs=3, batch_size=3, cache=False)
    assert result.scores.shape == (64,) and result.scores.sum() == pytest.approx(1, abs=1e-5)
    assert 0 <= result.extra["switched_accuracy"] <= 1 and len(result.extra["likelihood"]) == 3


def test_the_private_copy_is_rebuilt_when_the_weights_change(resnet, tiny):
    shared = copy.deepcopy(resnet)
    engine = core.Engine(shared, tiny)
    before = rank(shared, tiny, SINGLE, "taylor", engine=engine, cache=False).scores
    with torch.no_grad():
        shared.layer1[0].conv2.weight.mul_(-2)
    after = rank(shared, tiny, SINGLE, "taylor", engine=engine, cache=False).scores
    np.testing.assert_allclose(after, rank(shared, tiny, SINGLE, "taylor", engine=core.Engine(shared, tiny),
                                           cache=False).scores, rtol=1e-6)
    assert not np.allclose(before, after, rtol=1e-3)


def test_unit_shape_and_peaks_come_from_passes_not_a_cache(resnet, tiny):
    shared = copy.deepcopy(resnet)
    with torch.no_grad():  # unit 7 of layer1.0.conv1 silent on every image: its BatchNorm maps it to 0
        shared.layer1[0].bn1.weight[7], shared.layer1[0].bn1.bias[7] = 0.0, 0.0
    engine = core.Engine(shared, tiny)
    private = copy.deepcopy(shared)
    _, (out,) = captured_pass(private, [mask_point(private, SINGLE)], tiny.images)
    assert engine.unit_shape(SINGLE) == tuple(out.shape[1:]) == (64, 8, 8)
    torch.testing.assert_close(engine.unit_peaks(SINGLE), out.detach().abs().amax((0, 2, 3)))
    assert list(core.interpret.similarity.dead_units(engine, SINGLE).nonzero()[0]) == [7]
    with pytest.raises(ValueError, match="prefix cache"):
        engine.activations(SINGLE)  # a generic model's activations are never all kept


def test_a_pre_activation_layer_is_refused_for_gradients_as_for_masking():
    from core.network.checkpoint import torchvision_model

    torch.manual_seed(0)
    model = torchvision_model("densenet121", pretrained=False)
    model.meta.input_shape = (3, 32, 32)
    data = DataSplit("tiny", "val", torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), [str(i) for i in range(10)])
    engine = core.Engine(model, data)
    with pytest.raises(ValueError, match="pre-activation.*not be the pruned one"):
        rank(model, data, "net.features.denseblock1.denselayer1.conv2", "taylor", engine=engine, cache=False)


def test_am_own_unit_shortcut_on_a_resnet_equals_the_full_layer(resnet):
    from core.interpret.am import _GENERIC_OWN, layer_output, own_unit_means, unit_means

    images = torch.rand(5, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    units = torch.tensor([0, 9, 63, 17, 5])
    for layer in ["conv1", SINGLE, "layer2.0.downsample.0", "layer4.1.conv2"]:
        with torch.no_grad():
            full = unit_means(layer_output(resnet, layer, images))[torch.arange(5), units]
            torch.testing.assert_close(own_unit_means(resnet, layer, images, units), full, atol=1e-5, rtol=1e-4)
        assert _GENERIC_OWN[resnet][layer]  # the shortcut was taken


def test_am_falls_back_to_the_full_layer_where_the_conv_does_not_feed_its_batchnorm():
    """A conv registered before a BatchNorm of its width, but its output doubled on the way: the shortcut's check
    sees the difference and AM reads the full layer."""
    from core.interpret.am import _GENERIC_OWN, layer_output, own_unit_means, unit_means

    class Doubling(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4).eval()
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.bn(2 * self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    net = Doubling().eval()
    images, units = torch.rand(3, 3, 12, 12), torch.tensor([1, 3, 0])
    with torch.no_grad():
        full = unit_means(layer_output(net, "conv", images))[torch.arange(3), units]
        torch.testing.assert_close(own_unit_means(net, "conv", images, units), full)
    assert _GENERIC_OWN[net]["conv"] is False


def test_load_model_takes_the_links_spelling():
    model = core.load_model("torchvision:resnet18:random")
    assert model.meta.arch == "resnet18" and model.meta.arch_params == {"pretrained": False}
    with pytest.raises(core.CheckpointError, match="'random' or 'pretrained'"):
        core.load_model("torchvision:resnet18:sometimes")


def test_teaching_players_on_a_resnet_come_from_the_five_highest_taylor_scores(resnet, engine, tiny):
    """Shapley by hand's default players on a torchvision model: Taylor picks 5 candidates (not 64 full passes)."""
    players = core.teaching_players(engine, SINGLE)
    taylor = rank(resnet, tiny, SINGLE, "taylor", engine=engine, cache=False).scores
    candidates = sorted(range(64), key=lambda u: (-taylor[u], u))[:5]
    assert len(players) == 3 and set(players) <= set(candidates)


def test_layer_clusters_take_each_layers_am_size(resnet, engine, tiny):
    """Compress's cluster-aware plan on a torchvision model: each layer's clusters from AM images of its own size."""
    from core.engine import cache

    clusters = core.layer_clusters(resnet, tiny, engine=engine, layers=["conv1", SINGLE], steps=2,
                                   size={"conv1": 32, SINGLE: 48})
    assert set(clusters) == {"conv1", SINGLE} and all(len(c.labels) == 64 for c in clusters.values())
    before = cache.COMPUTED["am"]
    assert core.am_images(resnet, SINGLE, steps=2, size=48).images.shape == (64, 3, 48, 48)
    assert core.am_images(resnet, "conv1", steps=2, size=32).images.shape == (64, 3, 32, 32)
    assert cache.COMPUTED["am"] == before  # both were the ones the clusters used
    with pytest.raises(ValueError, match="at least 32 pixels"):
        core.am_images(resnet, SINGLE, steps=2, size=16)
    with pytest.raises(ValueError, match="takes exactly 28x28"):
        core.am_images(core.load_model(), "conv2", steps=2, size=64)


def test_cli_ranks_a_torchvision_model_by_taylor_on_the_converted_digits(tmp_path, capsys):
    """``--checkpoint torchvision:resnet18:random`` as in a link; the digits converted to 3x224x224 as in the app."""
    import json

    from core.cli import main

    torch.manual_seed(5)  # the random weights the CLI's model draws
    assert main(["rank", "--checkpoint", "torchvision:resnet18:random", "--layer", "net.layer1.0.conv1",
                 "--method", "taylor", "--limit", "4", "--json", str(tmp_path / "out.json"), "--no-cache"]) == 0
    capsys.readouterr()
    scores = json.loads((tmp_path / "out.json").read_text())["scores"]
    torch.manual_seed(5)
    model = core.load_model("torchvision:resnet18:random")
    data = core.load_dataset("digits", "val", input_shape=(3, 224, 224), limit=4)  # rank evaluates on val
    expected = rank(model, data, "net.layer1.0.conv1", "taylor", cache=False).scores
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_two_threads_on_one_engine_each_get_their_own_gradients(resnet, tiny):
    """Two sessions on one shared engine (one private copy): Taylor of two layers at once, each as when alone."""
    import threading

    engine = core.Engine(copy.deepcopy(resnet), tiny)
    layers = [SINGLE, COUPLED]
    alone = {layer: rank(engine.model, tiny, layer, "taylor", engine=engine, cache=False).scores for layer in layers}
    wrong, start = [], threading.Barrier(2)

    def run(layer):
        start.wait()
        for _ in range(15):
            got = rank(engine.model, tiny, layer, "taylor", engine=engine, cache=False).scores
            if not np.allclose(got, alone[layer], rtol=1e-5, atol=1e-12):
                wrong.append(layer)

    threads = [threading.Thread(target=run, args=(layer,)) for layer in layers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


def test_unit_thumbnails_never_run_or_switch_the_shared_model(resnet, tiny):
    """The toggle thumbnails' activations (core.engine.plots.unit_activations) come from the engine's private
    copy in eval mode: the shared model (here in train mode, as another session might hold it) is never run
    and its modes never flipped, and the values equal an eval-mode pass of the layer."""
    from core.network.hooks import module_output

    shared = copy.deepcopy(resnet).train()
    engine = core.Engine(shared, tiny)
    calls = []
    handle = shared.register_forward_pre_hook(lambda module, inputs: calls.append(module.training))
    try:
        acts = core.engine.plots.unit_activations(engine, SINGLE)
    finally:
        handle.remove()
    assert calls == [] and all(m.training for m in shared.modules())
    reference = copy.deepcopy(resnet).eval()
    with torch.no_grad():
        expected = module_output(reference, mask_point(reference, SINGLE), tiny.images)
    assert torch.allclose(acts, expected, atol=1e-5)
