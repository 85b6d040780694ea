"""Issue 10: the places where we follow or knowingly differ from papers A and B, tested by value.

Sampled Shapley's statistics are checked on simulated games whose Shapley values are known, so
the claims (standard errors, antithetic pairs, early-stop confidence, truncation) are tested
against the truth rather than against another estimate.
"""
from __future__ import annotations

import copy
import threading
from itertools import combinations
from math import factorial

import numpy as np
import pytest
import torch

import core
from core.data import DataSplit
from core.rankings import METHODS, method_params, rank
from core.rankings import shapley as shapley_module
from core.rankings.shapley import sampled
from core.interpret.similarity import sd_matrix, similarity_matrix


# --- simulated games with known Shapley values --------------------------------------------------

def concave_game(weights):
    """v(C) = 1 - exp(-sum_{i in C} w_i): saturates like accuracy, so a unit's marginal depends on
    where it comes in a permutation (early = large), which is what antithetic pairs exploit."""
    w = np.asarray(weights, dtype=float)
    return lambda keep: 1 - np.exp(-np.asarray(keep, dtype=float) @ w)


def noisy_additive_game(weights, sigma, seed):
    """v(C) = sum_{i in C} w_i + fresh N(0, sigma) noise per evaluation of a partial coalition (v(none) and
    v(all) exact, as accuracy is): Shapley values = w exactly."""
    w, rng = np.asarray(weights, dtype=float), np.random.default_rng(10_000 + seed)

    def value(keep):
        keep = np.asarray(keep, dtype=float)
        partial = (keep.sum(1) > 0) & (keep.sum(1) < len(w))
        return keep @ w + rng.normal(0, sigma, len(keep)) * partial
    return value


def brute_force_shapley(value, n):
    """Eq. 2 over all 2^n coalitions (independent of core.rankings.shapley)."""
    coalitions = [frozenset(c) for s in range(n + 1) for c in combinations(range(n), s)]
    keep = np.array([[1.0 if i in c else 0.0 for i in range(n)] for c in coalitions])
    v = dict(zip(coalitions, value(keep)))
    sv = np.zeros(n)
    for c in coalitions:
        for i in set(range(n)) - c:
            sv[i] += factorial(len(c)) * factorial(n - len(c) - 1) / factorial(n) * (v[c | {i}] - v[c])
    return sv


CONCAVE_W = [0.9, 0.8, 0.75, 0.7, 0.3, 0.2]


def test_sampled_standard_errors_are_calibrated_on_a_game_with_known_values():
    """+-1.96 SE must cover the true value about 95% of the time: not much less (SE too small) and
    not much more (SE too large, e.g. antithetic partners counted as independent)."""
    value = concave_game(CONCAVE_W)
    truth = brute_force_shapley(value, len(CONCAVE_W))
    covered = []
    for seed in range(150):
        estimate, stderr, extra = sampled(value, len(CONCAVE_W), 40, seed)
        assert extra["permutations"] == 40
        covered.append(np.abs(estimate - truth) <= 1.96 * stderr)
    coverage = np.mean(covered)
    assert 0.89 <= coverage <= 0.985, coverage


def test_antithetic_pairs_are_reversed_permutations_and_reduce_the_error():
    n = len(CONCAVE_W)
    seen = []
    game = concave_game(CONCAVE_W)

    def spy(keep):
        seen.append(np.array(keep))
        return game(keep)

    sampled(spy, n, 8, seed=0)
    prefixes = np.concatenate(seen[1:]).reshape(8, n - 1, n)  # after v(none), v(all): 8 chains of N-1 prefixes
    for forward, backward in zip(prefixes[0::2], prefixes[1::2]):
        # the reverse permutation's prefix of size s is the complement of the forward prefix of size N - s
        np.testing.assert_array_equal(backward, 1 - forward[::-1])
    truth = brute_force_shapley(game, n)
    errors = {pairs: np.mean([np.abs(sampled(game, n, 40, seed, antithetic=pairs)[0] - truth).mean()
                              for seed in range(40)]) for pairs in (True, False)}
    assert errors[True] < 0.7 * errors[False], errors


def test_early_stop_error_rate_is_at_most_its_stated_level():
    """A simulated game with a close top unit: an early stop that names a wrong top unit is an error;
    its rate over many runs must not exceed 1 - confidence. On a game with a clear top unit the
    rule must fire (a test of a rule that never stops would be vacuous) and be right."""
    confidence, runs = 0.95, 100
    errors = 0
    for seed in range(runs):
        estimate, _, extra = sampled(noisy_additive_game([1.08] + [1.0] * 5, 0.25, seed), 6, 400, seed, top_k=1,
                                     confidence=confidence)
        errors += int(extra["stopped_early"] and np.argmax(estimate) != 0)
    assert errors / runs <= 1 - confidence, errors
    for seed in range(20):
        estimate, _, extra = sampled(noisy_additive_game([1.5] + [1.0] * 5, 0.25, seed), 6, 400, seed, top_k=1,
                                     confidence=confidence)
        assert extra["stopped_early"] and extra["permutations"] < 400 and np.argmax(estimate) == 0


def test_early_stop_intervals_are_simultaneous_over_units():
    """The stop compares intervals of half-width bound_z * SE; all of them must hold at once with the
    stated confidence (Bonferroni), which per-unit 90% intervals would not (0.9^6 ~ 0.53)."""
    weights, n, confidence = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 6, 0.9
    all_covered = []
    for seed in range(150):
        estimate, stderr, extra = sampled(noisy_additive_game(weights, 0.2, seed), n, 40, seed,
                                          confidence=confidence)
        all_covered.append(np.all(np.abs(estimate - np.array(weights)) <= extra["bound_z"] * stderr))
    # at least the stated level, up to the simulation's own noise (2 binomial SEs over 150 runs: 0.05)
    assert np.mean(all_covered) >= confidence - 2 * np.sqrt(confidence * (1 - confidence) / 150), np.mean(all_covered)


def test_truncation_is_exact_when_the_rest_is_truly_zero_and_counts_its_evaluations():
    """On a game that saturates exactly (v = min(1, 0.4 * units of S on)), every marginal after
    saturation is 0, so TMC with a tiny tolerance gives the untruncated estimates with fewer coalitions."""
    n, useful = 12, np.array([1, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1], dtype=float)
    calls = {"rows": 0}

    def game(keep):
        calls["rows"] += len(keep)
        return np.minimum(1.0, 0.4 * (np.asarray(keep) @ useful))

    full, _, full_extra = sampled(game, n, 60, seed=5)
    calls["rows"] = 0
    cut, _, cut_extra = sampled(game, n, 60, seed=5, truncation=1e-9)
    np.testing.assert_allclose(cut, full, atol=1e-12)
    assert cut_extra["evaluations"] == calls["rows"]  # what it reports is what it evaluated
    assert cut_extra["evaluations"] < 0.8 * full_extra["evaluations"]
    # with a real tolerance on a smooth game, truncation cuts evaluations and biases only the small marginals
    value = concave_game(CONCAVE_W * 2)
    plain, _, plain_extra = sampled(value, 12, 40, seed=1)
    tmc, _, tmc_extra = sampled(value, 12, 40, seed=1, truncation=0.02)
    assert tmc_extra["evaluations"] < plain_extra["evaluations"]
    assert not np.allclose(tmc, plain)
    assert np.abs(tmc - plain).max() <= 0.02 + 1e-9  # the dropped tail of each permutation is < tol
    # the residual v(all) - v(truncation point) is dropped, not handed to the next unit: efficiency is lost
    assert plain.sum() == pytest.approx(plain_extra["v_all"] - plain_extra["v_none"])
    assert tmc.sum() < plain.sum() - 1e-4
    # and it is exactly TMC, walked by hand over the same permutations (drawn as documented)
    rng, by_hand = np.random.default_rng(1), np.zeros(12)
    for _ in range(20):
        perm = rng.permutation(12)
        for order in (perm, perm[::-1]):
            keep, previous = np.zeros(12), value(np.zeros((1, 12)))[0]
            target = value(np.ones((1, 12)))[0]
            for unit in order:
                if abs(previous - target) < 0.02:
                    break  # truncated: this unit and the rest add 0
                keep[unit] = 1
                current = value(keep[None])[0]
                by_hand[unit] += (current - previous) / 40
                previous = current
    np.testing.assert_allclose(tmc, by_hand, atol=1e-12)


def test_shapley_parameters_and_labels(model, digits_val):
    params = method_params("shapley", {"truncation": 0.02, "antithetic": False, "samples": 31})
    assert params["truncation"] == 0.02 and params["antithetic"] is False and params["samples"] == 31
    assert method_params("shapley", {"samples": 31})["samples"] == 32  # antithetic: whole pairs
    assert "TMC 0.02" in METHODS["shapley"].label(params) and "no pairs" in METHODS["shapley"].label(params)
    with pytest.raises(ValueError, match="truncation"):
        method_params("shapley", {"truncation": -1})
    ranking = rank(model, digits_val, "fc2", "shapley", samples=10, truncation=0.05, cache=False)
    assert ranking.extra["evaluations"] < 2 + 10 * 24


# --- importance switches: the training split, and the prior's weight ---------------------------------

def test_switches_learn_on_the_training_split_and_report_it(model, digits_val):
    train = core.load_dataset("digits", "train")
    defaults = method_params("switches", {}, core.Engine(model, digits_val))
    assert defaults["split"] == "train" and defaults["epochs"] == 300 and defaults["alpha0"] == 2.0
    first = rank(model, digits_val, "fc2", "switches", epochs=2, train=train.subset(500), cache=False)
    assert first.extra["train_images"] == 500 and first.extra["trained_on"] == "digits:train[500]:500"
    other = rank(model, digits_val, "fc2", "switches", epochs=2, train=train.subset(500, seed=3), cache=False)
    assert not np.allclose(first.scores, other.scores)  # the training data is what it learns from
    on_val = rank(model, digits_val, "fc2", "switches", epochs=2, split="val", cache=False)
    assert on_val.extra["train_images"] == len(digits_val) and "trained on val" in on_val.label
    # cached entries are keyed by the training data too
    a = rank(model, digits_val, "fc2", "switches", epochs=2, train=train.subset(300))
    b = rank(model, digits_val, "fc2", "switches", epochs=2, train=train.subset(300, seed=4))
    assert not b.cached and not np.allclose(a.scores, b.scores)


def _spread(scores):
    return float(scores.max() - scores.min())


def test_switch_prior_weighs_less_as_the_training_split_grows(model):
    """KL / n_train: with alpha0 = 2 and the same number of steps, a larger training split lets the
    posterior move further from the uniform prior (with KL / n_val it stayed flat)."""
    train = core.load_dataset("digits", "train")
    spreads = {}
    for n in (100, 1000):
        data = train.subset(n)
        ranking = rank(model, data, "fc2", "switches", epochs=30, batch_size=n, lr=0.1, split="val",
                       cache=False)
        spreads[n] = _spread(ranking.scores)
    assert spreads[1000] > 1.5 * spreads[100], spreads


# --- class contributions and SD --------------------------------------------------------------------

def test_gamma_paper_definition_matches_finite_differences_of_the_literal_derivative(digits_val):
    """gamma_paper[i, j] = mean over images and positions of dP_j/dA_i(h, w). Finite differences on the
    plain model (a forward hook adds eps to every position of unit i), not through the engine."""
    torch.manual_seed(0)
    tiny = core.lenet5(widths=(3, 4, 8, 6)).eval()
    data = digits_val.subset(48)
    gamma = core.class_contributions(tiny, data, "conv2", batch_size=20, cache=False, definition="paper")
    gate = core.class_contributions(tiny, data, "conv2", batch_size=20, cache=False, definition="gate")
    eps = 1e-3
    for unit in range(4):
        def mean_probability(delta: float) -> np.ndarray:
            def shift(_m, _i, out):
                out = out.clone()
                out[:, unit] += delta
                return out
            handle = tiny.conv2.register_forward_hook(shift)
            try:
                with torch.no_grad():
                    return tiny(data.images.double().float()).softmax(-1).double().mean(0).numpy()
            finally:
                handle.remove()
        positions = 4 * 4  # conv2's 4x4 maps: the literal derivative is averaged over them
        numeric = (mean_probability(eps) - mean_probability(-eps)) / (2 * eps) / positions
        np.testing.assert_allclose(gamma[unit], numeric, atol=3e-5, rtol=3e-2)
    assert not np.allclose(gamma, gate, atol=1e-4)  # the two definitions really differ


def test_two_dead_filters_are_at_sd_distance_zero(model, digits_val):
    dead = copy.deepcopy(model)
    conv = core.network.models.weight_module(dead, "conv2")
    with torch.no_grad():
        for unit in (3, 11):
            conv.weight[unit].zero_()
            conv.bias[unit].fill_(-1.0)  # silent after the ReLU on every image
    similarity = similarity_matrix(dead, digits_val, "conv2", steps=8)
    assert similarity.dead[3] and similarity.dead[11]
    assert similarity.sd[3, 11] == 0
    live = np.flatnonzero(~similarity.dead)
    assert np.all(similarity.sd[3, live] > 0)
    # without the dead-unit rule the two leftover-noise AM images would be far apart
    raw, _, _ = sd_matrix(similarity.am.images, similarity.gamma, True)
    assert raw[3, 11] > 0.5


def test_sd_sum_or_product_and_the_similarity_records_its_choices(model, digits_val):
    rng = np.random.default_rng(0)
    images, gamma = rng.random((5, 1, 8, 8)), rng.normal(size=(5, 10))
    total, d_am, d_gamma = sd_matrix(images, gamma, True, combine="sum")
    product, d_am2, d_gamma2 = sd_matrix(images, gamma, True, combine="product")
    np.testing.assert_allclose(total, d_am + d_gamma)
    np.testing.assert_allclose(product, d_am * d_gamma)
    with pytest.raises(ValueError, match="sum"):
        sd_matrix(images, gamma, True, combine="max")
    sim = similarity_matrix(model, digits_val, "fc2", steps=8, gamma_definition="paper", combine="product")
    assert sim.gamma_definition == "paper" and sim.combine == "product"
    np.testing.assert_allclose(sim.gamma, core.class_contributions(model, digits_val, "fc2", definition="paper"))


def test_fourier_am_distance_is_blind_to_contrast_inversion_and_half_turns():
    """Documented limit of the conv AM distance: the amplitude spectrum cannot see these two."""
    rng = np.random.default_rng(2)
    pattern = rng.random((1, 1, 12, 12))
    images = np.concatenate([pattern, 1 - pattern, pattern[..., ::-1, ::-1], rng.random((1, 1, 12, 12))])
    _, d_am, _ = sd_matrix(images, rng.normal(size=(4, 3)), True)
    assert d_am[0, 1] == pytest.approx(0, abs=1e-9) and d_am[0, 2] == pytest.approx(0, abs=1e-9)
    assert d_am[0, 3] > 0.1


# --- shared state: the model a session passes in ----------------------------------------------------

def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


@pytest.mark.parametrize("method, params", [
    ("shapley", {"samples": 4}), ("switches", {"epochs": 1}), ("l1", {}), ("l2", {}), ("taylor", {}),
    ("activation", {}), ("random", {})])
def test_every_method_leaves_the_shared_models_mode_hooks_and_weights_alone(model, digits_val, method, params):
    shared = copy.deepcopy(model)
    engine = core.Engine(shared, digits_val)  # building an Engine puts the model in eval mode (documented)
    train = core.Engine(shared, core.load_dataset("digits", "train").subset(200))
    shared.train()  # whatever mode the caller keeps the model in must survive the call
    shared.fc1.eval()
    modes = [m.training for m in shared.modules()]
    flags = [p.requires_grad for p in shared.parameters()]
    state = {k: v.clone() for k, v in shared.state_dict().items()}
    rank(shared, digits_val, "conv2", method, engine=engine, train=train, cache=False, **params)
    assert [m.training for m in shared.modules()] == modes
    assert _hooks(shared) == 0
    assert [p.requires_grad for p in shared.parameters()] == flags
    assert all(p.grad is None for p in shared.parameters())
    assert all(torch.equal(state[k], v) for k, v in shared.state_dict().items())


def test_two_threads_masking_a_torchvision_model_through_one_engine_get_their_own_numbers():
    """Thread A is paused in the middle of its hooked pass (its mask hooks are on the shared model) while
    thread B evaluates another mask: B must get its own numbers, as when each runs alone."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=10).eval()
    data = DataSplit("random", "val", torch.rand(8, 3, 24, 24), torch.randint(0, 10, (8,)),
                     [str(i) for i in range(10)])
    engine = core.Engine(net, data)
    assert not engine.staged  # the generic hook path
    masks = {"a": {"conv1": list(range(0, 48))}, "b": {"layer1.0.conv1": list(range(8, 64))}}
    alone = {name: engine.logits(off) for name, off in masks.items()}
    assert not torch.allclose(alone["a"], alone["b"])
    a_inside, b_done = threading.Event(), threading.Event()
    owner = {}

    def pause(_m, _i, _out):
        if threading.get_ident() == owner.get("a") and not a_inside.is_set():
            a_inside.set()
            b_done.wait(timeout=3)  # with the lock, B cannot finish while A is inside: A goes on after 3 s

    pause_handle = net.fc.register_forward_hook(pause)
    results = {}

    def run_a():
        owner["a"] = threading.get_ident()
        results["a"] = engine.logits(masks["a"])

    def run_b():
        a_inside.wait(timeout=10)
        results["b"] = engine.logits(masks["b"])
        b_done.set()

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pause_handle.remove()
    assert a_inside.is_set()
    for name in masks:
        torch.testing.assert_close(results[name], alone[name], rtol=0, atol=1e-5)
    assert _hooks(net) == 0


def test_cli_exposes_truncation_pairs_switch_epochs_split_gamma_and_sd_options(tmp_path, capsys):
    import json

    from core.cli import main

    out = tmp_path / "r.json"
    assert main(["rank", "--layer", "fc2", "--method", "shapley", "--samples", "6", "--truncation", "0.05",
                 "--no-antithetic", "--no-cache", "--json", str(out)]) == 0
    params = json.loads(out.read_text())["params"]
    assert params["truncation"] == 0.05 and params["antithetic"] is False and params["samples"] == 6
    assert main(["rank", "--layer", "fc2", "--method", "switches", "--epochs", "2", "--switch-split", "val",
                 "--no-cache", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["params"]["epochs"] == 2 and payload["params"]["split"] == "val"
    assert main(["rank", "--layer", "fc2", "--method", "switches", "--epochs", "1", "--no-cache", "--json",
                 str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["params"]["split"] == "train" and payload["extra"]["train_images"] == 1079
    capsys.readouterr()
    assert main(["clusters", "--layer", "fc2", "--steps", "8", "--gamma", "paper", "--combine", "product",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["gamma_definition"] == "paper" and payload["combine"] == "product"
    assert main(["rank", "--layer", "fc2", "--method", "l1", "--truncation", "0.1"]) == 2
