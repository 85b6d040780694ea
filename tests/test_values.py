"""Issue 14: numbers a user reads off a chart or a table, pinned by value (hand computations,
scipy on known vectors, planted structure), so a wrong number fails a test and not only a crash."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import core
from core.engine.cache import cached, entry_path, load_entry
from core.rankings import method_params, rank
from core.rankings.agreement import kendall, spearman, top_k_overlap
from core.interpret.similarity import Clusters, Similarity, choose_clusters, cluster_filters, pruning_selection, sd_matrix


# --- baselines and agreement by hand -------------------------------------------------------------

def test_taylor_is_the_mean_over_images_of_the_absolute_spatial_mean_of_grad_times_activation(model, digits_val):
    """Paper B Eq. 7, by hand with autograd on a private copy: spatial mean, then |.|, then image mean."""
    net = copy.deepcopy(model)
    captured = []
    handle = net.conv2.register_forward_hook(lambda _m, _i, out: captured.append(out))
    loss = F.cross_entropy(net(digits_val.images), digits_val.labels, reduction="sum")
    handle.remove()
    (grad,) = torch.autograd.grad(loss, captured[0])
    product = (grad * captured[0]).detach()
    expected = product.mean((2, 3)).abs().mean(0).double().numpy()
    scores = rank(model, digits_val, "conv2", "taylor", cache=False).scores
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-9)
    wrong_order = product.abs().mean((2, 3)).mean(0).double().numpy()  # |.| before the spatial mean
    assert not np.allclose(scores, wrong_order, rtol=1e-2)
    fc = rank(model, digits_val, "fc1", "taylor", cache=False).scores  # fc units: one value per image
    captured.clear()
    handle = net.fc1.register_forward_hook(lambda _m, _i, out: captured.append(out))
    loss = F.cross_entropy(net(digits_val.images), digits_val.labels, reduction="sum")
    handle.remove()
    (grad,) = torch.autograd.grad(loss, captured[0])
    np.testing.assert_allclose(fc, (grad * captured[0]).detach().abs().mean(0).double().numpy(), rtol=1e-4,
                               atol=1e-9)


def test_activation_is_the_mean_not_the_max(model, digits_val):
    with torch.no_grad():
        out = model.conv2(model.conv1(model.input(digits_val.images)))
    scores = rank(model, digits_val, "conv2", "activation", cache=False).scores
    np.testing.assert_allclose(scores, out.mean((0, 2, 3)).double().numpy(), rtol=1e-5)
    assert not np.allclose(scores, out.amax((0, 2, 3)).double().numpy(), rtol=1e-2)


def test_spearman_kendall_and_chance_probability_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    b = np.array([2.0, 1.0, 4.0, 3.0, 6.0, 5.0])  # three adjacent swaps
    # Spearman: 1 - 6 sum d^2 / (n (n^2 - 1)) with every |d| = 1
    assert spearman(a, b) == pytest.approx(1 - 6 * 6 / (6 * 35))
    # Kendall: 15 pairs, 3 discordant: (12 - 3) / 15
    assert kendall(a, b) == pytest.approx((12 - 3) / 15)
    assert spearman(a, -a) == pytest.approx(-1) and kendall(a, a) == pytest.approx(1)
    # chance: P(|top-3 of a random order ∩ fixed top-3| >= 2) for N = 6, hypergeometric by hand
    overlap = top_k_overlap(a, np.array([6.0, 5.0, 1.0, 4.0, 3.0, 2.0]), 3)  # tops {5,4,3} and {0,1,3}
    assert overlap.common == [3]
    by_hand = sum(math.comb(3, j) * math.comb(3, 3 - j) for j in range(1, 4)) / math.comb(6, 3)
    assert overlap.p_chance == pytest.approx(by_hand) and overlap.fraction == pytest.approx(1 / 3)


# --- importance switches on a synthetic problem ---------------------------------------------------

@pytest.fixture(scope="module")
def half_dead_fc2(model):
    """The shipped LeNet with 12 of fc2's 25 units silenced: only the other 13 carry any signal."""
    net = copy.deepcopy(model)
    dead = list(range(0, 24, 2))
    with torch.no_grad():
        net.fc2[0].weight[dead] = 0
        net.fc2[0].bias[dead] = -1.0
    return net, dead


def test_switches_give_the_units_that_carry_the_signal_the_mass_and_a_strong_prior_flattens(half_dead_fc2,
                                                                                           digits_val):
    net, dead = half_dead_fc2
    live = [u for u in range(25) if u not in dead]
    train = core.load_dataset("digits", "train")
    weak = rank(net, digits_val, "fc2", "switches", epochs=15, alpha0=2.0, train=train, cache=False).scores
    assert set(np.argsort(-weak)[:8].tolist()) <= set(live)  # the units that carry the signal win
    assert weak[dead].max() <= weak[live].min() + 1e-6  # a silenced unit never beats a live one
    assert weak[live].sum() > 0.8  # and the live units hold the mass
    strong = rank(net, digits_val, "fc2", "switches", epochs=15, alpha0=5000.0, train=train, cache=False).scores
    assert np.ptp(strong) < 0.5 * np.ptp(weak)  # a stronger prior pulls the posterior towards uniform
    assert np.ptp(strong) < 0.01


def test_switch_prior_defaults_per_architecture(model, digits_val):
    """Paper A's authors' priors: alpha0 = 2 for LeNet, 0.05 for VGG (an explicit value wins)."""
    from types import SimpleNamespace

    from core.rankings import switches

    assert method_params("switches", {}, core.Engine(model, digits_val))["alpha0"] == 2.0
    vgg_engine = SimpleNamespace(model=SimpleNamespace(meta=SimpleNamespace(arch="vgg16")))
    assert switches.normalize(dict(switches.DEFAULTS), vgg_engine)["alpha0"] == 0.05
    assert switches.normalize({**switches.DEFAULTS, "alpha0": 1.5}, vgg_engine)["alpha0"] == 1.5


def test_switches_and_shapley_agree_on_the_top_units_of_fc2(model, digits_val):
    """The fast, always-run counterpart of the real-MNIST check (paper A Table 1: >= 50% top-5 overlap)."""
    shapley = rank(model, digits_val, "fc2", "shapley", samples=60)
    switches = rank(model, digits_val, "fc2", "switches", epochs=30)
    overlap = top_k_overlap(shapley, switches, 5)
    assert len(overlap.common) >= 3 and overlap.p_chance < 0.05, (shapley.top(5), switches.top(5))


# --- caches: keyed by the weights for every kind ---------------------------------------------------

def test_every_cached_kind_is_keyed_by_the_weights_even_for_pruned_copies(model, digits_val):
    first, second = core.prune_model(model, {"conv2": [0]}), core.prune_model(model, {"conv2": [1]})
    assert getattr(first.meta, "sha256", "") == getattr(second.meta, "sha256", "")  # no checkpoint hash to tell them apart
    results = {}
    for name, net in (("first", first), ("second", second)):
        results[name] = {
            "ranking": rank(net, digits_val, "conv2", "activation").scores,
            "am": core.am_images(net, "conv2", steps=8).images,
            "gamma": core.class_contributions(net, digits_val, "conv2")}
    for kind in results["first"]:
        assert not np.allclose(results["first"][kind], results["second"][kind]), kind
    np.testing.assert_allclose(results["second"]["ranking"],
                               rank(second, digits_val, "conv2", "activation", cache=False).scores)
    np.testing.assert_allclose(results["second"]["am"], core.am_images(second, "conv2", steps=8, cache=False).images)
    np.testing.assert_allclose(results["second"]["gamma"],
                               core.class_contributions(second, digits_val, "conv2", cache=False))


def test_a_crash_in_the_middle_of_a_cache_write_leaves_the_old_entry_intact(tmp_path, monkeypatch):
    monkeypatch.setenv("NRE_CACHE_DIR", str(tmp_path))
    key = {"what": "atomic"}
    cached("test", key, lambda: ({"x": np.arange(5.0)}, {"n": 1}))

    def crashing_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half an npz")  # part of a file, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crashing_savez)
    with pytest.raises(KeyboardInterrupt):
        cached("test", key, lambda: ({"x": np.zeros(5)}, {"n": 2}), refresh=True)
    arrays, meta = load_entry("test", key)
    np.testing.assert_array_equal(arrays["x"], np.arange(5.0))
    assert meta == {"n": 1}
    assert [p.name for p in entry_path("test", key).parent.iterdir()] == [entry_path("test", key).name]


# --- data and figures the README describes --------------------------------------------------------

def test_digits_are_resized_to_20x20_and_centred_in_28x28():
    from sklearn.datasets import load_digits

    val = core.load_dataset("digits", "val")
    assert val.images.shape[1:] == (1, 28, 28)
    border = torch.ones(28, 28, dtype=torch.bool)
    border[4:24, 4:24] = False
    assert val.images[:, 0][:, border].abs().max() == 0  # a 4-pixel empty frame
    from core.data.split import _split_indices

    raw = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16
    resized = F.interpolate(raw, size=(20, 20), mode="bilinear", align_corners=False).clamp(0, 1)
    expected = resized[_split_indices(len(raw), "val", (0.2, 0.2))]  # the fixed seeded 60/20/20 split
    torch.testing.assert_close(val.images[:, :, 4:24, 4:24], expected, rtol=0, atol=1e-6)


def test_sd_figure_orders_by_cluster_and_boxes_each_cluster():
    sd = np.arange(36, dtype=float).reshape(6, 6)
    sd = sd + sd.T
    np.fill_diagonal(sd, 0)
    similarity = Similarity("toy", sd, sd, sd, np.zeros((6, 2)))
    clusters = Clusters("toy", np.array([1, 0, 1, 0, 0, 2]), 3, {}, np.arange(6.0), [[4, 3, 1], [2, 0], [5]])
    figure = core.sd_figure(similarity, clusters)
    order = [4, 3, 1, 2, 0, 5]
    np.testing.assert_array_equal(np.array(figure.data[0].z), sd[np.ix_(order, order)])
    assert list(figure.data[0].x) == [f"unit {u}" for u in order]
    boxes = [(s.x0, s.x1, s.y0, s.y1) for s in figure.layout.shapes]
    assert boxes == [(-0.5, 2.5, -0.5, 2.5), (2.5, 4.5, 2.5, 4.5), (4.5, 5.5, 4.5, 5.5)]


def test_gamma_figure_is_centred_at_zero_with_98th_percentile_limits():
    rng = np.random.default_rng(0)
    gamma = rng.normal(size=(30, 10))
    gamma[3, 4] = 50.0  # one extreme cell must not wash out the others
    figure = core.gamma_figure(gamma, [str(c) for c in range(10)], units=list(range(29, -1, -1)))
    heat = figure.data[0]
    limit = np.percentile(np.abs(gamma), 98)
    assert heat.zmid == 0 and heat.zmax == pytest.approx(limit) and heat.zmin == pytest.approx(-limit)
    np.testing.assert_array_equal(np.array(heat.z), gamma[::-1])
    assert list(heat.y)[:2] == ["unit 29", "unit 28"]
    assert list(heat.x) == [str(c) for c in range(10)]  # one column per class, by name
    # a diverging scale, red for raising a class, blue for lowering it (colour-blind-safe RdBu, reversed)
    scale = [colour for _, colour in heat.colorscale]
    assert scale[0].replace(" ", "") == "rgb(5,48,97)" and scale[-1].replace(" ", "") == "rgb(103,0,31)"
    default = core.gamma_figure(gamma[:4], [str(c) for c in range(10)]).data[0]
    assert list(default.y) == ["unit 0", "unit 1", "unit 2", "unit 3"]  # units default to 0..n-1


# --- similarity on fc layers, locked units on a real layer -----------------------------------------

def test_fc_layers_use_the_pixel_am_distance(model, digits_val):
    similarity = core.similarity_matrix(model, digits_val, "fc2", steps=16)
    pixels, _, _ = sd_matrix(similarity.am.images, similarity.gamma, False, dead=similarity.dead)
    spectra, _, _ = sd_matrix(similarity.am.images, similarity.gamma, True, dead=similarity.dead)
    np.testing.assert_allclose(similarity.sd, pixels)
    assert not np.allclose(similarity.sd, spectra)


def test_locked_units_of_a_real_layer_are_never_pruned(model, digits_val):
    """A real layer (LeNet conv2, contribution index from the model) with a planted SD in which units 7
    and 13 have no twin: they must come out locked, and no pruning rate may remove them."""
    rng = np.random.default_rng(0)
    groups = np.array([0] * 6 + [1] * 6 + [2] * 6 + [3, 4])
    order = np.array([0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 7, 13])
    centres = np.eye(5, 8) * 20  # five far-apart groups, two of them single units
    points = np.empty((20, 8))
    points[order] = centres[groups] + rng.normal(size=(20, 8)) * 0.3
    sd = np.linalg.norm(points[:, None] - points[None], axis=-1)
    planted = Similarity("conv2", sd, sd, sd, np.zeros((20, 10)))
    clusters = cluster_filters(model, digits_val, "conv2", similarity=planted)
    assert clusters.locked == [7, 13] and clusters.k == 5
    for rate in np.linspace(0, 1, 11):
        removed = pruning_selection(clusters, rate)
        assert not {7, 13} & set(removed)
        assert len(removed) == min(round(rate * 20), 20 - 5)
    labels, _ = choose_clusters(sd)
    assert len(set(labels)) == 5


def test_cluster_rows_image_crosses_out_exactly_the_removed_units():
    """Paper B Fig. 3 on the clusters page: the removed units' tiles carry a red cross, no other tile does."""
    from core.interpret.similarity import cluster_rows_image

    members = [[5, 4, 3, 2, 1, 0], [8, 7, 6], [9]]
    clusters = Clusters("toy", np.array([0] * 6 + [1] * 3 + [2]), 3, {}, np.arange(10.0), members)
    images = np.full((10, 1, 8, 8), 0.5)
    removed = pruning_selection(clusters, 0.3)
    assert removed == [0, 1, 6]
    sheet = np.asarray(cluster_rows_image(images, clusters, removed, size=84, per_row=12))
    crossed = []
    for row, units in enumerate(members):
        for column, unit in enumerate(units):
            x, y = 150 + column * 90, 6 + row * (84 + 18 + 6) + 4 * row
            centre = sheet[y + 42, x + 42]
            if centre[0] > 200 and centre[1] < 80 and centre[2] < 80:  # the red cross meets at the centre
                crossed.append(unit)
    assert sorted(crossed) == removed


def test_sd_normalization_and_zero_rows_on_synthetic_inputs():
    """Mutation-testing survivors: each SD term has off-diagonal mean exactly 1, an all-zero gamma row
    stays 0 (not undefined), and the fc (pixel) pattern path is centred and unit-norm."""
    from core.interpret.similarity import pattern_vectors, unit_rows

    rng = np.random.default_rng(3)
    gamma = rng.normal(size=(5, 4))
    gamma[2] = 0.0
    rows = unit_rows(gamma)
    np.testing.assert_array_equal(rows[2], 0.0)
    np.testing.assert_allclose(np.linalg.norm(rows[[0, 1, 3, 4]], axis=1), 1.0)
    _, d_am, d_gamma = sd_matrix(rng.random((5, 1, 6, 6)), gamma, False)
    off = ~np.eye(5, dtype=bool)
    assert d_am[off].mean() == pytest.approx(1.0) and d_gamma[off].mean() == pytest.approx(1.0)
    pixels = pattern_vectors(rng.random((3, 1, 4, 4)) * 5 + 2, translation_invariant=False)
    np.testing.assert_allclose(pixels.sum(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(pixels, axis=1), 1.0)
