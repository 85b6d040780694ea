"""Two sessions on one shared (cached) model never see each other's activations (issue 21, item 1).

Each test runs two threads on ONE model object with different inputs, many times, and checks that every
call got exactly what it gets alone. Before the hooks were made private to their thread
(``core.network.hooks``), feature maps and AM's layer outputs of a torchvision model picked up the other
thread's activations in a few percent of the calls."""
from __future__ import annotations

import threading

import pytest
import torch

import core
from core.interpret.am import layer_output
from core.network.checkpoint import torchvision_model
from core.rankings import rank
from core.rankings.plots import feature_maps

REPEATS = 300


def race(work, inputs, repeats: int = REPEATS) -> list[tuple[int, object]]:
    """Run ``work(input)`` for each input in its own thread, ``repeats`` times each, all at once;
    returns (which input, result) for every call."""
    results: list[tuple[int, object]] = []
    start = threading.Barrier(len(inputs))
    errors: list[BaseException] = []

    def run(which: int) -> None:
        try:
            start.wait()
            for _ in range(repeats):
                results.append((which, work(inputs[which])))
        except BaseException as exc:  # noqa: BLE001  reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def assert_each_got_its_own(results, expected) -> None:
    wrong = [which for which, got in results if got.shape != expected[which].shape
             or not torch.allclose(got, expected[which], atol=1e-5)]
    assert not wrong, f"{len(wrong)} of {len(results)} calls got another thread's activations"


@pytest.fixture(scope="module")
def resnet():
    return torchvision_model("resnet18", pretrained=False)


def test_feature_maps_of_two_threads_on_one_lenet_are_their_own(model, digits_val):
    inputs = [digits_val.images[:3], digits_val.images[40:45]]  # different images and batch sizes
    expected = [feature_maps(model, "conv2", x) for x in inputs]
    assert_each_got_its_own(race(lambda x: feature_maps(model, "conv2", x), inputs), expected)


def test_feature_maps_of_two_threads_on_one_resnet_are_their_own(resnet):
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.rand(2, 3, 32, 32, generator=generator), torch.rand(3, 3, 40, 40, generator=generator)]
    expected = [feature_maps(resnet, "net.layer1.0.conv1", x) for x in inputs]
    assert_each_got_its_own(race(lambda x: feature_maps(resnet, "net.layer1.0.conv1", x), inputs, 100), expected)


def test_am_layer_outputs_of_two_threads_on_one_resnet_are_their_own(resnet):
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.rand(2, 3, 32, 32, generator=generator), torch.rand(3, 3, 40, 40, generator=generator)]
    with torch.no_grad():
        expected = [layer_output(resnet, "net.conv1", x) for x in inputs]

        def work(x):
            with torch.no_grad():
                return layer_output(resnet, "net.conv1", x)

        assert_each_got_its_own(race(work, inputs, 100), expected)


def test_a_masked_pass_and_a_feature_map_pass_on_one_resnet_do_not_mix(resnet):
    """The engine's hooked (masking) path and a feature-map read at the same time: neither sees the other."""
    data = core.load_dataset("digits", "val", input_shape=(3, 224, 224), limit=2)
    engine = core.Engine(resnet, data)
    off = {"net.conv1": list(range(0, 64, 2))}
    expected_logits = engine.logits(off)
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    expected_maps = feature_maps(resnet, "net.conv1", image)
    results = race(lambda which: engine.logits(off) if which == 0 else feature_maps(resnet, "net.conv1", image), [0, 1], 20)
    assert_each_got_its_own(results, [expected_logits, expected_maps])


def test_taylor_of_two_threads_on_one_model_with_different_data_is_their_own(model, digits_val, digits_test):
    engines = [core.Engine(model, digits_val), core.Engine(model, digits_test)]
    expected = [torch.as_tensor(rank(model, e.data, "conv2", "taylor", engine=e, cache=False).scores) for e in engines]

    def work(engine):
        return torch.as_tensor(rank(model, engine.data, "conv2", "taylor", engine=engine, cache=False).scores)

    assert_each_got_its_own(race(work, engines, 20), expected)


def test_am_leaves_the_shared_weights_requires_grad_alone(model):
    """AM asks autograd for the image's gradient only: the weights' flags are not flipped (two sessions'
    flips and restores would race) and no gradient lands on them."""
    before = [p.requires_grad for p in model.parameters()]
    core.am_images(model, "conv1", steps=2, cache=False)
    assert [p.requires_grad for p in model.parameters()] == before
    assert all(p.grad is None for p in model.parameters())
