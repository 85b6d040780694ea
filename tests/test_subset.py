"""Issue 12: Shapley payoffs on a random subset of the images, with the error that costs.

The simulation is a game of many images, each with its own 0/1 payoff (right or wrong, as
accuracy is), whose full-data Shapley values are known exactly. The reported errors are
checked against the truth at their stated rate."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t as t_dist

from core.rankings import rank
from core.rankings.shapley import IMAGE_ERROR_RATIO, sampled, subset_size
from tests.test_faithful import brute_force_shapley

UNITS, IMAGES = 6, 400


def image_game(seed: int = 0):
    """Per-image payoff v_n(C) = 1 when the units in C carry image n past its threshold: a saturating,
    interacting 0/1 payoff like a masked network's correctness. Returns (value, image_value)."""
    rng = np.random.default_rng(seed)
    weights = rng.gamma(1.0, 1.0, (IMAGES, UNITS)) * np.linspace(1.6, 0.3, UNITS)
    thresholds = rng.uniform(0.2, 2.5, IMAGES)

    def image_value(keep, images):
        return ((np.asarray(keep, float) @ weights[images].T) > thresholds[images]).astype(float)

    def value(keep):
        return image_value(keep, np.arange(IMAGES)).mean(1)
    return value, image_value


@pytest.fixture(scope="module")
def game():
    value, image_value = image_game()
    return value, image_value, brute_force_shapley(value, UNITS)


def run(game, seed, subset, samples=40, image_seed=None):
    value, image_value, _ = game
    return sampled(value, UNITS, samples, seed, subset=subset, image_value=image_value, n_images=IMAGES,
                   image_seed=image_seed)


def test_subset_intervals_cover_the_full_data_shapley_values_at_their_stated_rate(game):
    truth, covered, total = game[2], 0, 0
    z = t_dist.ppf(0.975, df=19)  # 40 permutations = 20 antithetic pairs
    for seed in range(150):
        estimate, stderr, extra = run(game, seed, subset=40)
        covered += int(np.sum(np.abs(estimate - truth) <= z * stderr))
        total += UNITS
        assert extra["image_evaluations"] < extra["full_image_evaluations"] / 5
    assert 0.92 <= covered / total <= 0.985, f"95% intervals covered {covered / total:.1%}"


def test_reported_image_error_matches_the_spread_over_image_subsets(game):
    """Same permutations, fresh image subsets: the estimates spread as image_stderr says (finite
    population correction included: a subset of 300 of the 400 images)."""
    for size in (20, 300):
        runs = [run(game, seed=7, subset=size, image_seed=k) for k in range(120)]
        spread = np.std([r[0] for r in runs], axis=0, ddof=1)
        reported = np.sqrt(np.mean([r[2]["image_stderr"] ** 2 for r in runs], axis=0))
        ratio = spread.sum() / reported.sum()
        assert 0.8 <= ratio <= 1.25, (size, spread, reported)


def test_all_images_have_no_image_error_and_give_the_plain_estimate(game):
    full_subset = run(game, seed=3, subset=IMAGES)
    plain = sampled(game[0], UNITS, 40, 3)
    np.testing.assert_allclose(full_subset[0], plain[0], atol=1e-12)
    assert np.all(full_subset[2]["image_stderr"] == 0)
    np.testing.assert_allclose(full_subset[2]["permutation_stderr"], plain[1], atol=1e-12)


def test_subset_size_rule_keeps_the_image_error_within_its_share_of_the_permutation_error():
    image_var, permutation_var, n = np.array([0.2, 0.1, 0.0]), np.array([0.004, 0.002, 0.0]), 10_000
    m = subset_size(image_var, permutation_var, n)
    added = lambda size: (1 - size / n) * image_var.sum() / size  # noqa: E731 - the variance a subset adds
    assert added(m) <= IMAGE_ERROR_RATIO ** 2 * permutation_var.sum() < added(m - 1)
    assert subset_size(image_var, np.zeros(3), n) == n  # no permutation noise: every image is needed
    assert subset_size(np.zeros(3), permutation_var, n) == 32  # images all agree: the floor
    assert subset_size(image_var, permutation_var, 20) == 20  # never more than there are


def test_auto_subset_on_the_simulated_game_meets_its_rule_and_saves_evaluations(game):
    image, permutation, saved = [], [], []
    for seed in range(20):
        estimate, stderr, extra = run(game, seed, subset="auto", samples=80)
        image.append(np.sum(extra["image_stderr"] ** 2))
        permutation.append(np.sum(extra["permutation_stderr"] ** 2))
        saved.append(extra["full_image_evaluations"] / extra["image_evaluations"])
        assert extra["pilot_draws"] == 8 and 32 <= extra["subset"] < IMAGES
    # the rule is on the variances summed over units: image <= ratio^2 x permutation (on average; noisy per run)
    assert np.mean(image) <= 1.3 * IMAGE_ERROR_RATIO ** 2 * np.mean(permutation)
    assert min(saved) > 1  # how much depends on how much the images disagree: little here (~1.15x)


def test_subset_through_the_engine(model, digits_val):
    full = rank(model, digits_val, "conv2", "shapley", samples=20, seed=2, cache=False)
    sub = rank(model, digits_val, "conv2", "shapley", samples=20, seed=2, cache=False, subset=100)
    extra = sub.extra
    assert extra["subset"] == 100 and "100 images" in sub.label
    assert extra["image_evaluations"] == extra["evaluations"] * 100 - 2 * 100 + 2 * len(digits_val)
    assert extra["full_image_evaluations"] == extra["evaluations"] * len(digits_val)
    np.testing.assert_allclose(np.sqrt(extra["image_stderr"] ** 2 + extra["permutation_stderr"] ** 2), sub.stderr,
                               atol=1e-12)
    assert np.corrcoef(full.scores, sub.scores)[0, 1] > 0.8
    again = rank(model, digits_val, "conv2", "shapley", samples=20, seed=2, cache=False, subset=100)
    np.testing.assert_array_equal(again.scores, sub.scores)  # seeded: the same subsets


@pytest.mark.parametrize("params,message", [
    ({"subset": 1}, "at least 2 images"),
    ({"subset": "half"}, "number of images or 'auto'"),
    ({"subset": 50, "truncation": 0.02}, "cannot be combined"),
])
def test_bad_subsets_are_refused(model, digits_val, params, message):
    with pytest.raises(ValueError, match=message):
        rank(model, digits_val, "conv2", "shapley", samples=8, cache=False, **params)
