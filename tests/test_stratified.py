"""Our stratified regression Shapley estimator (core/rankings/stratified.py) against exact values."""
from __future__ import annotations

import json

import numpy as np
import pytest

import core
from core.rankings import game
from core.rankings.stratified import minimum_budget, regression_samples, stratified
from tests.conftest import open_page, turn_off_lowest


def table_game(values: np.ndarray, units: int) -> game.Value:
    powers = 1 << np.arange(units, dtype=np.int64)
    return lambda keep: values[(np.asarray(keep) > 0.5).astype(np.int64) @ powers]


def exact(values: np.ndarray, units: int) -> np.ndarray:
    return game.semivalue(values, units, game.shapley_weights(units))


def random_game(units: int, seed: int) -> np.ndarray:
    """An accuracy-like game: additive part, a redundant pair, a synergistic pair, a saturating curve."""
    rng = np.random.default_rng(seed)
    bits = (np.arange(2 ** units)[:, None] >> np.arange(units)) & 1
    w = rng.uniform(0, 1, units)
    raw = bits @ w + 0.8 * (bits[:, 0] & bits[:, 1]) - 0.6 * (bits[:, 2] | bits[:, 3]) * 0 - \
        0.5 * (bits[:, 2] & bits[:, 3])
    return 0.1 + 0.85 * (1 - np.exp(-raw / 2))


def test_an_additive_game_is_recovered_exactly_once_every_size_has_its_regression():
    units = 9
    w = np.random.default_rng(0).normal(size=units)
    bits = (np.arange(2 ** units)[:, None] >> np.arange(units)) & 1
    value = table_game(0.3 + bits @ w, units)
    budget = 2 * units + 2 + (units - 3) * regression_samples(units)
    scores, stderr, extra = stratified(value, units, budget, seed=1)
    assert extra["evaluations"] == budget
    np.testing.assert_allclose(scores, w, atol=1e-5)  # the additive model is the game: no error left
    assert stderr.max() < 1e-5
    scores, stderr, extra = stratified(value, units, budget - 1, seed=1)  # one size short of its fit: plain means
    assert np.abs(scores - w).max() > 1e-3 and stderr.max() > 1e-3
    assert minimum_budget(units) == 2 * 9 + 2 + 2 * 6


def test_close_to_exact_and_spends_exactly_its_budget():
    units = 12
    values = random_game(units, 3)
    truth = exact(values, units)
    scores, stderr, extra = stratified(table_game(values, units), units, 3000, seed=0)
    assert extra["evaluations"] == 3000
    assert np.abs(scores - truth).max() < 4 * stderr.max() + 1e-3
    assert np.corrcoef(scores, truth)[0, 1] > 0.99


def test_intervals_cover_the_exact_values_at_their_rate():
    """95% intervals (±1.96 SE) over 150 seeds x 10 units: coverage near 95% (the SE is not made up)."""
    units = 10
    values = random_game(units, 5)
    truth = exact(values, units)
    value = table_game(values, units)
    covered, errors = [], []
    for seed in range(150):
        scores, stderr, _ = stratified(value, units, 400, seed=seed)
        covered.append(np.abs(scores - truth) <= 1.96 * stderr)
        errors.append(scores - truth)
    rate = np.mean(covered)
    assert 0.88 <= rate <= 0.99, rate
    assert np.abs(np.mean(errors, 0)).max() < 3 * np.std(errors, 0).max() / np.sqrt(150)  # unbiased


def test_halves_svarms_error_at_equal_budget():
    """What the estimator is for: at the same budget, a smaller error than shapiq's SVARM (README numbers)."""
    shapiq = pytest.importorskip("shapiq")
    units = 12
    values = random_game(units, 7)
    truth, value = exact(values, units), table_game(values, units)
    ours = np.mean([np.sum((stratified(value, units, 600, seed=s)[0] - truth) ** 2) for s in range(30)])
    peer = np.mean([np.sum((np.asarray(shapiq.SVARM(n=units, random_state=s).approximate(
        600, lambda c: value(np.asarray(c, np.float32))).get_n_order_values(1)) - truth) ** 2) for s in range(30)])
    assert ours < 0.7 * peer, (ours, peer)


def test_through_rank_on_a_real_layer(model, digits_val):
    engine = core.Engine(model, digits_val)
    truth = core.rank(model, digits_val, "conv1", "shapley", estimator="exact", engine=engine)
    r = core.rank(model, digits_val, "conv1", "shapley", estimator="stratified", samples=600, seed=3, engine=engine)
    assert r.label == "Shapley (stratified, 600 coalitions, seed 3)"
    assert r.params == {"estimator": "stratified", "payoff": "accuracy", "samples": 600, "seed": 3}
    assert r.extra["evaluations"] == 600 and r.stderr is not None and (r.stderr > 0).all()
    assert np.abs(r.scores - truth.scores).max() < 0.03
    with pytest.raises(ValueError, match=r"needs a budget of at least 36 coalitions for 10 units"):
        core.rank(model, digits_val, "conv1", "shapley", estimator="stratified", samples=20, engine=engine,
                  cache=False)


def test_cli_rank_stratified_matches_the_library(model, digits_val, tmp_path):
    from tests.test_cli import run_cli

    out = tmp_path / "stratified.json"
    result = run_cli("rank", "--layer", "conv1", "--stratified", "500", "--seed", "1", "--split", "val", "--json",
                     str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    expected = core.rank(model, digits_val, "conv1", "shapley", estimator="stratified", samples=500, seed=1)
    payload = json.loads(out.read_text())
    assert payload["params"] == expected.params and np.allclose(payload["scores"], expected.scores)
    result = run_cli("rank", "--layer", "conv1", "--stratified", "10")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: the stratified estimator needs a budget of at least 36 coalitions for 10 units "
        "(2N + 2 exact, 2 per coalition size), got 10"]


def test_rankings_page_offers_the_stratified_estimator(model, digits_val):
    at = open_page("pages/rankings.py", layer="conv1")
    at.multiselect[0].set_value(["Shapley"]).run()
    next(r for r in at.radio if r.label == "Estimator").set_value("stratified").run()
    budget = next(n for n in at.number_input if n.label == "Coalitions (budget)")
    assert budget.min == minimum_budget(10)
    budget.set_value(500).run()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    off = turn_off_lowest(at, "Shapley (stratified, 500 coalitions)", 3)
    lowest = core.rank(model, digits_val, "conv1", "shapley", estimator="stratified", samples=500, seed=0).lowest(3)
    assert off == sorted(lowest)
