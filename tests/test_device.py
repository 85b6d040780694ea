"""Issue 12, item 1: every public computation runs with ``device="cpu"`` and, where CUDA is present,
``device="cuda"`` gives the same results (the CUDA half is skipped without a GPU); reduced-precision
evaluation (autocast bfloat16 / float16) is measured against float32 and refused when unusable."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import core
from core.cli import main
from core.network.device import device_label, model_device, pick_device
from core.engine import check_precision

from conftest import open_page

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

# tiny settings of every ranking method (conv1 has 10 units: exact Shapley is 1024 coalitions)
METHODS = {
    "shapley": {"estimator": "exact"},
    "shapley-sampled": {"estimator": "sampled", "samples": 8, "seed": 3},
    "shapley-truncated": {"estimator": "truncated", "k": 1},
    "switches": {"epochs": 2, "split": "val", "seed": 0},
    "l1": {}, "l2": {}, "taylor": {}, "activation": {}, "random": {"seed": 1},
    "banzhaf": {"estimator": "sampled", "samples": 16, "seed": 2}, "banzhaf-exact": {"estimator": "exact"},
    "beta_shapley": {"samples": 4, "seed": 1}, "loo": {},
}


@pytest.fixture(scope="module", params=DEVICES)
def placed(request, digits_val):
    """(device, model placed by load_model(device=...), engine on the digits val split)."""
    model = core.load_model(device=request.param)
    return request.param, model, core.Engine(model, digits_val)


@pytest.fixture(scope="module")
def cpu_rankings(digits_val):
    model = core.load_model(device="cpu")
    engine = core.Engine(model, digits_val)
    return {name: core.rank(model, digits_val, "conv1", name.split("-")[0], cache=False, engine=engine, **params)
            for name, params in METHODS.items()}


class _Unstaged(torch.nn.Module):
    """The same network, not staged: the engine runs it as full hooked forward passes."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.meta = net, net.meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _on_cpu(value) -> None:
    """Results come back as numpy arrays / plain Python values, never device tensors."""
    assert not isinstance(value, torch.Tensor), "a result is still a torch tensor"
    if isinstance(value, dict):
        for item in value.values():
            _on_cpu(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _on_cpu(item)


def _same_ranking(a: core.Ranking, b: core.Ranking, tolerance: float) -> None:
    """Equal order, up to swaps of units whose scores are within ``tolerance`` (floating-point ties)."""
    assert np.allclose(a.scores, b.scores, atol=tolerance, rtol=1e-4)
    gaps = np.abs(a.scores[b.order()] - a.scores[a.order()])
    assert (gaps <= tolerance).all(), (a.order(), b.order())


def test_pick_device_and_labels():
    assert pick_device(None) == pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("CPU") == torch.device("cpu") and device_label("cpu") == "CPU"
    for bad in ("tpu", "meta", "cuda:x"):
        with pytest.raises(ValueError, match="unknown device"):
            pick_device(bad)
    with pytest.raises(ValueError, match="CUDA"):
        pick_device(f"cuda:{torch.cuda.device_count()}")  # one past the last GPU (or no GPU at all)
    if torch.cuda.is_available():
        assert device_label("cuda").startswith("CUDA (")


@pytest.mark.parametrize("method", list(METHODS))
def test_every_ranking_runs_on_the_device(placed, cpu_rankings, digits_val, method):
    device, model, engine = placed
    assert model_device(model).type == device and engine.device.type == device
    ranking = core.rank(model, digits_val, "conv1", method.split("-")[0], cache=False, engine=engine,
                        **METHODS[method])
    assert isinstance(ranking.scores, np.ndarray) and ranking.scores.shape == (10,)
    assert ranking.stderr is None or isinstance(ranking.stderr, np.ndarray)
    _on_cpu(ranking.extra)
    _on_cpu(ranking.to_dict())
    assert ranking.extra["precision"] == "float32"
    if device != "cpu":  # the same ranking as on CPU (a TF32/cuDNN difference may swap near-ties only)
        _same_ranking(cpu_rankings[method], ranking, tolerance=2.5 / len(digits_val))


def test_evaluation_and_curves_on_the_device(placed, digits_val):
    device, model, engine = placed
    full = engine.evaluate()
    assert isinstance(full.accuracy, float) and isinstance(full.predictions, np.ndarray)
    masked = engine.evaluate({"conv2": [0, 3], "fc1": [1]})
    batch = engine.evaluate_masks("conv2", np.ones((3, 20)), images=np.arange(50), per_image=True)
    assert batch.accuracy.dtype == np.float64 and batch.correct.shape == (3, 50)
    curve = core.layer_curve(engine, "conv2", core.rank(model, digits_val, "conv2", "l1", engine=engine))
    band = core.random_band(engine, "conv2", seeds=5, counts=[0, 5, 10])
    assert isinstance(curve.accuracy, np.ndarray) and isinstance(band.accuracy, np.ndarray)
    assert curve.accuracy[0] == pytest.approx(full.accuracy, abs=1e-6)
    network = core.network_curves(engine, ["l1"], rates=[0.0, 0.5], seeds=5)
    _on_cpu(network.to_dict())
    if device != "cpu":
        reference = core.Engine(core.load_model(device="cpu"), digits_val)
        assert abs(reference.evaluate().accuracy - full.accuracy) <= 1 / len(digits_val)
        assert abs(reference.evaluate({"conv2": [0, 3], "fc1": [1]}).accuracy - masked.accuracy) <= 1 / len(digits_val)


def test_am_gamma_similarity_clusters_on_the_device(placed, digits_val):
    device, model, engine = placed
    am = core.am_images(model, "conv1", steps=3, cache=False)
    assert isinstance(am.images, np.ndarray) and am.images.shape[0] == 10
    gamma = core.class_contributions(model, digits_val, "conv1", engine=engine, cache=False)
    assert isinstance(gamma, np.ndarray) and gamma.shape == (10, 10) and np.isfinite(gamma).all()
    similarity = core.similarity_matrix(model, digits_val, "conv1", steps=3, engine=engine)
    assert isinstance(similarity.sd, np.ndarray) and similarity.sd.shape == (10, 10)
    clusters = core.cluster_filters(model, digits_val, "conv1", steps=3, similarity=similarity, engine=engine)
    assert sorted(u for m in clusters.members for u in m) == list(range(10))
    _on_cpu(clusters.to_dict())


def test_finetune_prune_export_on_the_device(placed, digits_val, tmp_path):
    device, model, engine = placed
    train = core.load_dataset("digits", "train").subset(192)
    tuned = core.finetune(model, train, digits_val, "paper-a", epochs=1, batch_size=64, eval_every=2)
    assert model_device(tuned.model).type == device
    assert tuned.iterations == 3 and all(isinstance(h["val_accuracy"], float) for h in tuned.history)
    rankings = core.layer_rankings(model, digits_val, "l1", engine=engine)
    plan = core.plan_from_widths(model, "5-10-50-12", rankings)
    pruned = core.prune(model, plan)
    assert model_device(pruned).type == device
    masked = engine.evaluate(plan.off).accuracy
    assert core.Engine(pruned, digits_val).evaluate().accuracy == pytest.approx(masked, abs=1.5 / len(digits_val))
    result = core.compress_model(model, None, digits_val, plan, recipe=None)
    assert isinstance(result.row.accuracy_pruned, float) and model_device(result.model).type == device
    path = core.export_checkpoint(pruned, tmp_path / "small.pt")
    assert core.load_model(path, device="cpu").meta.arch_params["widths"] == [5, 10, 50, 12]
    _, diff = core.export_onnx(pruned, tmp_path / "small.onnx", digits_val.images[:8])
    assert diff < 1e-4


@needs_cuda
def test_cuda_model_with_cpu_data_default_device(digits_val):
    """auto picks CUDA when present, and the data (always on CPU) is moved batch by batch."""
    model = core.load_model()
    assert model_device(model).type == "cuda"
    assert core.evaluate(model, digits_val).accuracy == pytest.approx(
        core.evaluate(core.load_model(device="cpu"), digits_val).accuracy, abs=1 / len(digits_val))


# --- reduced precision ----------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_agrees_with_float32(placed, digits_val, precision):
    device, model, _ = placed
    try:
        reduced = core.Engine(model, digits_val, precision=precision)
    except ValueError as exc:  # a torch whose autocast cannot do it here refuses it clearly
        assert precision in str(exc)
        pytest.skip(str(exc))
    exact = core.Engine(model, digits_val)
    a, b = exact.evaluate(), reduced.evaluate()
    assert abs(a.accuracy - b.accuracy) <= 3 / len(digits_val) and abs(a.loss - b.loss) < 0.05
    assert (a.predictions != b.predictions).mean() <= 0.02
    keep = np.random.default_rng(0).integers(0, 2, (16, 20))
    for layer, masks in (("conv2", keep), ("fc1", np.ones((2, 100)))):  # the suffix after the cached prefix
        x, y = exact.evaluate_masks(layer, masks), reduced.evaluate_masks(layer, masks)
        assert y.accuracy.dtype == np.float64 and y.loss.dtype == np.float64
        assert np.abs(x.accuracy - y.accuracy).max() <= 4 / len(digits_val)
    assert reduced.activations("conv2").dtype == torch.float32  # the cached prefix stays float32
    hooked = core.Engine(_Unstaged(model), digits_val, precision=precision)  # the generic, hooked path
    z = hooked.evaluate_masks("net.conv2.0", keep[:4])
    assert np.abs(z.accuracy - exact.evaluate_masks("conv2", keep[:4]).accuracy).max() <= 4 / len(digits_val)


def test_rank_precision_is_in_the_cache_key_and_label(digits_val):
    model = core.load_model(device="cpu")
    exact = core.rank(model, digits_val, "conv1", "shapley", samples=6, seed=0)
    reduced = core.rank(model, digits_val, "conv1", "shapley", samples=6, seed=0, precision="bfloat16")
    assert not reduced.cached and reduced.extra["precision"] == "bfloat16" and exact.extra["precision"] == "float32"
    assert reduced.label == exact.label + " [bfloat16]"
    again = core.rank(model, digits_val, "conv1", "shapley", samples=6, seed=0, precision="bfloat16")
    assert again.cached and np.array_equal(again.scores, reduced.scores)
    assert core.rank(model, digits_val, "conv1", "shapley", samples=6, seed=0).cached  # float32 key unchanged
    engine = core.Engine(model, digits_val, precision="bfloat16")
    assert core.rank(model, digits_val, "conv1", "l1", engine=engine).extra["precision"] == "bfloat16"
    with pytest.raises(ValueError, match="differs from the given engine"):
        core.rank(model, digits_val, "conv1", "l1", engine=engine, precision="float32")


def test_bad_precision_is_refused(model, digits_val):
    for bad in ("fp8", "float64", "half"):
        with pytest.raises(ValueError, match="unknown precision"):
            core.Engine(model, digits_val, precision=bad)
        with pytest.raises(ValueError, match="unknown precision"):
            check_precision(bad)


@pytest.mark.parametrize("args, message", [
    (["rank", "--layer", "conv1", "--method", "l1", "--precision", "fp8"], "unknown precision 'fp8'"),
    (["curve", "--layer", "conv1", "--precision", "int4"], "unknown precision 'int4'"),
    (["rank", "--layer", "conv1", "--device", "tpu"], "unknown device 'tpu'"),
    (["curve", "--layer", "conv1", "--device", "gpu"], "unknown device 'gpu'"),
    (["am", "--layer", "conv1", "--out", "{tmp}", "--device", "xla"], "unknown device 'xla'"),
    (["train", "--epochs", "1", "--device", "nope"], "unknown device 'nope'"),
    (["compress", "--plan", "5-10-50-12", "--device", "nope"], "unknown device 'nope'"),
    (["clusters", "--layer", "conv1", "--device", "nope"], "unknown device 'nope'"),
    (["evaluate", "--device", "nope"], "unknown device 'nope'"),
])
def test_cli_bad_device_or_precision_is_one_line(tmp_path, capsys, args, message):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err


def test_cli_every_computing_command_takes_device():
    import argparse

    from core.cli import COMMANDS

    for name, (arguments, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        arguments(parser)
        options = {option for action in parser._actions for option in action.option_strings}
        assert "--device" in options, name
        assert ("--precision" in options) == (name in ("rank", "curve")), name


def test_cli_rank_with_precision_and_device(capsys):
    assert main(["rank", "--layer", "conv1", "--samples", "4", "--precision", "bfloat16", "--device", "cpu",
                 "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "[bfloat16] of conv1" in out and "images on CPU" in out


def test_sidebar_shows_the_device():
    at = open_page()
    captions = [c.value for c in at.sidebar.caption]
    expected = device_label(model_device(core.load_model()))
    assert f"Runs on: {expected}" in captions, captions
