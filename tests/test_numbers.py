"""Issue 23, "numbers that stay true": what a plan, a pool, a budget, a Pr search, a label or a count
shows is what happened. Each test failed on the code before the issue."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

import core
from core.engine.pools import LocalPool


def images_split(shape, n: int = 8, seed: int = 0, name: str = "random", split: str = "val") -> core.DataSplit:
    g = torch.Generator().manual_seed(seed)
    return core.DataSplit(name, split, torch.rand(n, *shape, generator=g), torch.arange(n) % 10,
                          [str(i) for i in range(10)])


@pytest.fixture(scope="module")
def resnet():
    from core.network.checkpoint import torchvision_model

    torch.manual_seed(0)
    model = torchvision_model("resnet18", pretrained=False)
    model.meta.input_shape = (3, 32, 32)
    data = images_split((3, 32, 32))
    return model, data, core.Engine(model, data)


# --- 1. plans on coupled layers ---------------------------------------------------------------------

STREAM = ["net.conv1", "net.layer1.0.conv2", "net.layer1.1.conv2"]


def test_a_coupled_group_is_planned_as_one_unit_and_the_plan_counts_what_pruning_keeps(resnet):
    model, data, engine = resnet
    l1 = core.layer_rankings(model, data, "l1", engine=engine, cache=False)
    half = "-".join(str(engine.units(layer) // 2) for layer in engine.layers)
    plan = core.plan_from_widths(model, half, l1)
    assert STREAM in plan.groups and STREAM in plan.planning_units()
    small = core.prune(model, plan)
    for layer in engine.layers:  # the plan's kept widths are the pruned model's widths, every layer
        module = small.get_submodule(layer)
        assert plan.widths[layer] == getattr(module, "out_channels", getattr(module, "out_features", None)), layer
    assert plan.widths[STREAM[0]] == 32 and len({tuple(plan.off[layer]) for layer in STREAM}) == 1
    # one order for the group: by the mean of its members' L1 scores
    mean = np.mean([l1[layer].scores for layer in STREAM], axis=0)
    assert plan.off[STREAM[0]] == sorted(np.argsort(mean, kind="stable")[:32].tolist())
    with torch.no_grad():
        assert float((small(data.images) - engine.logits(plan.off)).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="share their channels"):
        core.plan_from_widths(model, {STREAM[0]: 10}, l1)  # one member narrower than the others


def test_pr_on_a_coupled_group_costs_what_removing_from_the_whole_group_costs(resnet):
    model, data, engine = resnet
    l1 = core.layer_rankings(model, data, "l1", engine=engine, cache=False)
    plan = core.plan_from_pr(engine, l1, pr=200.0, layers=STREAM[1:2])  # any cost fits: the most removable
    details = plan.details["layers"]
    assert list(details) == [STREAM[0]] and details[STREAM[0]]["members"] == STREAM
    assert {plan.widths[layer] for layer in STREAM} == {1}  # never empties the group
    core.prune(model, plan)  # and pruning works
    n = details[STREAM[0]]["removed"]
    base = engine.evaluate().accuracy
    assert details[STREAM[0]]["cost_points"] == pytest.approx((base - engine.evaluate(plan.off).accuracy) * 100)
    assert n == 63


# --- 2. a pool must hold what its consumer evaluates -----------------------------------------------

def negated(model):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.neg_()
    return other


@pytest.mark.parametrize("kind", ["negated weights", "other images", "other split", "precision"])
def test_a_pool_on_another_model_data_or_precision_is_refused_by_every_consumer(model, digits_val, digits_test, kind):
    engine = core.Engine(model, digits_val)
    if kind == "negated weights":
        other, match = core.Engine(negated(model), digits_val), "other model weights"
    elif kind == "other images":
        same_name = core.DataSplit(digits_val.name, digits_val.split, digits_val.images.flip(-1), digits_val.labels,
                                   digits_val.class_names)
        other, match = core.Engine(model, same_name), "other images"
    elif kind == "other split":
        engine, other, match = core.Engine(model, digits_test), core.Engine(model, digits_val), "another data split"
    else:
        other, match = core.Engine(model, digits_val, precision="bfloat16"), "another precision"
    pool = LocalPool(other)
    data = engine.data
    with pytest.raises(ValueError, match=match):
        core.rank(model, data, "conv1", "shapley", samples=4, engine=engine, pool=pool)
    with pytest.raises(ValueError, match=match):
        core.layer_curve(engine, "conv1", np.arange(10.0), pool=pool)
    with pytest.raises(ValueError, match=match):
        core.curve_set(engine, "conv1", [core.rank(model, data, "conv1", "l1", engine=engine)], seeds=5, pool=pool)
    with pytest.raises(ValueError, match=match):
        core.plan_from_pr(engine, core.layer_rankings(model, data, "l1", engine=engine), 0.5, pool=pool)
    with pytest.raises(ValueError, match="does not say"):
        core.layer_curve(engine, "conv1", np.arange(10.0), pool=type("Bare", (), {"map": pool.map})())
    # the right pool still works and gives the local numbers
    right = LocalPool(core.Engine(model, data))
    local = core.rank(model, data, "conv1", "shapley", samples=4, engine=engine, cache=False)
    pooled = core.rank(model, data, "conv1", "shapley", samples=4, engine=engine, cache=False, pool=right)
    np.testing.assert_allclose(pooled.scores, local.scores, atol=1e-12)


# --- 7. shared state in notebooks ------------------------------------------------------------------

def bn_lenet_like(seed: int = 0):
    torch.manual_seed(seed)
    model = core.vgg16(width_mult=0.125, hidden_layers=1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def test_threads_on_a_train_mode_model_never_run_with_batch_statistics_nor_touch_its_buffers():
    model = bn_lenet_like().train()
    data = images_split((3, 32, 32), n=64)
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}
    expected = core.Engine(copy.deepcopy(model).eval(), data).logits()
    engines = [core.Engine(model, data) for _ in range(4)]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(15):
                out = engines[i].logits()
                results.setdefault(i, []).append(float((out - expected).abs().max()))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert max(max(r) for r in results.values()) < 1e-4
    for key, value in model.state_dict().items():
        if key in buffers:
            assert torch.equal(value, buffers[key]), key
    assert all(m.training for m in model.modules())  # the caller's modes are back


def test_model_totals_keeps_each_modules_own_mode():
    model = bn_lenet_like().train()
    frozen = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][:3]
    for m in frozen:
        m.eval()
    modes = {m: m.training for m in model.modules()}
    core.model_totals(model)
    assert {m: m.training for m in model.modules()} == modes


def test_the_engine_notices_weights_changed_in_place_and_the_ranking_cache_follows(model, digits_val):
    edited = copy.deepcopy(model)
    engine = core.Engine(edited, digits_val)
    before = core.rank(edited, digits_val, "conv2", "shapley", samples=4, engine=engine)
    engine.evaluate_masks("conv2", np.ones((1, 20)))  # prefix and linear caches built
    with torch.no_grad():
        edited.conv1[0].weight.data.mul_(-1)  # through .data: no autograd version bump
    fresh = core.Engine(edited, digits_val)
    assert engine.evaluate().accuracy == fresh.evaluate().accuracy
    np.testing.assert_allclose(engine.evaluate_masks("conv2", np.ones((3, 20))).accuracy,
                               fresh.evaluate_masks("conv2", np.ones((3, 20))).accuracy)
    after = core.rank(edited, digits_val, "conv2", "shapley", samples=4, engine=engine)
    expected = core.rank(edited, digits_val, "conv2", "shapley", samples=4, engine=fresh, cache=False)
    np.testing.assert_allclose(after.scores, expected.scores, atol=1e-12)
    assert not np.allclose(after.scores, before.scores)


# --- 5. labels tell what ran ------------------------------------------------------------------------

def test_early_stopped_rankings_with_other_seeds_have_labels_that_say_what_ran(model, digits_val):
    engine = core.Engine(model, digits_val)
    params = {"samples": 400, "top_k": 2, "confidence": 0.5}
    a = core.rank(model, digits_val, "conv1", "shapley", engine=engine, seed=0, **params)
    b = core.rank(model, digits_val, "conv1", "shapley", engine=engine, seed=1, **params)
    for ranking in (a, b):
        assert ranking.extra["stopped_early"] and ranking.extra["permutations"] < 400
        assert f"{ranking.extra['permutations']} of 400 perms" in ranking.label
        assert "top 2 at 50%" in ranking.label
    assert a.label != b.label and "seed 1" in b.label
    again = core.rank(model, digits_val, "conv1", "shapley", engine=engine, seed=1, **params)  # from the cache
    assert again.cached and again.label == b.label
    # a parameter a method's label does not name still tells rankings apart
    s0 = core.rank(model, digits_val, "conv1", "taylor", engine=engine)
    s1 = core.rank(model, digits_val, "conv1", "taylor", engine=engine, batch_size=64)
    assert s0.label == "Taylor (grad x act)" and s1.label == "Taylor (grad x act) [batch_size=64]"


# --- 4. paper B's Pr rule: the first crossing -------------------------------------------------------

def test_pr_takes_the_first_crossing_of_a_noisy_curve_not_its_luckiest_point():
    from core.pruning.plans import pr_count

    drop = [0.0, 0.2, 0.4, 0.9, 0.3, 1.5, 0.45, 2.0]  # crosses 0.5 at 3 removals, dips back at 4 and 6
    assert pr_count(drop, 0.5) == 2
    assert pr_count(drop, 0.5, "largest") == 6
    assert pr_count(drop, 5.0) == 7 and pr_count([0.0, 1.0], 0.5) == 0
    with pytest.raises(ValueError, match="crossing"):
        pr_count(drop, 0.5, "luckiest")


# --- 3. budgets: a stated cross-layer order -------------------------------------------------------------

def shapley_like(model, scale: dict[str, float], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    from core.network.models import layer_names, unit_count
    return {layer: core.Ranking(layer, "shapley", {"estimator": "sampled", "payoff": "accuracy"},
                                scale[layer] * (1 + rng.random(unit_count(model, layer))))
            for layer in layer_names(model)}


def test_a_shapley_budget_removes_by_accuracy_points_across_layers(model):
    # conv1's units are each worth ~10 accuracy points, every other unit ~0.1: the raw order never touches conv1
    rankings = shapley_like(model, {"conv1": 0.1, "conv2": 0.001, "fc1": 0.001, "fc2": 0.001})
    plan = core.plan_from_budget(model, rankings, keep=0.6, kind="flops")
    assert plan.details["cross_layer"] == "raw"
    assert "conv1" not in plan.off and plan.details["share"] <= 0.6
    normalized = core.plan_from_budget(model, rankings, keep=0.6, kind="flops", cross_layer="normalized")
    assert normalized.details["cross_layer"] == "normalized" and "conv1" in normalized.off
    # L1 norms are not on one scale across layers: auto normalizes them
    l1 = core.layer_rankings(model, core.load_dataset("digits", "val"), "l1")
    assert core.plan_from_budget(model, l1, keep=0.6).details["cross_layer"] == "normalized"
    with pytest.raises(ValueError, match="cross_layer"):
        core.plan_from_budget(model, rankings, keep=0.6, cross_layer="mean")


def test_each_removal_is_valued_by_its_own_unit():
    from core.pruning.budgets import removal_values

    scores = np.array([0.1, 0.5, 0.3, 0.05])
    # a cluster order removes unit 2 first: its value is its own 0.3, not the layer's lowest 0.05
    np.testing.assert_allclose(removal_values(np.array([2, 0, 1]), scores), [0.3, 0.3, 0.5])
    np.testing.assert_allclose(removal_values(np.array([3, 0, 2]), scores), [0.05, 0.1, 0.3])


# --- 6. counts and claims: masking a pre-activation model -------------------------------------------

def test_a_densenet_layer_whose_channels_enter_a_batchnorm_is_refused_not_masked_wrongly():
    from core.network.checkpoint import torchvision_model

    torch.manual_seed(0)
    model = torchvision_model("densenet121", pretrained=False)
    model.meta.input_shape = (3, 32, 32)
    engine = core.Engine(model, images_split((3, 32, 32), n=2))
    with pytest.raises(ValueError, match="pre-activation.*not be the pruned one"):
        engine.evaluate({"net.features.denseblock1.denselayer1.conv2": [0]})
    # a bottleneck conv is followed by its own BatchNorm: masking it is pruning it, so it is allowed
    masked = engine.logits({"net.features.denseblock1.denselayer1.conv1": list(range(32))})
    assert masked.shape == (2, 1000) and float((masked - engine.logits()).abs().max()) > 0


# --- the command line reaches the new choices ----------------------------------------------------------

@pytest.mark.parametrize("args, key, value", [
    (["--pr", "0.5", "--crossing", "largest"], "crossing", "largest"),
    (["--pr", "0.5"], "crossing", "first"),
    (["--flops", "0.6", "--cross-layer", "normalized"], "cross_layer", "normalized"),
])
def test_cli_compress_takes_the_pr_crossing_and_the_cross_layer_order(tmp_path, capsys, args, key, value):
    import json

    from core.cli import main

    report = tmp_path / "report.json"
    assert main(["compress", *args, "--method", "l1", "--recipe", "none", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["plan"]["details"][key] == value
