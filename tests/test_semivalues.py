"""Semivalues (issue 19): Banzhaf (exact, MSR-sampled), Beta-Shapley (exact, sampled), leave-one-out."""
from __future__ import annotations

import subprocess
import sys
from itertools import combinations
from math import comb

import numpy as np
import pytest
from scipy import integrate, stats

import core
from core.rankings import banzhaf, beta_shapley, game, rank
from tests.conftest import ROOT


def voting_table(weights, quota) -> np.ndarray:
    """v(S) = 1 if the weights of S reach the quota (a weighted voting game), for every bitmask."""
    weights = np.asarray(weights)
    masks = np.arange(2 ** len(weights))
    return (game.bits(masks, len(weights)) @ weights >= quota).astype(float)


def brute_force(table: np.ndarray, n: int, weight_of_size) -> np.ndarray:
    """phi_i = sum over S without i of weight(|S|) (v(S+i) - v(S)), written with sets."""
    value = {frozenset(c): table[sum(1 << j for j in c)] for s in range(n + 1) for c in combinations(range(n), s)}
    phi = np.zeros(n)
    for coalition, v in value.items():
        for i in set(range(n)) - coalition:
            phi[i] += weight_of_size(len(coalition)) * (value[coalition | {i}] - v)
    return phi


def test_banzhaf_and_shapley_of_a_weighted_voting_game_are_the_known_values_and_only_shapley_is_efficient():
    table = voting_table([2, 1, 1], quota=3)  # A wins with B or C: A swings 3 of 4 coalitions, B and C one
    banzhaf_values = game.semivalue(table, 3, game.banzhaf_weights(3))
    shapley_values = game.semivalue(table, 3, game.shapley_weights(3))
    np.testing.assert_allclose(banzhaf_values, [3 / 4, 1 / 4, 1 / 4])
    np.testing.assert_allclose(shapley_values, [2 / 3, 1 / 6, 1 / 6])
    grand = table[-1] - table[0]
    assert shapley_values.sum() == pytest.approx(grand)  # efficiency: Shapley only
    assert banzhaf_values.sum() == pytest.approx(1.25) and abs(banzhaf_values.sum() - grand) > 0.2
    beta_values = game.semivalue(table, 3, game.beta_weights(3, 1, 16))
    assert abs(beta_values.sum() - grand) > 0.05


@pytest.mark.parametrize("alpha, beta", [(1, 1), (1, 16), (16, 1), (2.5, 0.5)])
def test_exact_semivalues_equal_brute_force_on_a_seven_player_voting_game(alpha, beta):
    n, table = 7, voting_table([5, 4, 3, 3, 2, 1, 1], quota=10)
    # Beta-Shapley's weight per coalition of size s, from its definition as an integral (Kwon & Zou 2022):
    # the others are each present with probability t, t ~ Beta(beta, alpha)
    integral = [integrate.quad(lambda t, s=s: t ** s * (1 - t) ** (n - 1 - s) * stats.beta.pdf(t, beta, alpha),
                               0, 1)[0] for s in range(n)]
    np.testing.assert_allclose(game.beta_weights(n, alpha, beta), integral, rtol=1e-6)
    np.testing.assert_allclose(game.semivalue(table, n, game.beta_weights(n, alpha, beta)),
                               brute_force(table, n, lambda s: integral[s]), atol=1e-9)
    np.testing.assert_allclose(game.semivalue(table, n, game.banzhaf_weights(n)),
                               brute_force(table, n, lambda s: 0.5 ** (n - 1)), atol=1e-12)
    if alpha == beta == 1:
        np.testing.assert_allclose(game.beta_weights(n, 1, 1), game.shapley_weights(n))
    # the size distribution sums to one for Beta-Shapley (a probability over coalition sizes)
    assert sum(comb(n - 1, s) * w for s, w in enumerate(game.beta_weights(n, alpha, beta))) == pytest.approx(1)


def test_beta_with_beta_above_alpha_weights_nearly_full_coalitions():
    weights = game.beta_weights(20, 1, 16)
    mass = np.array([comb(19, s) * w for s, w in enumerate(weights)])
    assert mass[15:].sum() > 0.5 and np.argmax(mass) == 19


def smooth_game(n: int = 8, seed: int = 0):
    """A game with graded values: v(S) = sigmoid(sum of weights + a redundant pair + a synergy)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.3, 0.4, n)

    def value(keep: np.ndarray) -> np.ndarray:
        x = keep @ w - 0.8 * keep[:, 0] * keep[:, 1] + 1.2 * keep[:, 2] * keep[:, 3]
        return 1 / (1 + np.exp(-(x - 1)))
    return value, value(game.bits(np.arange(2 ** n), n))


def test_msr_banzhaf_intervals_cover_the_exact_values_at_their_stated_rate():
    n = 8
    value, table = smooth_game(n)
    exact = game.semivalue(table, n, game.banzhaf_weights(n))
    covered, total, z = 0, 0, stats.norm.ppf(0.975)
    for seed in range(300):
        estimate, stderr, extra = banzhaf.msr(value, n, samples=120, seed=seed)
        assert extra["evaluations"] == 120  # one evaluation per coalition updates every unit
        covered += int(np.sum(np.abs(estimate - exact) <= z * stderr))
        total += n
    assert 0.93 <= covered / total <= 0.97, covered / total


def test_sampled_beta_shapley_intervals_cover_the_exact_values():
    n = 8
    value, table = smooth_game(n, seed=3)
    exact = game.semivalue(table, n, game.beta_weights(n, 1, 4))
    covered, total = 0, 0
    for seed in range(200):
        estimate, stderr, extra = beta_shapley.sampled(value, n, 1, 4, samples=60, seed=seed)
        assert extra["evaluations"] == 60 * (n + 1)
        covered += int(np.sum(np.abs(estimate - exact) <= 1.96 * stderr))
        total += n
    assert 0.92 <= covered / total <= 0.975, covered / total


@pytest.fixture(scope="module")
def small(model, digits_val):
    """The shipped LeNet's conv1 (10 units) on 120 validation digits: brute force through Engine.evaluate."""
    data = digits_val.subset(120)
    engine = core.Engine(model, data)
    table = np.array([engine.evaluate({"conv1": [j for j in range(10) if not mask >> j & 1]}).accuracy
                      for mask in range(2 ** 10)])
    return model, data, table


def test_the_registry_methods_equal_brute_force_on_a_real_layer(small):
    model, data, table = small
    n = 10
    cases = {("banzhaf", ()): lambda s: 0.5 ** (n - 1),
             ("beta_shapley", (("alpha", 1.0), ("beta", 16.0))): lambda s: game.beta_weights(n, 1, 16)[s],
             ("beta_shapley", (("alpha", 3.0), ("beta", 2.0))): lambda s: game.beta_weights(n, 3, 2)[s]}
    for (method, params), weight in cases.items():
        ranking = rank(model, data, "conv1", method, estimator="exact", cache=False, **dict(params))
        np.testing.assert_allclose(ranking.scores, brute_force(table, n, weight), atol=1e-9)
        assert ranking.extra["evaluations"] == 2 ** n and ranking.stderr is None
    loo = rank(model, data, "conv1", "loo", cache=False)
    np.testing.assert_allclose(loo.scores, [table[-1] - table[(2 ** n - 1) ^ (1 << i)] for i in range(n)])
    assert loo.extra["evaluations"] == n + 1 and np.ptp(loo.scores) > 0.01


def test_sampled_semivalues_on_a_real_layer_agree_with_exact_within_their_errors(small):
    model, data, table = small
    exact = rank(model, data, "conv1", "banzhaf", estimator="exact")
    msr = rank(model, data, "conv1", "banzhaf", estimator="sampled", samples=600, seed=1)
    assert np.all(np.abs(msr.scores - exact.scores) <= 4.5 * msr.stderr)
    assert msr.extra["evaluations"] == 600 and msr.label == "Banzhaf (MSR, 600 coalitions, seed 1)"
    beta = rank(model, data, "conv1", "beta_shapley", samples=80, seed=2)
    beta_exact = rank(model, data, "conv1", "beta_shapley", estimator="exact")
    assert np.all(np.abs(beta.scores - beta_exact.scores) <= 4.5 * beta.stderr + 1e-12)


def test_exact_shapley_and_the_semivalues_share_one_enumeration(small, monkeypatch):
    model, data, _ = small
    calls = []
    real = game.all_coalitions
    monkeypatch.setattr(game, "all_coalitions", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    data = data.subset(100)  # a split no earlier test enumerated
    shapley = rank(model, data, "conv1", "shapley", estimator="exact")
    banzhaf_ = rank(model, data, "conv1", "banzhaf", estimator="exact")
    rank(model, data, "conv1", "beta_shapley", estimator="exact", beta=4)
    assert calls == ["conv1"]  # enumerated once, read from the disk table by the others
    assert not np.allclose(shapley.scores, banzhaf_.scores)


@pytest.mark.parametrize("method, params, message", [
    ("beta_shapley", {"gamma": 2}, "beta_shapley has no parameter 'gamma'"),
    ("banzhaf", {"alpha": 2}, "banzhaf has no parameter 'alpha'"),
    ("beta_shapley", {"alpha": 0}, "alpha must be a positive number"),
    ("beta_shapley", {"beta": "wide"}, "beta must be a positive number"),
    ("banzhaf", {"estimator": "truncated"}, "unknown Banzhaf estimator 'truncated'"),
    ("banzhaf", {"samples": 3}, "at least 8 coalitions"),
    ("loo", {"payoff": "f1"}, "payoff must be 'accuracy' or 'loss'"),
    ("banzhaf", {"estimator": "exact", "layer": "fc1"}, "2^100"),
])
def test_bad_semivalue_input_is_one_clear_line(model, digits_val, method, params, message):
    layer = params.pop("layer", "conv1")
    with pytest.raises(ValueError, match=message.replace("^", r"\^")) as error:
        rank(model, digits_val, layer, method, cache=False, **params)
    assert "\n" not in str(error.value)


def test_cli_ranks_by_the_semivalues_and_refuses_bad_input_in_one_line():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "core", "rank", "--layer", "conv1", "--limit", "60", *args],
                              capture_output=True, text=True, cwd=ROOT)
    good = run("--method", "beta_shapley", "--exact", "--alpha", "1", "--beta", "8")
    assert good.returncode == 0 and "Beta-Shapley (α=1, β=8, exact)" in good.stdout
    for args, message in ((("--method", "loo", "--samples", "5"), "--samples does not apply to --method loo"),
                          (("--method", "beta_shapley", "--beta", "-1"), "beta must be a positive number"),
                          (("--method", "l1", "--alpha", "2"), "--alpha applies to --method beta_shapley only")):
        bad = run(*args)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and message in bad.stderr, bad.stderr
