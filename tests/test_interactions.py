"""Pairwise Shapley interaction index (core/rankings/interactions.py): brute force, sampling, shapiq, SD."""
from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pytest
import torch

import core
from core.rankings import game
from core.rankings.interactions import exact_from_table, sampled

PLANTED = 4  # players of the planted game


def planted_game(coalition: frozenset) -> float:
    """Units 0 and 1 do the same job (either is enough: redundant); 2 and 3 only work together (synergy);
    plus an additive part, so single units have different values."""
    return (0.6 * bool({0, 1} & coalition) + 0.3 * ({2, 3} <= coalition)
            + 0.05 * (0 in coalition) + 0.02 * (2 in coalition))


def table_of(v, units: int) -> np.ndarray:
    return np.array([v(frozenset(j for j in range(units) if mask >> j & 1)) for mask in range(2 ** units)])


def brute_force_interaction(v, units: int, i: int, j: int) -> float:
    """Grabisch & Roubens (1999), written out: sum over S of s!(n-s-2)!/(n-1)! D_ij(S)."""
    others = [u for u in range(units) if u not in (i, j)]
    total = 0.0
    for size in range(len(others) + 1):
        weight = factorial(size) * factorial(units - size - 2) / factorial(units - 1)
        for members in combinations(others, size):
            s = frozenset(members)
            total += weight * (v(s | {i, j}) - v(s | {i}) - v(s | {j}) + v(s))
    return total


def keep_value(table: np.ndarray, units: int):
    def value(keep: np.ndarray) -> np.ndarray:
        return table[(keep.astype(np.int64) << np.arange(units)).sum(1)]
    return value


def test_interaction_index_equals_brute_force_on_a_planted_game():
    table = table_of(planted_game, PLANTED)
    matrix = exact_from_table(table, PLANTED)
    for i, j in combinations(range(PLANTED), 2):
        assert matrix[i, j] == pytest.approx(brute_force_interaction(planted_game, PLANTED, i, j), abs=1e-12)
        assert matrix[j, i] == matrix[i, j]
    assert matrix[0, 1] == pytest.approx(-0.6)  # the planted redundant pair
    assert matrix[2, 3] == pytest.approx(0.3)  # the planted synergistic pair
    rest = [matrix[i, j] for i, j in combinations(range(PLANTED), 2) if (i, j) not in ((0, 1), (2, 3))]
    assert np.allclose(rest, 0, atol=1e-12)
    assert np.all(np.diag(matrix) == 0)


def test_interaction_index_equals_brute_force_on_a_random_game():
    units = 6
    rng = np.random.default_rng(3)
    table = rng.random(2 ** units)

    def v(s):
        return table[sum(1 << u for u in s)]
    matrix = exact_from_table(table, units)
    for i, j in combinations(range(units), 2):
        assert matrix[i, j] == pytest.approx(brute_force_interaction(v, units, i, j), abs=1e-12)


def test_sampled_interactions_find_the_planted_pairs_and_are_exact_where_the_derivative_is_constant():
    table = table_of(planted_game, PLANTED)
    matrix, stderr, evaluations = sampled(keep_value(table, PLANTED), PLANTED, samples=5, seed=1)
    # in the planted game every D_ij(S) is the same for all S: every draw is exact
    assert np.allclose(matrix, exact_from_table(table, PLANTED), atol=1e-12)
    assert np.allclose(stderr, 0, atol=1e-12)
    assert evaluations == 2 * PLANTED * PLANTED * 5


def test_sampled_interactions_intervals_cover_the_exact_values_at_their_stated_rate():
    units, runs = 5, 120
    rng = np.random.default_rng(0)
    table = rng.random(2 ** units)
    exact = exact_from_table(table, units)
    i, j = np.triu_indices(units, 1)
    covered = []
    for seed in range(runs):
        matrix, stderr, _ = sampled(keep_value(table, units), units, samples=30, seed=seed)
        covered.append(np.abs(matrix - exact)[i, j] <= 1.96 * stderr[i, j])
    rate = np.mean(covered)
    assert 0.90 <= rate <= 0.985, rate  # stated 95%; 1,200 pair-intervals


def test_interactions_of_a_real_layer_match_an_independent_coalition_table(model, digits_val):
    engine = core.Engine(model, digits_val)
    result = core.interactions(model, digits_val, "conv1", engine=engine, cache=False)
    units = engine.units("conv1")
    keep = torch.from_numpy(game.bits(np.arange(2 ** units), units))
    table = np.concatenate([engine.evaluate_masks("conv1", keep[lo:lo + 256]).accuracy
                            for lo in range(0, len(keep), 256)])
    for i, j in [(0, 1), (2, 7), (4, 9)]:
        assert result.matrix[i, j] == pytest.approx(
            brute_force_interaction(lambda s: table[sum(1 << u for u in s)], units, i, j), abs=1e-9)
    assert result.evaluations == 2 ** units and result.v_all == pytest.approx(table[-1])
    pairs = result.pairs()
    assert len(pairs) == units * (units - 1) // 2 and pairs[0][2] == result.matrix.min()
    assert result.most_synergistic(1)[0][2] == result.matrix.max()


def test_shapiq_agrees_with_our_exact_shapley_values_and_interactions(model, digits_val):
    """The peer's exact computation (shapiq's ExactComputer) on the same layer game."""
    shapiq = pytest.importorskip("shapiq")
    engine = core.Engine(model, digits_val)
    units = engine.units("conv1")
    value = game.payoff(engine, "conv1")
    peer = shapiq.ExactComputer(game=lambda coalitions: value(np.asarray(coalitions, np.float32)), n_players=units)
    shapley = core.rank(model, digits_val, "conv1", "shapley", estimator="exact", engine=engine, cache=False)
    assert np.allclose(peer("SV", order=1).get_n_order_values(1), shapley.scores, atol=1e-9)
    ours = core.interactions(model, digits_val, "conv1", engine=engine, cache=False).matrix
    theirs = peer("SII", order=2).get_n_order_values(2)
    i, j = np.triu_indices(units, 1)
    assert np.allclose(theirs[i, j], ours[i, j], atol=1e-9)


def test_bad_input_is_one_clear_line(model, digits_val):
    with pytest.raises(ValueError, match=r"2\^100 coalitions for 100 units \(limit 20 units\); "
                                         r"use estimator='sampled' \(CLI: --estimator sampled\)"):
        core.interactions(model, digits_val, "fc1", estimator="exact")
    with pytest.raises(ValueError, match="unknown interaction estimator 'bogus'"):
        core.interactions(model, digits_val, "conv1", estimator="bogus")
    with pytest.raises(ValueError, match="at least 2 orders"):
        core.interactions(model, digits_val, "conv1", estimator="sampled", samples=1)
    with pytest.raises(ValueError, match="payoff"):
        core.interactions(model, digits_val, "conv1", payoff="fun")


def planted_similarity(layer: str, sd: np.ndarray):
    units = len(sd)
    return core.Similarity(layer, sd, sd, sd, np.zeros((units, 10)))


def test_similarity_vs_interactions_measures_the_pair_correlation():
    units = 6
    rng = np.random.default_rng(5)
    index = rng.normal(size=(units, units))
    index = (index + index.T) / 2
    np.fill_diagonal(index, 0)
    found = core.Interactions("fc2", index, None, "exact", {"payoff": "accuracy"}, 64)
    # SD a monotone function of I: similar pairs are exactly the redundant ones
    agreement = core.similarity_vs_interactions(planted_similarity("fc2", np.exp(index)), found, k=3)
    assert agreement.spearman == pytest.approx(1.0) and agreement.overlap == 3 and agreement.pairs == 15
    # reversed: similar pairs are the synergistic ones
    assert core.similarity_vs_interactions(planted_similarity("fc2", np.exp(-index)), found).spearman == \
        pytest.approx(-1.0)
    # a generic SD: Spearman over the 15 pairs i < j, as scipy computes it from the flat pair lists
    sd = rng.random((units, units))
    sd = sd + sd.T
    np.fill_diagonal(sd, 0)
    i, j = np.triu_indices(units, 1)
    from scipy.stats import spearmanr
    assert core.similarity_vs_interactions(planted_similarity("fc2", sd), found).spearman == pytest.approx(
        spearmanr(sd[i, j], index[i, j])[0])
    with pytest.raises(ValueError, match="not the same layer"):
        core.similarity_vs_interactions(planted_similarity("fc1", sd), found)


def test_interaction_figure_shows_the_matrix_in_cluster_order():
    index = np.array([[0, -0.5, 0.1], [-0.5, 0, 0.2], [0.1, 0.2, 0]])
    found = core.Interactions("conv1", index, np.full((3, 3), 0.01), "sampled",
                              {"payoff": "accuracy", "samples": 4, "seed": 0}, 72)
    clusters = core.Clusters("conv1", np.array([1, 0, 1]), 2, {}, np.array([1.0, 2.0, 3.0]), [[2, 0], [1]])
    figure = core.interaction_figure(found, clusters)
    heat = figure.data[0]
    assert list(heat.x) == ["unit 2", "unit 0", "unit 1"]
    assert np.allclose(np.array(heat.z), index[np.ix_([2, 0, 1], [2, 0, 1])])
    assert heat.zmid == 0 and heat.zmax == pytest.approx(0.5) and len(figure.layout.shapes) == 2


def test_cli_interactions_json_matches_the_library(model, digits_val, capsys):
    import json

    from core.cli import main

    assert main(["interactions", "--layer", "fc2", "--estimator", "sampled", "--samples", "3", "--seed", "4",
                 "--similarity", "--steps", "32", "--top", "3", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    found = core.interactions(model, digits_val, "fc2", estimator="sampled", samples=3, seed=4)
    assert np.allclose(payload["matrix"], found.matrix) and np.allclose(payload["stderr"], found.stderr)
    assert payload["evaluations"] == 2 * 25 * 25 * 3 + 1  # the walks and v(all)
    assert [tuple(p) for p in payload["most_redundant"]] == [tuple(p) for p in found.most_redundant(3)]
    agreement = core.similarity_vs_interactions(core.similarity_matrix(model, digits_val, "fc2", steps=32), found, k=3)
    assert payload["similarity_vs_interactions"] == pytest.approx(agreement.to_dict())


def test_cli_interactions_bad_input_is_one_line():
    from tests.test_cli import run_cli

    result = run_cli("interactions", "--layer", "fc1")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: the exact interaction index needs 2^100 coalitions for 100 units (limit 20 units); "
        "use estimator='sampled' (CLI: --estimator sampled)"]
    result = run_cli("interactions", "--layer", "conv1", "--estimator", "sampled", "--samples", "1")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_shapiq_svarm_is_offered_as_a_shapley_estimator(model, digits_val, monkeypatch):
    """shapiq's SVARM (it beat our sampler to a stable top-5 on conv2, benchmarks/bench_top5.py) through core.rank."""
    pytest.importorskip("shapiq")
    engine = core.Engine(model, digits_val)
    exact = core.rank(model, digits_val, "conv1", "shapley", estimator="exact", engine=engine)
    peer = core.rank(model, digits_val, "conv1", "shapley", estimator="svarm", samples=800, seed=2, engine=engine)
    assert peer.label == "Shapley (shapiq SVARM, 800 coalitions, seed 2)" and peer.stderr is None
    assert 0 < peer.extra["evaluations"] <= 800
    assert np.abs(peer.scores - exact.scores).max() < 0.03  # values of order 0.01-0.2
    assert peer.params == {"estimator": "svarm", "payoff": "accuracy", "samples": 800, "seed": 2}
    monkeypatch.setitem(__import__("sys").modules, "shapiq", None)  # not installed: one clear line
    with pytest.raises(ValueError, match="runs through shapiq, which is not installed"):
        core.rank(model, digits_val, "conv1", "shapley", estimator="svarm", samples=50, engine=engine, cache=False)


def test_cli_rank_svarm_matches_the_library(model, digits_val, tmp_path):
    pytest.importorskip("shapiq")
    import json

    from tests.test_cli import run_cli

    out = tmp_path / "svarm.json"
    result = run_cli("rank", "--layer", "conv1", "--svarm", "300", "--seed", "1", "--split", "val", "--json",
                     str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    expected = core.rank(model, digits_val, "conv1", "shapley", estimator="svarm", samples=300, seed=1)
    assert payload["params"] == expected.params and np.allclose(payload["scores"], expected.scores)
    result = run_cli("rank", "--layer", "conv1", "--method", "l1", "--svarm", "300")
    assert result.returncode == 2 and result.stderr.strip() == "error: --svarm applies to --method shapley only"
