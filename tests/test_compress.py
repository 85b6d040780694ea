"""Compress: plans (widths, Pr, budget, clusters), physical pruning = masking, fine-tuning, FLOPs, export, CLI."""
from __future__ import annotations

import copy
import json
import threading

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import core
from core.cli import main
from core.pruning.plans import cluster_order, parse_widths
from core.pruning.export import atomic_write
from core.network.models import input_shape, unit_count
from core.rankings import weights_digest
from core.interpret.similarity import Clusters

from conftest import ROOT
from test_cli import run_cli


@pytest.fixture(scope="module")
def engine(model, digits_val):
    return core.Engine(model, digits_val)


@pytest.fixture(scope="module")
def l1(model, digits_val, engine):
    return core.layer_rankings(model, digits_val, "l1", engine=engine)


@pytest.fixture(scope="module")
def digits_train():
    return core.load_dataset("digits", "train").subset(400)


def random_bn_vgg(hidden_layers: int, seed: int = 0) -> torch.nn.Module:
    """A narrow VGG-16 with random weights and non-trivial BatchNorm statistics (BN(0) != 0)."""
    torch.manual_seed(seed)
    model = core.vgg16(width_mult=0.125, hidden_layers=hidden_layers)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def images_split(shape, n: int = 16, seed: int = 0) -> core.DataSplit:
    g = torch.Generator().manual_seed(seed)
    return core.DataSplit("random", "val", torch.rand(n, *shape, generator=g), torch.arange(n) % 10,
                          [str(i) for i in range(10)])


# --- (a) typed widths, bad plans ----------------------------------------------------------------------

def test_typed_widths_give_exactly_those_widths_and_drop_the_lowest_ranked(model, l1):
    plan = core.plan_from_widths(model, "5-7-45-20", l1)
    assert plan.widths == {"conv1": 5, "conv2": 7, "fc1": 45, "fc2": 20} and plan.widths_string() == "5-7-45-20"
    assert sorted(plan.off["conv2"]) == sorted(l1["conv2"].lowest(13))
    small = core.prune(model, plan)
    assert [unit_count(small, n) for n in ("conv1", "conv2", "fc1", "fc2")] == [5, 7, 45, 20]
    assert small.meta.arch_params["widths"] == [5, 7, 45, 20]
    totals = core.model_totals(small)
    assert totals["params"] == 7227 and totals["flops"] == 134140  # PAPER_RESULTS.md: LeNet 5-7-45-20


@pytest.mark.parametrize("widths, message", [
    ("5-0-45-20", "conv2: width 0 would remove every unit"),
    ("5-30-45-20", "conv2: cannot keep 30 units, it has only 20"),
    ("5-7-45", "this model has 4 prunable layers"),
    ("5-seven-45-20", "whole numbers separated by '-'"),
    ({"conv9": 3}, "unknown layer 'conv9'"),
])
def test_bad_plans_are_one_clear_line(model, l1, widths, message):
    with pytest.raises(ValueError) as info:
        core.plan_from_widths(model, widths, l1)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_negative_pr_and_bad_budgets_are_refused(model, engine, l1):
    with pytest.raises(ValueError, match="cannot be negative"):
        core.plan_from_pr(engine, l1, -0.5)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        core.plan_from_budget(model, l1, 0.0)
    with pytest.raises(ValueError, match="budget kind"):
        core.plan_from_budget(model, l1, 0.5, kind="latency")


# --- (b) paper B's Pr rule ----------------------------------------------------------------------------

@pytest.mark.parametrize("pr", [0.5, 2.0])
@pytest.mark.parametrize("crossing", ["first", "largest"])
def test_pr_rule_each_layer_alone_costs_at_most_pr_and_one_more_unit_costs_more(model, engine, digits_val, pr,
                                                                                crossing):
    rankings = core.layer_rankings(model, digits_val, "random", engine=engine, seed=1)
    plan = core.plan_from_pr(engine, rankings, pr, crossing=crossing)
    base = engine.evaluate().accuracy
    assert plan.details["base_accuracy"] == base
    for layer, units in plan.units.items():
        off = plan.off.get(layer, [])
        assert base - engine.evaluate({layer: off}).accuracy <= pr / 100 + 1e-9  # alone, no retraining
        assert sorted(off) == sorted(rankings[layer].lowest(len(off)))
        order = rankings[layer].lowest(units - 1)
        keep = np.ones((units, units))
        for m in range(units):
            keep[m, order[:m]] = 0
        drop = base - engine.evaluate_masks(layer, keep).accuracy  # drop[m]: the first m of the order removed
        n = len(off)
        if crossing == "first":  # every count up to n fits, the next one is the first that costs more
            assert drop[:n + 1].max() <= pr / 100 + 1e-9
            assert n == units - 1 or drop[n + 1] > pr / 100
        elif n < units - 1:  # the largest such n: every larger count (this order) costs more than Pr
            assert drop[n + 1:units].min() > pr / 100
    assert plan.removed() > 0
    pruned = core.prune(model, plan)  # all layers together
    assert core.model_totals(pruned)["params"] < core.model_totals(model)["params"]


# --- (c) budget --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flops", "params"])
def test_budget_reaches_the_target_and_a_looser_budget_removes_fewer(model, l1, kind):
    plan = core.plan_from_budget(model, l1, 0.5, kind)
    full = core.model_totals(model)[kind]
    got = core.model_totals(core.prune(model, plan))[kind]
    assert got <= 0.5 * full and got == plan.details["pruned"]
    assert all(w >= 1 for w in plan.widths.values())
    assert core.plan_from_budget(model, l1, 0.9, kind).removed() < plan.removed()


# --- cluster-aware selection ---------------------------------------------------------------------------

def fake_clusters(layer: str) -> Clusters:
    members = [[0, 1, 2, 3, 4, 5], [6, 7, 8], [9]]  # highest contribution first; unit 9 is locked
    contribution = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=float)
    labels = np.array([0] * 6 + [1] * 3 + [2])
    return Clusters(layer, labels, 3, {2: 0.3}, contribution, members)


def test_cluster_order_shares_by_size_lowest_contribution_first_and_keeps_locked_units():
    order, emptied = cluster_order(fake_clusters("conv1"))
    assert 9 not in order and len(order) == 10 - 3  # each cluster keeps one unit, the singleton is locked
    assert order == [5, 4, 8, 3, 2, 7, 1]  # D'Hondt shares by size 6:3 (ties: larger), lowest contribution first
    assert emptied == {}
    full, emptied = cluster_order(fake_clusters("conv1"), empty_clusters=True)
    assert full[:7] == order and sorted(full) == list(range(9)) and 9 not in full
    assert emptied == {1: 8, 0: 9}  # cluster 1's last unit contributes less: it is emptied first


def test_cluster_aware_plan_says_when_a_cluster_is_emptied(model, l1):
    clusters = {"conv1": fake_clusters("conv1")}
    with pytest.raises(ValueError, match="at most"):
        core.plan_from_widths(model, {"conv1": 2}, {**l1}, clusters={**clusters, **_l1_clusters(model, l1)})
    plan = core.plan_from_widths(model, {"conv1": 2}, l1, clusters={**clusters, **_l1_clusters(model, l1)},
                                 empty_clusters=True)
    assert plan.off["conv1"] == [1, 2, 3, 4, 5, 6, 7, 8] and plan.cluster_aware  # kept: top of cluster 0, locked 9
    assert any("conv1: 1 whole cluster(s) emptied" in n for n in plan.notes)


def _l1_clusters(model, l1) -> dict[str, Clusters]:
    """Every other layer as one cluster ranked by L1 (so only conv1's clusters matter)."""
    result = {}
    for layer in ("conv2", "fc1", "fc2"):
        scores = l1[layer].scores
        result[layer] = Clusters(layer, np.zeros(len(scores), int), 1, {}, scores, [list(l1[layer].order())])
    return result


# --- physical pruning = masking ------------------------------------------------------------------------

def test_pruned_lenet_gives_the_masked_logits(model, engine, digits_val, l1):
    plan = core.plan_from_widths(model, "4-9-30-11", core.layer_rankings(model, digits_val, "random", engine=engine))
    before = weights_digest(model)
    small = core.prune(model, plan)
    with torch.no_grad():
        diff = (small(digits_val.images) - engine.logits(plan.off)).abs().max()
    assert float(diff) < 1e-5
    assert weights_digest(model) == before


@pytest.mark.parametrize("hidden_layers", [1, 2])
def test_pruned_bn_vgg_gives_the_masked_logits_both_classifiers(hidden_layers, tmp_path):
    model = random_bn_vgg(hidden_layers)
    assert len(core.network.models.layer_names(model)) == 13 + hidden_layers
    data = images_split((3, 32, 32))
    engine = core.Engine(model, data)
    rankings = {layer: np.random.default_rng(i).random(engine.units(layer)) for i, layer in enumerate(engine.layers)}
    widths = [max(1, engine.units(l) // 2 - 1) for l in engine.layers]
    plan = core.plan_from_widths(model, widths, rankings)
    small = core.prune(model, plan)
    with torch.no_grad():
        assert float((small(data.images) - engine.logits(plan.off)).abs().max()) < 1e-5
    # the paper-A classifier variant round-trips through a checkpoint
    small.meta = core.ModelMeta("vgg16", {"width_mult": 0.125, "hidden_layers": hidden_layers,
                                          "widths": widths}, (3, 32, 32), [str(i) for i in range(10)],
                                [0.0] * 3, [1.0] * 3)
    small.input.mean.zero_(), small.input.std.fill_(1.0)
    loaded = core.load_model(core.export_checkpoint(small, tmp_path / "vgg.pt"), device="cpu")
    with torch.no_grad():
        assert torch.equal(loaded(data.images), small(data.images))


def test_paper_a_vgg_widths_string_has_15_numbers():
    model = core.vgg16(hidden_layers=2)
    widths = "34-34-68-68-75-106-101-92-102-92-92-67-67-62-62"  # PAPER_RESULTS.md, NR row 1
    chosen = parse_widths(model, widths)
    assert list(chosen) == [f"conv{i}" for i in range(1, 14)] + ["fc1", "fc2"]
    assert list(chosen.values()) == [int(w) for w in widths.split("-")]


def test_resnet18_torch_pruning_shrinks_by_the_expected_parameters_and_matches_the_mask():
    from core.network.checkpoint import torchvision_model

    torch.manual_seed(0)
    model = torchvision_model("resnet18", pretrained=False)
    model.meta.input_shape = (3, 64, 64)
    data = images_split((3, 64, 64), n=4)
    engine = core.Engine(model, data)
    groups = engine.coupled_groups()
    assert ["net.conv1", "net.layer1.0.conv2", "net.layer1.1.conv2"] in groups
    assert ["net.layer2.0.conv2", "net.layer2.0.downsample.0", "net.layer2.1.conv2"] in groups
    off = {"net.layer1.0.conv2": [0, 3], "net.layer1.1.conv1": list(range(32))}
    before = weights_digest(model)
    small = core.prune(model, off)
    assert weights_digest(model) == before
    # stage-1 stream loses 2 of 64 channels everywhere it goes; layer1.1.conv1 keeps 32 of 64 outputs
    c, k = 62, 9
    expected_removed = (
        2 * 3 * 49 + 2 * 2  # stem conv1 out + bn1
        + 64 * k * 64 - 64 * k * c  # layer1.0.conv1 in
        + 64 * 64 * k - c * 64 * k + 2 * 2  # layer1.0.conv2 out + bn2
        + 64 * 64 * k - 32 * c * k + 2 * 32  # layer1.1.conv1 in (62) and out (32) + bn1
        + 64 * 64 * k - c * 32 * k + 2 * 2  # layer1.1.conv2 in (32) and out (62) + bn2
        + 128 * k * 2 + 128 * 2  # layer2.0.conv1 and layer2.0.downsample.0 inputs
    )
    assert core.model_totals(model)["params"] - core.model_totals(small)["params"] == expected_removed
    assert tuple(small.get_submodule("net.layer1.1.conv1").weight.shape) == (32, 62, 3, 3)
    with torch.no_grad():
        out = small(data.images)
        assert out.shape == (4, 1000)
        assert float((out - engine.logits(off)).abs().max()) < 1e-4  # masking a coupled layer = pruning it
        # masking only the branch's BatchNorm output (not its group) would be a different network
        assert float((engine.logits({"net.layer1.0.conv2": [0, 3]}) - engine.logits()).abs().max()) > 1e-3


# --- FLOPs ----------------------------------------------------------------------------------------------

def test_flops_agree_with_torch_flop_counter_and_work_without_metadata(model):
    from core.network.checkpoint import torchvision_model

    resnet = torchvision_model("resnet18", pretrained=False)
    small = core.prune(model, {"conv1": [0, 1], "fc1": list(range(50))})
    for net in (model, small, core.lenet5(), core.vgg16(0.25), core.vgg16(0.25, hidden_layers=2), resnet):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape(net)))
        assert 2 * core.model_totals(net)["flops"] == counter.get_total_flops()  # torch counts a MAC as 2 FLOPs
    fresh = core.vgg16(0.25)
    assert not hasattr(fresh, "meta") and input_shape(fresh) == (3, 32, 32)
    fresh.train()
    state = copy.deepcopy(fresh.state_dict())
    core.model_totals(fresh)
    assert fresh.training and all(torch.equal(state[k], v) for k, v in fresh.state_dict().items())  # BN untouched


# --- fine-tuning ------------------------------------------------------------------------------------------

def test_fine_tuning_raises_a_heavily_pruned_models_accuracy_on_a_copy(model, digits_val, digits_train, l1):
    plan = core.plan_from_widths(model, "3-4-8-6", l1)
    small = core.prune(model, plan)
    before_weights = weights_digest(small)
    before = core.evaluate(small, digits_val).accuracy
    result = core.finetune(small, digits_train, digits_val, "paper-a", epochs=2, eval_every=4,
                           track=("conv2", 1), am_steps=8)
    after = core.evaluate(result.model, digits_val).accuracy
    assert after > before + 0.05, (before, after)
    assert weights_digest(small) == before_weights  # the model passed in is untouched
    history = result.history
    assert history[0]["iteration"] == 0 and history[0]["val_accuracy"] == pytest.approx(before)
    assert [h["iteration"] for h in history if h["iteration"] % 4 == 0][:3] == [0, 4, 8]
    assert len(result.am_frames) == len(result.drift) >= 3 and result.drift[0] == 0.0
    assert all(0 <= d <= 2 for d in result.drift) and max(result.drift) > 0 and 0 < result.drift_floor <= 2
    assert result.am_frames[0][1].shape == (1, 28, 28)
    assert result.images_per_second > 0


def test_recipes_are_the_papers_and_take_user_settings():
    a, b = core.RECIPES["paper-a"], core.RECIPES["paper-b"]
    assert (a.lr, a.lr_end, a.momentum, a.weight_decay, a.patience) == (0.1, 0.001, 0.9, 5e-4, 5)
    assert (b.lr, b.lr_end, b.epochs, b.patience) == (0.001, None, 20, None)
    custom = core.make_recipe("paper-b", epochs=3, lr=0.01)
    assert (custom.epochs, custom.lr, custom.name) == (3, 0.01, "paper-b+custom")
    with pytest.raises(ValueError, match="unknown recipe"):
        core.make_recipe("paper-c")
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        core.make_recipe("paper-a", epochs=0)


def test_cancel_stops_fine_tuning_and_an_export_leaves_no_file(model, digits_val, digits_train, l1, tmp_path):
    small = core.prune(model, core.plan_from_widths(model, "5-7-45-20", l1))
    seen = []
    with pytest.raises(core.Cancelled):
        core.finetune(small, digits_train, digits_val, "paper-b", epochs=5, eval_every=2,
                      progress=lambda i, total, stats: seen.append(i), cancel=lambda: len(seen) >= 3)
    assert seen == [0, 2, 4]  # stopped at the first check after the third report
    target = tmp_path / "small.pt"
    with pytest.raises(core.Cancelled):
        core.export_checkpoint(small, target, cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []  # no target, no temporary file

    def crash(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError):
        atomic_write(target, crash)
    assert list(tmp_path.iterdir()) == []


# --- report and export ------------------------------------------------------------------------------------

def test_compress_model_report_checkpoint_with_lineage_and_onnx(model, digits_val, digits_train, l1, tmp_path):
    digits_test = core.load_dataset("digits", "test")
    plan = core.plan_from_widths(model, "5-7-45-20", l1)
    result = core.compress_model(model, digits_train, digits_val, plan, "paper-b", test=digits_test, epochs=1,
                                 eval_every=10, track=("conv2", int(l1["conv2"].top(1)[0])), am_steps=4)
    row = result.row
    assert row.widths == "5-7-45-20" and row.params == 7227 and row.flops == 134140
    assert row.compression == pytest.approx(core.model_totals(model)["params"] / 7227)
    assert row.accuracy_parent == core.evaluate(model, digits_test).accuracy
    assert row.accuracy_pruned == core.evaluate(result.pruned, digits_test).accuracy
    assert row.accuracy_finetuned == core.evaluate(result.model, digits_test).accuracy
    assert "5-7-45-20" in core.report_markdown([row]) and core.report_csv([row]).count("\n") == 2
    path = core.export_checkpoint(result.model, tmp_path / "small.pt")
    loaded = core.load_model(path, device="cpu")
    lineage = loaded.meta.lineage
    assert lineage["parent_sha256"] == model.meta.sha256 and lineage["plan"]["widths_string"] == "5-7-45-20"
    assert lineage["method"] == "L1 norm" and lineage["recipe"]["name"] == "paper-b+custom"
    assert lineage["accuracies"]["finetuned"] == row.accuracy_finetuned
    assert loaded.meta.arch_params["widths"] == [5, 7, 45, 20]
    assert core.evaluate(loaded, digits_test).accuracy == row.accuracy_finetuned
    onnx_path, diff = core.export_onnx(result.model, tmp_path / "small.onnx", digits_test.images[:32])
    assert onnx_path.exists() and diff <= 1e-4
    assert core.verify_onnx(loaded, onnx_path, digits_test.images[32:64]) <= 1e-4


# --- CLI -------------------------------------------------------------------------------------------------

def test_cli_compress_writes_checkpoint_onnx_and_json(tmp_path):
    out, onnx, report = tmp_path / "small.pt", tmp_path / "small.onnx", tmp_path / "report.json"
    done = run_cli("compress", "--plan", "5-7-45-20", "--method", "random", "--seed", "2", "--recipe", "paper-b",
                   "--epochs", "1", "--out", str(out), "--onnx", str(onnx), "--json", str(report), timeout=240)
    assert done.returncode == 0, done.stderr
    payload = json.loads(report.read_text())
    assert payload["plan"]["widths_string"] == "5-7-45-20" and payload["report"]["params"] == 7227
    assert payload["onnx_max_logit_diff"] <= 1e-4
    loaded = core.load_model(out, device="cpu")
    assert loaded.meta.lineage["method"].lower().startswith("random")
    assert "5-7-45-20" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--plan", "5-0-45-20"], "conv2: width 0 would remove every unit"),
    (["--plan", "5-7-45-200"], "fc2: cannot keep 200 units"),
    (["--pr", "-1"], "cannot be negative"),
    (["--flops", "1.5"], "--flops must be in (0, 1]"),
    (["--plan", "5-7-45-20", "--checkpoint", "nothing_here.pt"], "does not exist"),
])
def test_cli_compress_errors_are_one_line_exit_2(args, message, capsys):
    assert main(["compress", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: "), err
