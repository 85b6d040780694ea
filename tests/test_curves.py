"""Pruning curves (core.curves) and the ``curve`` command: every point is the engine's answer."""
from __future__ import annotations

import numpy as np
import pytest

import core
from core.curves import layer_curve


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
    calls = []
    original = core.Engine.evaluate_masks

    def spy(self, layer, keep):
        calls.append(np.asarray(keep).shape)
        return original(self, layer, keep)
    monkeypatch.setattr(core.Engine, "evaluate_masks", spy)
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
