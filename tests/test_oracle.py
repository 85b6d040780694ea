"""The oracle and greedy references, the one-sweep enumeration behind them, and the report card (issue 19)."""
from __future__ import annotations

import subprocess
import sys
from itertools import combinations

import numpy as np
import pytest
import torch

import core
from core.engine.enumerate import all_coalition_values
from core.pruning.oracle import GREEDY_LABEL, ORACLE_LABEL
from core.rankings import game, rank
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def conv1(model, digits_test):
    """The shipped LeNet's conv1 (10 units), the curves measured on 150 test digits."""
    return core.Engine(model, digits_test.subset(150)), "conv1"


def brute_force_best(engine, layer) -> tuple[np.ndarray, list]:
    """Highest accuracy over every removal of n units, n = 0..N, each by Engine.evaluate (a masked pass)."""
    units = engine.units(layer)
    best, where = np.full(units + 1, -1.0), [None] * (units + 1)
    for n in range(units + 1):
        for off in combinations(range(units), n):
            accuracy = engine.evaluate({layer: list(off)}).accuracy
            if accuracy > best[n] + 1e-12:
                best[n], where[n] = accuracy, off
    return best, where


def test_the_oracle_is_the_brute_force_maximum_and_its_ends_are_the_full_and_all_off_accuracy(conv1):
    engine, layer = conv1
    oracle = core.oracle_curve(engine, layer)
    best, _ = brute_force_best(engine, layer)
    np.testing.assert_allclose(oracle.accuracy, best, atol=1e-6)
    assert oracle.accuracy[0] == pytest.approx(engine.evaluate().accuracy)
    assert oracle.accuracy[-1] == pytest.approx(engine.evaluate({layer: range(10)}).accuracy)
    for n, off in zip(oracle.counts, oracle.removed):  # each point's mask really reaches that accuracy
        assert len(off) == n and engine.evaluate({layer: off}).accuracy == pytest.approx(oracle.accuracy[n])
    assert oracle.label == ORACLE_LABEL and np.ptp(oracle.accuracy) > 0.3


def test_the_oracle_is_above_every_ranking_and_every_random_order_at_every_point(conv1, digits_val, model):
    engine, layer = conv1
    rankings = [rank(model, digits_val, layer, m, **p) for m, p in
                [("l1", {}), ("taylor", {}), ("loo", {}), ("shapley", {"estimator": "exact"}),
                 ("banzhaf", {"samples": 200}), ("beta_shapley", {"estimator": "exact"}), ("activation", {})]]
    curves = core.curve_set(engine, layer, rankings, seeds=10, reference="oracle")
    oracle = curves.reference
    slack = 1e-6  # evaluate_masks averages in float32 (1e-8 off); a real step is 1 image = 1/150
    for curve in curves.curves:
        assert np.all(oracle.accuracy >= curve.accuracy - slack), curve.label
    assert np.all(oracle.accuracy >= curves.random.hi - slack)
    assert any(np.any(oracle.accuracy > c.accuracy + 1e-9) for c in curves.curves)  # it is not trivially equal
    assert curves.get(ORACLE_LABEL) is oracle and "reference" in curves.to_dict()
    assert ORACLE_LABEL in set(curves.summary()["method"]) and ORACLE_LABEL in set(curves.to_frame()["label"])


def hand_greedy(engine, layer):
    """Greedy backward elimination, one Engine.evaluate per candidate: best accuracy, then loss, then index."""
    units = engine.units(layer)
    off, accuracy = [], [engine.evaluate().accuracy]
    for _ in range(units):
        trials = []
        for unit in range(units):
            if unit not in off:
                result = engine.evaluate({layer: off + [unit]})
                trials.append((-result.accuracy, result.loss, unit))
        choice = min(trials)
        off.append(choice[2])
        accuracy.append(-choice[0])
    return off, np.array(accuracy)


@pytest.mark.parametrize("layer", ["conv1", "fc2"])
def test_the_greedy_reference_equals_a_hand_written_greedy(model, digits_test, layer):
    engine = core.Engine(model, digits_test.subset(150))
    greedy = core.greedy_curve(engine, layer)
    order, accuracy = hand_greedy(engine, layer)
    assert greedy.removed[-1] == order and greedy.label == GREEDY_LABEL
    np.testing.assert_allclose(greedy.accuracy, accuracy, atol=1e-6)
    if layer == "conv1":  # never above the oracle
        assert np.all(core.oracle_curve(engine, layer).accuracy >= greedy.accuracy - 1e-6)


def test_the_oracle_shares_the_exact_shapley_enumeration(model, digits_val, monkeypatch):
    data = digits_val.subset(90)
    calls = []
    real = game.all_coalitions
    monkeypatch.setattr(game, "all_coalitions", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    engine = core.Engine(model, data)
    exact = rank(model, data, "conv1", "shapley", estimator="exact", engine=engine)
    oracle = core.oracle_curve(engine, "conv1")
    assert calls == ["conv1"] and oracle.accuracy[0] == pytest.approx(exact.extra["v_all"])


@pytest.fixture(scope="module")
def small_lenet(digits_val):
    """A LeNet 6-9-12-9, briefly trained (its accuracy moves with the masks), on 70 validation digits."""
    from core.pruning.train import fit

    torch.manual_seed(0)
    model = core.lenet5(widths=(6, 9, 12, 9))
    fit(model, core.load_dataset("digits", "train").subset(600), digits_val, epochs=2, patience=2)
    return core.Engine(model, digits_val.subset(70))


@pytest.mark.parametrize("layer", ["conv1", "conv2", "fc1", "fc2"])  # conv and linear consumers, via Flatten or not
@pytest.mark.parametrize("kind", ["accuracy", "loss"])
def test_the_one_sweep_enumeration_equals_evaluate_masks_on_every_coalition(small_lenet, layer, kind):
    engine = small_lenet
    n = engine.units(layer)
    fast = all_coalition_values(engine, layer, kind)
    slow = game.coalition_values(game.payoff(engine, layer, kind), n)
    assert fast is not None and fast.shape == (2 ** n,)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert np.ptp(slow) > 0


@pytest.mark.parametrize("call, message", [
    (lambda e: core.oracle_curve(e, "fc1"), "the oracle reference needs 2^100"),
    (lambda e: core.curve_set(e, "fc1", ["l1"], reference="oracle"), "use the greedy reference"),
    (lambda e: core.curve_set(e, "conv1", ["l1"], reference="best"), "reference must be one of oracle, greedy, auto"),
    (lambda e: core.curve_set(e, "conv1", ["l1"], reference="oracle", direction="most"), "direction='least'"),
    (lambda e: core.reference_curve(e, "conv1", "exhaustive"), "reference must be one of"),
])
def test_bad_reference_input_is_one_clear_line(model, digits_test, call, message):
    with pytest.raises(ValueError, match=message.replace("^", r"\^")) as error:
        call(core.Engine(model, digits_test.subset(40)))
    assert "\n" not in str(error.value)


def test_the_report_card_gaps_winner_and_reading_are_computed_from_the_curves(conv1, digits_val, model):
    engine, layer = conv1
    rank_engine = core.Engine(model, digits_val)
    rankings = [rank(model, digits_val, layer, m, engine=rank_engine, **p) for m, p in
                [("l1", {}), ("loo", {}), ("shapley", {"estimator": "exact"}), ("banzhaf", {"samples": 100})]]
    curves = core.curve_set(engine, layer, rankings, reference="auto")
    card = core.report_card(curves, rankings, stability_seeds=2, rank_engine=rank_engine)
    table = card.table.set_index("ranking")
    oracle = curves.reference
    for curve in curves.curves:
        gap = (oracle.accuracy - curve.accuracy)[1:-1] * 100
        assert table.loc[curve.label, "mean gap (pts)"] == pytest.approx(gap.mean())
        assert table.loc[curve.label, "largest gap (pts)"] == pytest.approx(gap.max())
    assert table.loc["Shapley (exact)", "Spearman vs exact Shapley"] == pytest.approx(1.0)
    assert table.loc["L1 norm", "evaluations"] == 0 and table.loc["Leave-one-out", "evaluations"] == 11
    banzhaf_label = rankings[3].label
    assert 0 < table.loc[banzhaf_label, "same top-5 over seeds"] <= 1 and table.loc[banzhaf_label, "seed Spearman"] < 1
    assert np.isnan(table.loc["L1 norm", "seed Spearman"])  # not sampled
    means = card.table["mean gap (pts)"].iloc[:len(rankings)]
    assert list(means) == sorted(means) and card.table.iloc[0, 0] == "★" and card.winner == card.table["ranking"][0]
    assert card.reading.startswith(f"on conv1, {card.winner} is within") and "best possible removal" in card.reading
    assert "Random" in card.table["ranking"].iloc[-1] and "| ★ |" in card.markdown()


def test_the_report_card_needs_a_reference(conv1, digits_val, model):
    engine, layer = conv1
    curves = core.curve_set(engine, layer, ["l1"])
    with pytest.raises(ValueError, match="needs a reference curve"):
        core.report_card(curves, [])


def test_cli_curve_report_prints_the_card_and_refuses_the_oracle_on_a_wide_layer(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "core", "curve", "--limit", "80", *args],
                              capture_output=True, text=True, cwd=ROOT)
    good = run("--layer", "conv1", "--methods", "l1,loo", "--report", "--json", str(tmp_path / "c.json"))
    assert good.returncode == 0, good.stderr
    assert "Report card" in good.stdout and ORACLE_LABEL in good.stdout and "★" in good.stdout
    assert "on conv1, " in good.stdout
    import json
    payload = json.loads((tmp_path / "c.json").read_text())
    assert payload["reference"]["label"] == ORACLE_LABEL and payload["report_card"]["winner"]
    bad = run("--layer", "fc1", "--methods", "l1", "--reference", "oracle")
    assert bad.returncode == 2 and bad.stderr.count("\n") <= 1 and "greedy" in bad.stderr
