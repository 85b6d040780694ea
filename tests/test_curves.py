"""Pruning curves (core.curves) and the ``curve`` command: every point is the engine's answer."""
from __future__ import annotations

import numpy as np
import pytest

import core
from core.pruning.curves import layer_curve


def record_mask_calls(monkeypatch) -> list[tuple]:
    """From now on, the shape of every keep matrix given to Engine.evaluate_masks (one entry per engine call)."""
    calls = []
    original = core.Engine.evaluate_masks

    def spy(self, layer, keep):
        calls.append(np.asarray(keep).shape)
        return original(self, layer, keep)
    monkeypatch.setattr(core.Engine, "evaluate_masks", spy)
    return calls


@pytest.fixture(scope="module")
def engine(model, digits_val):
    return core.Engine(model, digits_val)


@pytest.fixture(scope="module")
def l1(model, digits_val, engine):
    return {layer: core.rank(model, digits_val, layer, "l1", engine=engine) for layer in engine.layers}


@pytest.mark.parametrize("layer", ["conv1", "conv2", "fc1", "fc2"])
@pytest.mark.parametrize("direction", ["least", "most"])
def test_layer_curve_points_equal_engine_evaluate(engine, l1, layer, direction):
    units = engine.units(layer)
    curve = layer_curve(engine, layer, l1[layer], direction=direction)
    expected_counts = np.arange(units + 1) if units <= 64 else curve.counts
    assert np.array_equal(curve.counts, expected_counts)
    assert curve.accuracy[0] == pytest.approx(engine.evaluate().accuracy, abs=1e-9)  # n = 0: the full model
    all_off = engine.evaluate({layer: range(units)})
    assert curve.counts[-1] == units and curve.accuracy[-1] == pytest.approx(all_off.accuracy, abs=1e-9)
    order = l1[layer].order()[::-1] if direction == "least" else l1[layer].order()
    for i, n in enumerate(curve.counts):
        assert curve.removed[i] == [int(u) for u in order[:n]]
        result = engine.evaluate(curve.off(i))
        assert curve.accuracy[i] == pytest.approx(result.accuracy, abs=1e-9), (layer, n)
        assert curve.loss[i] == pytest.approx(result.loss, rel=1e-5, abs=1e-6), (layer, n)


def test_layer_curve_is_one_batched_call(engine, l1, monkeypatch):
    calls = record_mask_calls(monkeypatch)
    layer_curve(engine, "conv2", l1["conv2"])
    assert calls == [(21, 20)]


def test_layer_curve_least_beats_most_and_matches_toggle_lowest(engine, l1):
    least = layer_curve(engine, "conv2", l1["conv2"], counts=[5])
    assert sorted(least.removed[0]) == sorted(l1["conv2"].lowest(5))  # "turn off the 5 lowest" on the toggles page
    scores = np.arange(20, dtype=float)  # a plain array: unit 0 least important
    curve = layer_curve(engine, "conv2", scores, counts=[0, 3, 20], direction="most")
    assert curve.removed == [[], [19, 18, 17], list(range(19, -1, -1))]
    assert curve.label == "scores"


@pytest.mark.parametrize("kwargs, message", [
    (dict(ranking=np.ones(7)), "conv2 has 20 units but the scores have shape (7,)"),
    (dict(ranking=np.ones(20), counts=[0, 21]), "counts must be between 0 and 20"),
    (dict(ranking=np.ones(20), counts=[1.5]), "counts must be whole numbers"),
    (dict(ranking=np.ones(20), direction="up"), "direction must be 'least' or 'most'"),
    (dict(ranking=np.full(20, np.nan)), "NaN"),
])
def test_layer_curve_bad_input_is_one_clear_line(engine, kwargs, message):
    with pytest.raises(ValueError, match=None) as info:
        layer_curve(engine, "conv2", **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_layer_curve_refuses_a_ranking_of_another_layer(engine, l1):
    with pytest.raises(ValueError, match="is of conv1, not conv2"):
        layer_curve(engine, "conv2", l1["conv1"])


# --- random band, curve sets ----------------------------------------------------------------------

from core.pruning.curve_sets import ALL_LAYERS, CurveSet, curve_set, summarize  # noqa: E402
from core.pruning.curves import RandomBand, Curve, random_band
from core.pruning.network_curves import network_curves, sensitivity_grid


def test_random_band_uses_distinct_seeded_orders_each_equal_to_the_random_ranking(model, digits_val, engine):
    band = random_band(engine, "conv2", seeds=6)
    assert band.seeds == [0, 1, 2, 3, 4, 5] and band.accuracy.shape == (6, 21)
    full_orders = {tuple(removed[-1]) for removed in band.removed}
    assert len(full_orders) == 6  # six distinct removal orders
    for s in (0, 3):
        ranking = core.rank(model, digits_val, "conv2", "random", seed=s, engine=engine)
        assert band.removed[s][-1] == [int(u) for u in ranking.order()[::-1]]  # seed s of the band is that ranking
    assert np.all(band.lo <= band.mean) and np.all(band.mean <= band.hi)
    assert np.allclose(band.std, band.accuracy.std(0))
    for s in range(6):
        for i in (1, 7, 15):
            assert band.accuracy[s, i] == pytest.approx(engine.evaluate({"conv2": band.removed[s][i]}).accuracy,
                                                        abs=1e-9)


def test_curve_set_stacks_every_method_and_seed_into_one_engine_call(engine, l1, monkeypatch):
    scores = np.linspace(0, 1, 20)
    taylor = core.rank(engine.model, engine.data, "conv2", "taylor", engine=engine)  # computed before the spy
    calls = record_mask_calls(monkeypatch)
    result = curve_set(engine, "conv2", [l1["conv2"], taylor, scores, "l1"], seeds=5)
    assert calls == [((3 + 5) * 21 + 1, 20)]  # + the unmasked network; L1 given twice (Ranking, name) counts once
    assert [c.label for c in result.curves] == ["L1 norm", "Taylor (grad x act)", "scores"]
    alone = core.layer_curve(engine, "conv2", taylor)
    assert np.array_equal(result.get("Taylor (grad x act)").accuracy, alone.accuracy)
    assert result.full_accuracy == engine.evaluate().accuracy
    assert result.get("Random (seed 2)").removed == result.random.removed[2]


def test_mirror_curve_loses_accuracy_faster(engine, l1):
    least = core.layer_curve(engine, "conv2", l1["conv2"])
    most = core.layer_curve(engine, "conv2", l1["conv2"], direction="most")
    assert most.accuracy[0] == least.accuracy[0] and most.accuracy[-1] == least.accuracy[-1]
    assert most.accuracy.mean() < least.accuracy.mean() - 0.1


def test_whole_network_curve_masks_every_layer_at_the_same_rate(engine, l1):
    result = network_curves(engine, [l1], rates=[0, 0.1, 0.5, 0.9], seeds=5)
    curve = result.curves[0]
    assert result.layer == ALL_LAYERS and curve.label == "L1 norm"
    assert curve.accuracy[0] == engine.evaluate().accuracy and curve.off(0) == {}  # rate 0 is the full model
    units = {layer: engine.units(layer) for layer in engine.layers}
    for i, rate in enumerate([0, 0.1, 0.5, 0.9]):
        off = curve.off(i)
        for layer, n in units.items():
            assert sorted(off.get(layer, [])) == sorted(l1[layer].lowest(int(round(rate * n))))
        assert curve.counts[i] == sum(int(round(rate * n)) for n in units.values())
        result_i = engine.evaluate(off)
        assert curve.accuracy[i] == pytest.approx(result_i.accuracy, abs=1e-9)
        assert curve.loss[i] == pytest.approx(result_i.loss, rel=1e-6)
    band = result.random
    assert band.accuracy.shape == (5, 4) and len({tuple(m[-1]["conv2"]) for m in band.masks}) == 5
    assert band.accuracy[3, 2] == pytest.approx(engine.evaluate(band.masks[3][2]).accuracy, abs=1e-9)
    assert np.all(band.accuracy[:, 0] == engine.evaluate().accuracy)


def test_sensitivity_grid_is_one_layer_at_a_time(engine, l1):
    grid = sensitivity_grid(engine, [l1], rates=[0.2, 0.6], seeds=5, layers=["conv1", "fc2"])
    assert grid.labels == ["L1 norm", "Random (mean of 5 seeds)"] and grid.accuracy.shape == (2, 2, 2)
    for j, layer in enumerate(["conv1", "fc2"]):
        n = engine.units(layer)
        for r, rate in enumerate([0.2, 0.6]):
            k = int(round(rate * n))
            assert grid.grid("L1 norm")[j, r] == pytest.approx(
                engine.evaluate({layer: l1[layer].lowest(k)}).accuracy, abs=1e-9)
        band = random_band(engine, layer, 5, counts=[int(round(0.2 * n)), int(round(0.6 * n))])
        assert np.allclose(grid.accuracy[1, j], band.mean)


def test_summary_numbers_on_a_hand_made_curve():
    counts = np.arange(5)
    band = RandomBand("x", counts, [0, 1, 2, 3, 4], np.array([[1.0, 0.9, 0.7, 0.5, 0.2]] * 4 + [[1.0, 0.95, 0.8, 0.4, 0.2]]),
                      np.zeros((5, 5)), [[[]] * 5] * 5, units=4)
    good = Curve("good", "x", counts, np.array([1.0, 0.995, 0.99, 0.6, 0.2]), np.zeros(5), [[]] * 5, method="shapley",
                 units=4)
    l1 = Curve("L1", "x", counts, np.array([1.0, 0.97, 0.85, 0.7, 0.2]), np.zeros(5), [[]] * 5, method="l1", units=4)
    table = summarize(CurveSet("x", "least", [good, l1], band, 1.0, 4)).set_index("method")
    assert table.loc["good", "area"] == pytest.approx((1 + 0.995 + 0.995 + 0.99 + 0.99 + 0.6 + 0.6 + 0.2) / 8)
    assert table.loc["good", "max rate within 1 pt"] == 0.5 and table.loc["good", "units within 1 pt"] == 2
    assert table.loc["L1", "max rate within 1 pt"] == 0.0
    # the two end points are one network for every ranking: not counted
    assert table.loc["good", "above band"] == "3/3" and table.loc["good", "below band"] == "0/3"
    assert table.loc["good", "first above band"] == 0.25
    assert table.loc["good", "vs L1 (above/below)"] == "2/1"
    assert table.loc["Random (mean of 5 seeds)", "area"] == pytest.approx(
        np.trapezoid(band.mean, counts / 4) if hasattr(np, "trapezoid") else np.trapz(band.mean, counts / 4))


@pytest.mark.parametrize("call, message", [
    (lambda e: curve_set(e, "conv2", ["nope"]), "unknown ranking method 'nope'"),
    (lambda e: curve_set(e, "conv2", []), "no ranking methods given"),
    (lambda e: curve_set(e, "conv2", ["random"]), "no ranking methods given"),
    (lambda e: network_curves(e, ["l1"], rates=[0, 1.0]), "pruning rates must be in [0, 1) (got 1)"),
    (lambda e: network_curves(e, ["l1"], rates=[-0.1]), "pruning rates must be in [0, 1) (got -0.1)"),
    (lambda e: sensitivity_grid(e, ["l1"], rates=[]), "rates is empty"),
    (lambda e: curve_set(e, "conv2", ["l1"], seeds=101), "between 5 and 100 (got 101)"),
    (lambda e: random_band(e, "conv2", seeds=4), "between 5 and 100 (got 4)"),
    (lambda e: curve_set(e, "conv9", ["l1"]), "unknown layer 'conv9'"),
    (lambda e: curve_set(e, "conv2", ["l1"], params={"shapley": {"samples": 5}}), "not among the methods"),
])
def test_bad_input_is_one_clear_line(engine, call, message):
    with pytest.raises(ValueError) as info:
        call(engine)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_figures_show_the_band_and_carry_point_data(engine, l1):
    result = curve_set(engine, "conv2", [l1["conv2"]], seeds=5)
    fig = core.curves_figure(result, mirror=curve_set(engine, "conv2", [l1["conv2"]], seeds=5, direction="most"))
    names = [t.name for t in fig.data]
    assert "random band (min-max of 5 seeds)" in names and fig.data[1].fill == "tonexty"
    assert np.allclose(fig.data[0].y, result.random.hi * 100) and np.allclose(fig.data[1].y, result.random.lo * 100)
    line = next(t for t in fig.data if t.name == "L1 norm")
    assert list(line.customdata[3][:2]) == ["L1 norm", 3]
    assert line.customdata[3][2] == " ".join(map(str, l1["conv2"].lowest(3)))
    assert any(t.name == "L1 norm (most important first)" and t.line.dash == "dot" for t in fig.data)
    grid = sensitivity_grid(engine, [l1], rates=[0.5], seeds=5, layers=["conv2", "fc2"])
    heat = core.sensitivity_figure(grid, "L1 norm")
    assert heat.data[0].type == "heatmap" and np.allclose(heat.data[0].z, grid.grid("L1 norm") * 100)


# --- CLI ------------------------------------------------------------------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from tests.conftest import ROOT  # noqa: E402


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_curve_writes_json_and_csv_equal_to_the_library(tmp_path, model, digits_val, digits_test):
    out, table = tmp_path / "c.json", tmp_path / "c.csv"
    done = cli("curve", "--layer", "conv2", "--methods", "l1,l2", "--random-seeds", "6", "--json", str(out),
               "--csv", str(table))
    assert done.returncode == 0, done.stderr
    assert "Pruning curves of conv2 (20 units)" in done.stdout and "L1 norm" in done.stdout
    payload = json.loads(out.read_text())
    engine = core.Engine(model, digits_test)  # curves on the test split, rankings on val (the defaults)
    l1 = core.rank(model, digits_val, "conv2", "l1")
    expected = core.layer_curve(engine, "conv2", l1)
    curve = payload["curves"][0]
    assert curve["label"] == "L1 norm" and curve["removed"] == expected.removed
    assert np.allclose(curve["accuracy"], expected.accuracy, atol=1e-9)
    assert len(payload["random"]["seeds"]) == 6 and payload["random"]["band"] == "min-max over seeds"
    assert [row["method"] for row in payload["summary"]] == ["L1 norm", "L2 norm", "Random (mean of 6 seeds)"]
    import pandas as pd
    rows = pd.read_csv(table)
    assert len(rows) == (2 + 6) * 21 + 3 * 21
    assert rows.query("label == 'L1 norm' and removed == 3").units_off.item() == \
        "conv2: " + " ".join(map(str, sorted(l1.lowest(3))))


def test_cli_curve_all_layers(tmp_path, model, digits_test, capsys):
    from core.cli import main

    out = tmp_path / "n.json"
    assert main(["curve", "--all-layers", "--methods", "l1", "--rates", "0,0.5", "--sensitivity", "--json",
                 str(out)]) == 0
    done = capsys.readouterr()
    payload = json.loads(out.read_text())
    assert payload["layer"] == "all layers" and payload["curves"][0]["rates"] == [0, 0.5]
    assert payload["curves"][0]["accuracy"][0] == core.evaluate(model, digits_test).accuracy
    assert payload["sensitivity"]["layers"] == ["conv1", "conv2", "fc1", "fc2"]
    assert "sensitivity" in done.out


@pytest.mark.parametrize("args, message", [
    (["--layer", "conv2", "--methods", ","], "--methods: give at least one method"),
    (["--layer", "conv2", "--methods", "l1,foo"], "unknown method 'foo'"),
    (["--all-layers", "--rates", "0,1"], "pruning rates must be in [0, 1) (got 1)"),
    (["--layer", "conv2", "--random-seeds", "1000"], "between 5 and 100 (got 1000)"),
    (["--layer", "conv2", "--sensitivity"], "--sensitivity goes with --all-layers"),
])
def test_cli_curve_errors_are_one_line(args, message, capsys):
    from core.cli import main

    assert main(["curve", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_many_curves_are_stacked_in_whole_curves_per_call(engine, l1, monkeypatch):
    calls = record_mask_calls(monkeypatch)
    every = np.arange(101)
    result = curve_set(engine, "fc1", [l1["fc1"]], seeds=5, counts=every)  # 6 curves x 101 points: 2 per call
    assert calls == [(203, 100), (202, 100), (202, 100)]
    monkeypatch.undo()
    for curve in (result.curves[0], result.random.curve(1), result.random.curve(4)):  # across the call boundaries
        for i in (0, 37, 99):
            assert curve.accuracy[i] == pytest.approx(engine.evaluate(curve.off(i)).accuracy, abs=1e-9)
    assert result.full_accuracy == engine.evaluate().accuracy
