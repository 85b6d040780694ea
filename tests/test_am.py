"""Activation maximization (paper B Eq. 1) on the shipped LeNet-5: selective, cached, exported."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import core
from core.interpret.am import am_images
from core.cli import main


def plain_layer_means(model, layer: str, images: np.ndarray) -> np.ndarray:
    """Each unit's mean activation, by an ordinary forward pass with a hook (independent of core.am)."""
    captured = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            model(torch.as_tensor(images))
    finally:
        handle.remove()
    out = captured[0]
    return (out.flatten(2).mean(2) if out.dim() > 2 else out).numpy()


@pytest.fixture(scope="module")
def conv2_am(model):
    return am_images(model, "conv2")


def test_each_conv2_image_drives_its_own_unit_most(model, conv2_am):
    images = conv2_am.images
    assert images.shape == (20, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1  # the model's input range
    response = plain_layer_means(model, "conv2", images)  # response[i, j]: unit j on image i
    own = np.diag(response)
    best_other = np.where(np.eye(20, dtype=bool), -np.inf, response).max(0)
    assert np.mean(own > best_other) >= 0.9, (own, best_other)
    np.testing.assert_allclose(conv2_am.response, response, rtol=1e-4, atol=1e-5)


def test_model_is_left_as_it_was(model):
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    am_images(model, "fc2", steps=8, cache=False)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fc_units_and_rgb_models(model):
    fc = am_images(model, "fc2", steps=32, cache=False)
    assert fc.images.shape == (25, 1, 28, 28) and fc.response.shape == (25, 25)
    # selective there too, checked with an independent forward pass (a unit silent on every input
    # cannot be driven by any image, so the bar is below conv2's 90 %)
    response = plain_layer_means(model, "fc2", fc.images)
    np.testing.assert_allclose(fc.response, response, rtol=1e-4, atol=1e-5)
    own, others = np.diag(response), np.where(np.eye(25, dtype=bool), -np.inf, response).max(0)
    assert np.mean(own > others) >= 0.8, np.mean(own > others)
    torch.manual_seed(0)
    vgg = core.vgg16(width_mult=1 / 16).eval()  # random weights, 3 colour channels
    rgb = am_images(vgg, "conv2", steps=48, cache=False)
    assert rgb.images.shape == (4, 3, 32, 32)
    assert 0 <= rgb.images.min() and rgb.images.max() <= 1
    assert rgb.images.std(axis=(0, 2, 3)).min() > 0.01  # every colour channel got a pattern
    response = plain_layer_means(vgg, "conv2", rgb.images)
    own, others = np.diag(response), np.where(np.eye(4, dtype=bool), -np.inf, response).max(0)
    assert np.mean(own > others) >= 0.75  # 3 of the 4 units


def test_cache_hit_is_identical_and_skips_the_work(model, conv2_am):
    calls = []
    again = am_images(model, "conv2", progress=lambda done, total: calls.append(done))
    assert calls == []  # served from the disk cache
    assert np.array_equal(again.images, conv2_am.images)
    assert np.array_equal(again.response, conv2_am.response)
    other_seed = am_images(model, "conv2", steps=16, seed=1, progress=lambda d, t: calls.append(d))
    assert calls == list(range(1, 17)) and not np.array_equal(other_seed.images[:, :, :4], conv2_am.images[:, :, :4])


def test_bad_parameters_are_refused(model):
    with pytest.raises(ValueError, match="unknown layer"):
        am_images(model, "conv7")
    with pytest.raises(ValueError, match="steps"):
        am_images(model, "conv2", steps=0)
    with pytest.raises(ValueError, match="learning rate"):
        am_images(model, "conv2", lr=-1)


def test_png_export_and_contact_sheet(conv2_am, tmp_path):
    paths = conv2_am.save_pngs(tmp_path)
    assert len(paths) == 21 and paths[-1].name == "contact_sheet.png"
    unit = Image.open(paths[3])
    assert unit.size == (112, 112)  # 28x28 upscaled 4x, nearest neighbour: blocks of equal pixels
    pixels = np.asarray(unit)
    assert np.array_equal(pixels[::4, ::4], (np.clip(conv2_am.images[3, 0], 0, 1) * 255).round())
    sheet = Image.open(paths[-1])
    assert sheet.width >= 5 * 112 and sheet.height >= 4 * 112


def test_cli_am_writes_pngs_and_errors_are_one_line(conv2_am, tmp_path, capsys):
    assert main(["am", "--layer", "conv2", "--out", str(tmp_path / "am")]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["units"] == 20 and payload["files"] == 21
    assert len(list((tmp_path / "am").glob("unit_*.png"))) == 20
    assert main(["am", "--layer", "conv9", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown layer 'conv9'") and len(err.splitlines()) == 1


def test_own_unit_shortcut_equals_the_full_layer(model):
    """The AM objective computes only each image's own filter; it must equal the full layer's value."""
    from core.interpret.am import layer_output, own_unit_means, unit_means

    torch.manual_seed(0)
    vgg = core.vgg16(width_mult=1 / 16).eval()
    for bn in (m for m in vgg.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # non-trivial BN statistics
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.bias.data.uniform_(-1, 1)
    for net, layer, shape in [(model, "conv2", (1, 28, 28)), (model, "fc1", (1, 28, 28)),
                              (vgg, "conv3", (3, 32, 32)), (vgg, "fc1", (3, 32, 32))]:
        images = torch.rand(6, *shape)
        units = torch.randint(0, core.network.models.unit_count(net, layer), (6,))
        with torch.no_grad():
            full = unit_means(layer_output(net, layer, images))[torch.arange(6), units]
            torch.testing.assert_close(own_unit_means(net, layer, images, units), full, atol=1e-5, rtol=1e-5)
