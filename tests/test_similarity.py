"""Class contributions, similarity degree, clusters and in-cluster pruning (paper B)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import core
from core.cli import main
from core.interpret.contributions import class_contributions
from core.interpret.similarity import Clusters, choose_clusters, cluster_filters, pruning_selection, sd_matrix, similarity_matrix


def test_gamma_matches_finite_differences_on_a_tiny_model(digits_val):
    torch.manual_seed(0)
    tiny = core.lenet5(widths=(3, 4, 8, 6)).eval()
    data = digits_val.subset(64)
    gamma = class_contributions(tiny, data, "conv2", batch_size=20, cache=False)  # several batches
    engine = core.Engine(tiny, data)
    eps = 1e-2
    for unit in range(4):
        def mean_probability(value: float) -> np.ndarray:
            gate = torch.ones(4)
            gate[unit] = value
            with torch.no_grad():
                return engine.gated_logits("conv2", gate).softmax(-1).mean(0).double().numpy()
        numeric = (mean_probability(1 + eps) - mean_probability(1 - eps)) / (2 * eps)
        np.testing.assert_allclose(gamma[unit], numeric, atol=2e-5, rtol=2e-2)
    np.testing.assert_allclose(gamma.sum(1), 0, atol=1e-6)  # probabilities sum to 1 for every gate


@pytest.fixture(scope="module")
def conv2(model, digits_val):
    similarity = similarity_matrix(model, digits_val, "conv2")
    return similarity, cluster_filters(model, digits_val, "conv2", similarity=similarity)


def test_sd_is_a_symmetric_dissimilarity_with_zero_diagonal(conv2):
    sd = conv2[0].sd
    assert sd.shape == (20, 20)
    np.testing.assert_allclose(sd, sd.T, atol=1e-12)
    assert np.all(np.diag(sd) == 0) and np.all(sd[~np.eye(20, dtype=bool)] > 0)
    off = ~np.eye(20, dtype=bool)  # each term is normalized to mean 1 over the pairs
    assert conv2[0].am_distance[off].mean() == pytest.approx(1) and conv2[0].gamma_distance[off].mean() == pytest.approx(1)


def test_sd_ignores_brightness_and_shifts_of_conv_patterns():
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, 16, 16))
    images[1] = 0.5 * np.roll(images[0], (3, 5), axis=(1, 2)) + 0.2  # same pattern, shifted and dimmer
    gamma = rng.normal(size=(3, 10))
    gamma[1] = 3 * gamma[0]  # same classes, pushed harder
    sd, d_am, d_gamma = sd_matrix(images, gamma, translation_invariant=True)
    assert d_am[0, 1] == pytest.approx(0, abs=1e-9) and d_gamma[0, 1] == pytest.approx(0, abs=1e-9)
    assert sd[0, 1] < sd[0, 2] and sd[0, 1] < sd[1, 2]


def test_cluster_count_and_partition(conv2):
    clusters = conv2[1]
    assert 1 <= clusters.k <= 20 // 2
    assert sorted(clusters.order()) == list(range(20))  # every unit in exactly one cluster
    for members in clusters.members:  # highest contribution index first inside a cluster
        assert list(clusters.contribution[members]) == sorted(clusters.contribution[members], reverse=True)
    assert set(clusters.silhouette) == set(range(2, 11))


def test_k_search_finds_planted_clusters_and_falls_back_to_one():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 5)) * 10
    points = np.concatenate([c + rng.normal(size=(6, 5)) for c in centres])
    sd = np.linalg.norm(points[:, None] - points[None], axis=-1)
    labels, _ = choose_clusters(sd)
    assert len(set(labels)) == 3
    noise = rng.normal(size=(18, 40))  # no structure at all
    labels, scores = choose_clusters(np.linalg.norm(noise[:, None] - noise[None], axis=-1))
    assert max(scores.values()) < 0.1 and set(labels) == {0}


def test_pruning_never_takes_locked_units_and_follows_cluster_shares():
    # clusters of 6, 3 and 1 (locked) units; contribution index = unit number
    labels = np.array([0] * 6 + [1] * 3 + [2])
    members = [[5, 4, 3, 2, 1, 0], [8, 7, 6], [9]]
    clusters = Clusters("toy", labels, 3, {}, np.arange(10.0), members)
    assert clusters.locked == [9]
    for rate in np.linspace(0, 1, 21):
        removed = pruning_selection(clusters, rate)
        assert 9 not in removed
        assert len(removed) == min(round(rate * 10), 10 - 3)
        for m in members:  # every cluster keeps a unit, and loses its lowest contributions first
            gone = [u for u in m if u in removed]
            assert len(gone) < len(m) and gone == m[len(m) - len(gone):]
    assert pruning_selection(clusters, 0.3) == [0, 1, 6]  # 6 and 3 units share 3 as 2 : 1
    with pytest.raises(ValueError, match="between 0 and 1"):
        pruning_selection(clusters, 1.5)


def test_the_page_and_the_plans_apportion_cluster_shares_alike():
    """Similar filters' selection at a rate = the plan's cluster-level removal of as many units (one D'Hondt
    order): clusters of 7, 2 and 2 removing 2 give 2 : 0 : 0 (largest remainder would give 1 : 1 : 0), and a
    larger count always removes a superset."""
    labels = np.array([0] * 7 + [1] * 2 + [2] * 2)
    members = [[6, 5, 4, 3, 2, 1, 0], [8, 7], [10, 9]]
    clusters = Clusters("toy", labels, 3, {}, np.arange(11.0), members)
    assert pruning_selection(clusters, 2 / 11) == [0, 1]
    order, _ = core.pruning.plans.cluster_order(clusters)
    previous: set[int] = set()
    for count in range(0, 12):
        removed = pruning_selection(clusters, count / 11)
        assert removed == sorted(order[:count]) and previous <= set(removed)
        previous = set(removed)


def test_real_clusters_pruning_respects_locks(conv2):
    # LeNet conv2 has no locked unit (so this alone would pass trivially); tests/test_values.py plants
    # singletons on a real layer. Here: a rate removes exactly its share, never a locked unit
    clusters = conv2[1]
    for rate in (0.1, 0.3, 0.5, 0.9):
        removed = pruning_selection(clusters, rate)
        assert not set(removed) & set(clusters.locked)
        assert len(removed) == min(round(rate * 20), 20 - clusters.k)


def test_cli_clusters_json(conv2, capsys):
    assert main(["clusters", "--layer", "conv2", "--json", "--rate", "0.25"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["k"] == conv2[1].k and payload["clusters"] == conv2[1].members
    assert len(payload["pruned"]) == 5 and not set(payload["pruned"]) & set(payload["locked"])
    assert main(["clusters", "--layer", "conv2", "--rate", "2"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
