"""Rankings: Shapley estimators against Eq. 2, switches, baselines, agreement, cache, CLI."""
from __future__ import annotations

import copy
import json
import math
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import core
from core.engine.cache import entry_path
from core.data import DataSplit
from core.rankings import METHODS, rank, weights_digest
from core.rankings.agreement import compare, top_k_overlap, top_units_table
from tests.conftest import MNIST_T10K


@pytest.fixture(scope="module")
def tiny():
    """A 5-unit conv1 LeNet, briefly trained, on 120 digits: 32 coalitions, brute force is cheap."""
    from core.pruning.train import fit

    torch.manual_seed(1)
    model = core.lenet5(widths=(5, 6, 12, 8))
    val = core.load_dataset("digits", "val")
    fit(model, core.load_dataset("digits", "train").subset(600), val, epochs=2, patience=2)
    return model, val.subset(120)


def brute_force_eq2(model, data, layer, payoff):
    """Paper A Eq. 2, written out: SV_i = sum_{C not containing i} |C|!(N-|C|-1)!/N! [v(C+i) - v(C)],
    with v(C) from Engine.evaluate (a full masked pass, not the batched coalition path)."""
    engine = core.Engine(model, data)
    n = engine.units(layer)

    def v(coalition):
        result = engine.evaluate({layer: [u for u in range(n) if u not in coalition]})
        return result.accuracy if payoff == "accuracy" else -result.loss

    values = {frozenset(c): v(set(c)) for s in range(n + 1) for c in combinations(range(n), s)}
    sv = np.zeros(n)
    for coalition, value in values.items():
        for i in set(range(n)) - coalition:
            weight = math.factorial(len(coalition)) * math.factorial(n - len(coalition) - 1) / math.factorial(n)
            sv[i] += weight * (values[coalition | {i}] - value)
    return sv, values[frozenset(range(n))], values[frozenset()]


@pytest.mark.parametrize("payoff", ["accuracy", "loss"])
def test_exact_shapley_equals_brute_force_eq2_and_is_efficient(tiny, payoff):
    model, data = tiny
    expected, v_all, v_none = brute_force_eq2(model, data, "conv1", payoff)
    ranking = rank(model, data, "conv1", "shapley", estimator="exact", payoff=payoff, cache=False)
    np.testing.assert_allclose(ranking.scores, expected, atol=1e-5)
    assert ranking.scores.sum() == pytest.approx(v_all - v_none, abs=1e-5)  # efficiency
    assert np.ptp(expected) > 1e-3  # the units really differ, so the comparison means something


def test_truncated_shapley_with_all_levels_equals_exact_and_small_k_differs(tiny):
    model, data = tiny
    exact = rank(model, data, "conv1", "shapley", estimator="exact", payoff="loss", cache=False).scores
    full = rank(model, data, "conv1", "shapley", estimator="truncated", k=4, payoff="loss", cache=False).scores
    np.testing.assert_allclose(full, exact, atol=1e-5)
    k1 = rank(model, data, "conv1", "shapley", estimator="truncated", k=1, payoff="loss", cache=False)
    assert k1.extra["evaluations"] == 1 + 5 + 10  # removal sets of size 0, 1, 2
    assert not np.allclose(k1.scores, exact, atol=1e-6)


def test_sampled_shapley_agrees_with_exact_on_lenet_conv1(model, digits_val):
    exact = rank(model, digits_val, "conv1", "shapley", estimator="exact")
    sampled = rank(model, digits_val, "conv1", "shapley", estimator="sampled", samples=60, seed=3)
    assert spearmanr(exact.scores, sampled.scores).statistic >= 0.9
    assert sampled.stderr is not None and np.all(sampled.stderr >= 0) and sampled.stderr.max() > 0
    # the estimate is within a few standard errors of the truth for (almost) every unit
    assert np.mean(np.abs(sampled.scores - exact.scores) <= 4 * sampled.stderr + 1e-9) >= 0.9


def test_sampled_shapley_early_stop_and_reproducibility(model, digits_val):
    first = rank(model, digits_val, "conv1", "shapley", samples=400, top_k=1, seed=1, cache=False)
    assert first.extra["stopped_early"] and first.extra["permutations"] < 400
    again = rank(model, digits_val, "conv1", "shapley", samples=400, top_k=1, seed=1, cache=False)
    np.testing.assert_array_equal(first.scores, again.scores)


def test_an_all_zero_filter_scores_zero(model, digits_val):
    dead = copy.deepcopy(model)
    conv = core.network.models.weight_module(dead, "conv2")
    with torch.no_grad():
        conv.weight[7].zero_()
        conv.bias[7].zero_()
    for method, params in [("shapley", {"samples": 20}), ("l1", {}), ("l2", {}), ("taylor", {}),
                           ("activation", {})]:
        ranking = rank(dead, digits_val, "conv2", method, **params)
        assert abs(ranking.scores[7]) < 1e-9, method
        assert 7 in ranking.lowest(3) or np.sum(np.abs(ranking.scores) < 1e-9) > 3, method
    # the shipped model's unit 7 is not dead: the cache keyed the edited copy separately
    assert rank(model, digits_val, "conv2", "l1").scores[7] > 0.1


def _state(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_switches_are_a_distribution_and_leave_the_network_untouched(model, digits_val):
    before = _state(model)
    ranking = rank(model, digits_val, "conv2", "switches", epochs=12, cache=False)
    assert np.all(ranking.scores > 0) and ranking.scores.sum() == pytest.approx(1.0, abs=1e-6)
    assert ranking.params["alpha0"] == 2.0  # paper A's LeNet prior
    assert ranking.params["split"] == "train" and ranking.extra["train_images"] == 1079  # paper A: training split
    assert len(ranking.extra["likelihood"]) == len(ranking.extra["kl"]) == 12  # one point per epoch
    assert ranking.extra["likelihood"][-3:].mean() > ranking.extra["likelihood"][:3].mean()  # it learns
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(p.requires_grad for p in model.parameters()) and all(p.grad is None for p in model.parameters())


def test_switches_on_a_batchnorm_vgg_leave_weights_and_bn_buffers_unchanged():
    torch.manual_seed(0)
    vgg = core.vgg16(width_mult=1 / 16).eval()
    images = torch.rand(48, 3, 32, 32)
    data = DataSplit("random", "val", images, torch.randint(0, 10, (48,)), [str(i) for i in range(10)])
    before = _state(vgg)
    ranking = rank(vgg, data, "conv3", "switches", epochs=3, batch_size=16, alpha0=0.05, train=data, cache=False)
    assert np.all(ranking.scores > 0) and ranking.scores.sum() == pytest.approx(1.0, abs=1e-6)
    after = vgg.state_dict()
    assert any("running_mean" in name for name in before)
    assert all(torch.equal(before[name], after[name]) for name in before)  # incl. BN running stats
    assert not vgg.training


def test_baselines(model, digits_val):
    weight = core.network.models.weight_module(model, "fc1").weight.detach()
    l1 = rank(model, digits_val, "fc1", "l1")
    np.testing.assert_allclose(l1.scores, weight.abs().sum(1).numpy(), rtol=1e-5)
    assert l1.lowest(2) == [int(i) for i in np.argsort(l1.scores)[:2]]
    l2 = rank(model, digits_val, "fc1", "l2")
    np.testing.assert_allclose(l2.scores, weight.norm(dim=1).numpy(), rtol=1e-5)
    taylor = rank(model, digits_val, "conv2", "taylor")
    assert taylor.scores.shape == (20,) and np.all(taylor.scores >= 0) and taylor.scores.max() > 0
    first, second = rank(model, digits_val, "conv2", "random", seed=4), rank(model, digits_val, "conv2", "random", seed=5)
    assert not np.array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(first.scores, rank(model, digits_val, "conv2", "random", seed=4,
                                                      cache=False).scores)
    assert set(METHODS) == {"shapley", "switches", "l1", "l2", "taylor", "activation", "random",
                            "banzhaf", "beta_shapley", "loo"}  # the semivalues: tests/test_semivalues.py


def test_bad_requests_get_clear_messages(model, digits_val):
    vgg = core.vgg16(width_mult=1 / 8).eval()
    data = DataSplit("random", "val", torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long),
                     [str(i) for i in range(10)])
    with pytest.raises(ValueError, match="sampled"):
        rank(vgg, data, "conv5", "shapley", estimator="exact")  # 32 units
    with pytest.raises(ValueError, match="unknown ranking method"):
        rank(model, digits_val, "conv1", "magic")
    with pytest.raises(ValueError, match="no parameter 'sample'"):
        rank(model, digits_val, "conv1", "shapley", sample=10)
    with pytest.raises(ValueError, match="k <= 9"):
        rank(model, digits_val, "conv1", "shapley", estimator="truncated", k=12)


def test_agreement_overlap_chance_and_table(model, digits_val):
    a, b = np.arange(10.0), np.arange(10.0)
    overlap = top_k_overlap(a, b, 5)
    assert overlap.common == [5, 6, 7, 8, 9] and overlap.p_chance == pytest.approx(1 / math.comb(10, 5))
    assert top_k_overlap(a, -a, 5).common == [] and top_k_overlap(a, -a, 5).p_chance == pytest.approx(1.0)
    # P(overlap >= 1) for k=2 of N=4: 1 - C(2,2)/C(4,2)
    assert top_k_overlap(np.array([4, 3, 2, 1.]), np.array([4, 1, 3, 2.]), 2).p_chance == pytest.approx(1 - 1 / 6)
    rankings = [rank(model, digits_val, "conv2", m) for m in ("l1", "l2", "activation")]
    table = top_units_table(rankings, 3)
    assert table.shape == (3, 3) and list(table.loc["L1 norm"]) == rankings[0].top(3)
    pairs = compare(rankings, 5)
    assert len(pairs) == 3 and pairs["Spearman"].between(-1, 1).all()


def test_cache_hit_is_identical_skips_the_work_and_a_corrupt_file_is_recomputed(model, digits_val, monkeypatch):
    first = rank(model, digits_val, "conv1", "shapley", samples=40, seed=11)
    assert not first.cached
    with monkeypatch.context() as patched:  # a hit must not compute anything (timing: benchmarks, not tests)
        patched.setattr(METHODS["shapley"], "compute", lambda *a, **k: pytest.fail("a cache hit recomputed"))
        hit = rank(model, digits_val, "conv1", "shapley", samples=40, seed=11)
    assert hit.cached
    np.testing.assert_array_equal(hit.scores, first.scores)
    np.testing.assert_array_equal(hit.stderr, first.stderr)
    key = {"version": core.rankings.CACHE_VERSION, "checkpoint": model.meta.sha256, "weights": weights_digest(model), "data": digits_val.key,
           "data_digest": core.rankings.data_digest(digits_val), "layer": "conv1", "method": "shapley",
           "params": core.rankings.method_params("shapley", {"samples": 40, "seed": 11})}
    path = entry_path("rankings", key)
    assert path.is_file()
    path.write_bytes(b"not an npz")
    again = rank(model, digits_val, "conv1", "shapley", samples=40, seed=11)
    assert not again.cached
    np.testing.assert_array_equal(again.scores, first.scores)
    assert rank(model, digits_val, "conv1", "shapley", samples=40, seed=11).cached  # rewritten


def test_cli_rank_writes_json_and_errors_are_one_line(tmp_path, capsys):
    from core.cli import main

    out = tmp_path / "r.json"
    assert main(["rank", "--layer", "conv1", "--method", "shapley", "--samples", "10", "--seed", "2",
                 "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["method"] == "shapley" and payload["params"]["samples"] == 10 and len(payload["scores"]) == 10
    assert sorted(payload["order"]) == list(range(10)) and len(payload["stderr"]) == 10
    assert "Shapley (sampled, 10 perms, seed 2)" in capsys.readouterr().out
    for argv, message in [(["rank", "--layer", "conv1", "--method", "l1", "--exact"], "--exact applies"),
                          (["rank", "--layer", "nope"], "unknown layer"),
                          (["rank", "--layer", "conv1", "--k", "30"], "k <= 9")]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(not (MNIST_T10K / "t10k-images-idx3-ubyte.gz").exists(), reason="real MNIST not available")
def test_real_mnist_shapley_and_switches_agree_on_top_units():
    from benchmarks.mnist_table import mnist_table

    rows = mnist_table(epochs=2, budget=0.5, switch_epochs=5)  # README table: benchmarks/mnist_table.py, full budget
    assert [r["layer"] for r in rows] == ["conv1", "conv2", "fc1", "fc2"]
    assert rows[0]["accuracy"] > 0.9  # a real LeNet-5, not an untrained one
    for row in rows:
        assert 0 <= row["overlap"] <= 5 and 0 < row["p_chance"] <= 1
    # paper A Table 1: >= 50% top-5 overlap on small layers. On conv1 (10 units) even 4/5 is weak
    # evidence (p = 0.10), so no single layer's p-value is required: the overlap on conv1, on average
    # over the layers, and better than chance (p < 0.05) on at least two of the four layers
    assert rows[0]["overlap"] >= 3
    assert sum(row["overlap"] for row in rows) >= 10
    assert sum(row["p_chance"] < 0.05 for row in rows) >= 2
