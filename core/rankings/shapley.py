"""Shapley values of the units of one layer (paper A, Eq. 1-2).

Players are the layer's units; the payoff v(C) is the accuracy (or minus the mean loss) on the
data split of the network where only the units in C are on, evaluated through the engine in
batches of coalitions. Estimators:

- ``exact``: all 2^N coalitions, Eq. 2. Satisfies efficiency: sum = v(all) - v(none).
- ``truncated``: only *removal* sets of size <= k (the network stays nearly whole):
  SV_i ~ 1/(k+1) * sum_{s<=k} mean_{|R|=s, i not in R} [v(N-R) - v(N-R-i)]. This is Eq. 2 written
  over removal sets (a unit's marginal when it joins the coalition N-R-i, weighted equally per
  size level), restricted to its first k+1 size levels; k = N-1 gives the exact value. It is
  *not* the authors' code: their ``compute_combinations_lenet`` enumerates removal sizes 1, N-1,
  2, N-2, ... and their ``exact_partial`` treats the removed sets as kept sets. Paper A's text
  describes truncating Eq. 2 to small coalitions; we truncate to small *removals* because
  accuracy only moves when a near-whole network loses units (small kept coalitions all sit
  at chance accuracy, so their marginals carry almost no ranking information).
- ``stratified``: a budget of coalitions (``samples``), stratified by size, every evaluation updating
  every unit, with the regression estimator per size (core/rankings/stratified.py); standard errors.
- ``sampled``: permutation Monte Carlo (Eq. 1), unbiased, by default with antithetic pairs (a
  permutation and its reverse), standard errors over pairs (or over permutations), an optional
  truncation (TMC: ``truncation=tol`` stops walking a permutation once the running coalition is
  within tol of v(all); its remaining marginals are 0 — biased, cheaper), and an optional early
  stop once the top_k units are separated by simultaneous (Bonferroni) confidence bounds
  (cf. Neuron Shapley's bandit), an optional image subset per draw (``subset``: fewer image
  evaluations, the extra error reported), and its tasks run here or on Ray workers (``pool``,
  core/engine/pools.py) with the same result.
"""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
from scipy.stats import t as t_dist

from ..engine import Engine
from . import game
from .stratified import stratified
from .game import CHUNK as _CHUNK, EXACT_LIMIT, coalition_values, semivalue, shapley_weights  # noqa: F401 (EXACT_LIMIT: pages)

DEFAULTS = {"estimator": "sampled", "samples": 100, "k": 2, "top_k": None, "confidence": 0.95,
            "antithetic": True, "truncation": None, "subset": None, "payoff": "accuracy", "seed": 0}
ESTIMATORS = ("exact", "truncated", "sampled", "stratified", "svarm")  # stratified: ours, core/rankings/stratified.py;
# svarm: shapiq's, core/rankings/peer.py
COMPARABLE_ACROSS_LAYERS = True  # accuracy (or loss) points of the whole network, whatever the layer


def normalize(params: dict, engine: Engine | None = None) -> dict:
    """Keep only the parameters the chosen estimator uses (so the cache key is exact)."""
    estimator = params["estimator"]
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown Shapley estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if params["payoff"] not in ("accuracy", "loss"):
        raise ValueError(f"payoff must be 'accuracy' or 'loss', not {params['payoff']!r}")
    used = {"exact": (), "truncated": ("k",), "svarm": ("samples", "seed"),  # svarm, stratified: samples = budget
            "stratified": ("samples", "seed"),
            "sampled": ("samples", "top_k", "confidence", "antithetic", "truncation", "subset", "seed")}[estimator]
    out = {"estimator": estimator, "payoff": params["payoff"], **{name: params[name] for name in used}}
    if estimator == "sampled":
        out["samples"] = int(out["samples"])
        out["antithetic"] = bool(out["antithetic"])
        if out["samples"] < 2:
            raise ValueError("sampled Shapley needs at least 2 permutations (for a standard error)")
        if out["antithetic"]:
            out["samples"] += out["samples"] % 2  # antithetic pairs
        if out["truncation"] is not None:
            out["truncation"] = float(out["truncation"])
            if out["truncation"] <= 0:
                raise ValueError(f"truncation must be a positive tolerance (or None), got {out['truncation']}")
        if out["top_k"] is not None:
            out["top_k"] = int(out["top_k"])
        if out["subset"] is not None and out["subset"] != "auto":
            try:
                out["subset"] = int(out["subset"])
            except (TypeError, ValueError):
                raise ValueError(f"subset must be a number of images or 'auto', not {out['subset']!r}") from None
            if out["subset"] < 2:
                raise ValueError(f"subset must be at least 2 images (for its error), got {out['subset']}")
        if out["subset"] is not None and out["truncation"] is not None:
            raise ValueError("truncation (TMC) and an image subset cannot be combined; drop one of them")
        if not 0 < float(out["confidence"]) < 1:
            raise ValueError("confidence must be between 0 and 1, e.g. 0.95")
    if estimator == "truncated":
        out["k"] = int(out["k"])
    if estimator in ("svarm", "stratified"):
        out["samples"] = int(out["samples"])
    return out


LABELLED = tuple(DEFAULTS)  # the label names every parameter that changes the result (rank() adds none)


def label(params: dict, extra: dict | None = None) -> str:
    """What ran: for the sampled estimator the permutations actually evaluated (fewer than requested
    after an early stop), the early stop's top_k and confidence, and the seed when it is not 0."""
    sampled = ""
    if params["estimator"] == "sampled":
        ran = int((extra or {}).get("permutations", params.get("samples")))
        requested = int(params.get("samples"))
        sampled = (f"sampled, {ran} perms" if ran == requested else f"sampled, {ran} of {requested} perms")
        sampled += ("" if params.get("antithetic", True) else ", no pairs")
        if params.get("top_k"):
            sampled += f", top {params['top_k']} at {float(params.get('confidence', 0.95)):.0%}"
        sampled += ((f", TMC {params['truncation']:g}" if params.get("truncation") else "")
                    + (f", {params['subset']} images" if params.get("subset") else "")
                    + (f", seed {params['seed']}" if params.get("seed", 0) != 0 else ""))
    seed = f", seed {params['seed']}" if params.get("seed", 0) != 0 else ""
    extra_text = {"exact": "exact", "truncated": f"truncated, k={params.get('k')}", "sampled": sampled,
                  "stratified": f"stratified, {params.get('samples')} coalitions{seed}",
                  "svarm": f"shapiq SVARM, {params.get('samples')} coalitions{seed}"}[params["estimator"]]
    return f"Shapley ({extra_text}{', loss' if params['payoff'] == 'loss' else ''})"


USES_COALITION_TABLE = True  # rank() passes table_cache: the exact estimator reads game.coalition_table


def compute(engine: Engine, layer: str, progress=None, estimator: str = "sampled", payoff: str = "accuracy",
            pool=None, table_cache: bool = True, **params):
    """``pool``: a core.engine.pools pool (e.g. RayPool) that runs the sampled estimator's tasks.
    ``table_cache``: the exact estimator's coalition table is shared on disk (with the oracle, the
    exact semivalues); False recomputes it."""
    units = engine.units(layer)
    value = game.payoff(engine, layer, payoff)
    if estimator == "exact":
        return exact_from_table(game.coalition_table(engine, layer, payoff, progress, cache=table_cache), units)
    if estimator == "truncated":
        return truncated(value, units, params["k"], progress)
    if estimator == "stratified":
        return stratified(value, units, params["samples"], params["seed"], progress)
    if estimator == "svarm":
        from .peer import peer_shapley

        return peer_shapley(value, units, estimator, params["samples"], params["seed"], progress)
    run_tasks = None
    if pool is not None:
        def run_tasks(tasks, on_result=None):
            return pool.map(_engine_chain_task, [(layer, payoff, *task) for task in tasks], on_result)
    return sampled(value, units, params["samples"], params["seed"], params["top_k"], params["confidence"],
                   progress, params["antithetic"], params["truncation"], params["subset"], run_tasks,
                   game.image_payoff(engine, layer, payoff), len(engine.data))


def exact(value, units: int, progress=None):
    return exact_from_table(coalition_values(value, units, progress), units)


def exact_from_table(values: np.ndarray, units: int):
    """Eq. 2 from the table of all 2^N coalition values (game.coalition_table)."""
    scores = semivalue(values, units, shapley_weights(units))
    return scores, None, {"v_all": float(values[-1]), "v_none": float(values[0]), "evaluations": len(values)}


def truncated(value, units: int, k: int, progress=None):
    if not 0 <= k <= units - 1:
        raise ValueError(f"truncated Shapley needs 0 <= k <= {units - 1} for {units} units, got k={k}")
    removed_sets = [frozenset(c) for s in range(k + 2) for c in combinations(range(units), s)]
    keep = np.ones((len(removed_sets), units), dtype=np.float32)
    for row, removed in enumerate(removed_sets):
        keep[row, list(removed)] = 0
    chunk = max(64, min(_CHUNK, len(keep) // 16 or 1))  # progress in about 16 steps
    values = dict(zip(removed_sets, game.evaluate_in_chunks(value, keep, progress, chunk=chunk)))
    return _level_means(values, units, k), None, {"evaluations": len(removed_sets)}


def _level_means(values: dict, units: int, k: int) -> np.ndarray:
    """Average marginal contribution per removal-set size (each unit sees C(N-1, s) sets of size s)."""
    scores = np.zeros(units)
    for s in range(k + 1):
        level = np.zeros(units)
        for removed, v in values.items():
            if len(removed) != s:
                continue
            for i in range(units):
                if i not in removed:
                    level[i] += v - values[removed | {i}]
        scores += level / comb(units - 1, s)
    return scores / (k + 1)


ROUND_DRAWS = 8  # draws per early-stop look (at least; at least 4 engine calls' worth)
PILOT_DRAWS = 8  # all-image draws that size subset="auto"
IMAGE_ERROR_RATIO = 0.5  # subset="auto": image error at most this share of the permutation error
MIN_SUBSET = 32


def subset_size(image_var: np.ndarray, permutation_var: np.ndarray, n_images: int,
                ratio: float = IMAGE_ERROR_RATIO) -> int:
    """The fewest images per coalition that keep the image error within ``ratio`` x the permutation error.

    ``image_var``: per unit, the variance over images of a draw's per-image marginals (s^2);
    ``permutation_var``: per unit, the variance over draws of the all-image marginals. A draw on a
    random subset of M of the N images adds (1 - M/N) s^2 / M to its variance, so summed over units
    image <= ratio^2 x permutation when M >= N S / (N ratio^2 P + S), S = sum s^2, P = sum perm. var."""
    s, p = float(np.sum(image_var)), float(np.sum(permutation_var))
    if s <= 0:
        return min(n_images, MIN_SUBSET)
    m = n_images * s / (n_images * ratio ** 2 * p + s)
    return int(min(n_images, max(MIN_SUBSET, np.ceil(m))))


def sampled(value, units: int, samples: int, seed: int = 0, top_k: int | None = None,
            confidence: float = 0.95, progress=None, antithetic: bool = True, truncation: float | None = None,
            subset: int | str | None = None, run_tasks=None, image_value=None, n_images: int = 0,
            image_seed=None):
    """Permutation Monte Carlo (Eq. 1). ``samples`` permutations; with ``antithetic`` they come in pairs
    (a permutation and its reverse) and the standard errors are taken over pairs (draws).

    ``truncation`` (TMC, as in Data Shapley / Neuron Shapley): walking along a permutation, once the
    running coalition's payoff is within ``truncation`` of v(all), the remaining units' marginals are
    set to 0 without evaluating their coalitions. Prefixes are evaluated in blocks of sizes, so a few
    coalitions past the truncation point are evaluated (and counted) too.

    ``top_k``: stop once the top_k units are separated from the rest by simultaneous confidence
    intervals (Student t, Bonferroni over the units and over the looks), so the stated
    ``confidence`` bounds the chance that an early stop names a wrong top-k set. Looks are taken
    between rounds of at least ROUND_DRAWS draws.

    ``subset``: evaluate each draw's coalitions on a fresh seeded random subset of that many of the
    ``n_images`` images (``image_value(keep, images) -> (K, M)`` per-image payoffs), or "auto":
    PILOT_DRAWS draws on all images, then ``subset_size``. The estimate stays unbiased (the payoff
    is a mean over images); ``extra`` splits the standard error into an image and a permutation part.

    ``run_tasks(tasks, on_result) -> results``: runs ``_chain_task`` argument tuples (default: here,
    on ``value``; a Ray pool runs them on its workers). Permutations and image subsets are drawn
    here, in order, so the result does not depend on who runs the tasks."""
    if top_k is not None and not 0 < top_k < units:
        raise ValueError(f"top_k must be between 1 and {units - 1} for {units} units, got {top_k}")
    if subset is not None:
        if truncation is not None:
            raise ValueError("truncation (TMC) and an image subset cannot be combined; drop one of them")
        if subset != "auto" and not 1 <= int(subset):
            raise ValueError(f"subset must be a number of images >= 1 or 'auto', got {subset!r}")
        if image_value is None or n_images < 2:
            raise ValueError("an image subset needs per-image payoffs (image_value) and at least 2 images")
    if run_tasks is None:
        def run_tasks(tasks, on_result=None):
            out = []
            for j, task in enumerate(tasks):
                out.append(_chain_task(value, image_value, *task))
                if on_result:
                    on_result(j, out[-1])
            return out
    rng = np.random.default_rng(seed)
    image_rng = np.random.default_rng([seed, 1] if image_seed is None else image_seed)
    ends = value(np.stack([np.zeros(units, np.float32), np.ones(units, np.float32)]))  # v(none), v(all)
    group = 2 if antithetic else 1  # permutations per independent draw
    draws_total = samples // group
    if subset is not None:
        per_task = 1  # a draw's own image subset: one engine call per draw
    elif truncation is None:
        per_task = max(1, 256 // (group * max(1, units - 1)))  # draws per engine call
    else:
        per_task = max(1, 32 // group)
    # draws between early-stop looks; without an early stop, every task goes out at once
    round_draws = max(ROUND_DRAWS, 4 * per_task) if top_k is not None else draws_total
    pilot = subset == "auto"  # the first round sizes the subset, on all images
    size = n_images if pilot else None if subset is None else min(int(subset), n_images)
    per_round = min(draws_total, PILOT_DRAWS) if pilot else round_draws
    looks = 1 if top_k is None else max(1, -(-draws_total // per_round))
    draw_means: list[np.ndarray] = []
    image_vars: list[np.ndarray] = []  # per draw: the image-sampling variance of its marginals
    evaluations, image_evaluations = 2, 2 * n_images
    stopped_early = False
    while len(draw_means) < draws_total:
        batch = min(per_round, draws_total - len(draw_means))
        perms = [rng.permutation(units) for _ in range(batch)]
        if antithetic:
            perms = [p for perm in perms for p in (perm, perm[::-1])]  # each with its reverse
        perms = np.array(perms)
        if size is None:
            tasks = [(perms[lo * group:(lo + per_task) * group], units, ends, truncation, None)
                     for lo in range(0, batch, per_task)]
        else:
            tasks = [(perms[d * group:(d + 1) * group], units, ends, None,
                      np.sort(image_rng.choice(n_images, size, replace=False))) for d in range(batch)]
        done_before = len(draw_means)

        def on_result(j, result):
            if progress:
                progress(group * (done_before + min(batch, (j + 1) * per_task)), samples)
        results = run_tasks(tasks, on_result)
        chain = np.concatenate([r[0] for r in results])
        used = np.concatenate([r[1] for r in results])
        evaluations += int(used.sum())
        image_evaluations += int(used.sum()) * (n_images if size is None else size)
        marginals = np.zeros((len(perms), units))
        for row, perm in enumerate(perms):
            marginals[row, perm] = np.diff(chain[row])
        means = marginals.reshape(batch, group, units).mean(1)
        draw_means.extend(means)
        if size is not None:
            image_vars.extend((1 - size / n_images) * r[2] / size for r in results)
        if pilot and len(draw_means) < draws_total:
            pilot_var = np.mean([r[2] for r in results], 0)
            permutation_var = means.var(0, ddof=1) if batch > 1 else np.zeros(units)
            size, per_round, pilot = subset_size(pilot_var, permutation_var, n_images), round_draws, False
            continue
        if top_k is not None and len(draw_means) >= 10 and \
                _separated(np.array(draw_means), top_k, confidence, units * looks):
            stopped_early = True
            break
    estimates = np.array(draw_means)
    stderr = estimates.std(0, ddof=1) / np.sqrt(len(estimates)) if len(estimates) > 1 else np.full(units, np.nan)
    if progress and stopped_early:
        progress(samples, samples)
    # the interval half-width in standard errors that the early stop uses (simultaneous over units and looks)
    bound_z = float(t_dist.ppf(1 - (1 - confidence) / (2 * units * looks), df=max(1, len(estimates) - 1)))
    extra = {"permutations": group * len(estimates), "stopped_early": stopped_early, "bound_z": bound_z,
             "v_all": float(ends[1]), "v_none": float(ends[0]), "evaluations": evaluations}
    if subset is not None:
        image_se = np.sqrt(np.mean(image_vars, 0) / len(estimates))
        extra.update({"subset": int(size), "image_evaluations": image_evaluations,
                      "full_image_evaluations": evaluations * n_images,
                      "image_stderr": image_se, "permutation_stderr": np.sqrt(np.maximum(0, stderr ** 2 - image_se ** 2))})
        if subset == "auto":
            extra["pilot_draws"] = min(PILOT_DRAWS, len(estimates))
    return estimates.mean(0), stderr, extra


def _chain_task(value, image_value, perms: np.ndarray, units: int, ends: np.ndarray, truncation: float | None,
                images: np.ndarray | None):
    """One task: the payoff of every prefix of ``perms``, (P, units + 1), the coalitions evaluated per
    row, and with an image subset the variance over those images of the draw's per-image marginals."""
    if images is None:
        chain, used = _chains(value, perms, units, ends, truncation)
        return chain, used, None
    count, size = len(perms), len(images)
    keep = _prefix_keep(perms, units, np.arange(units + 1)).reshape(-1, units)
    per_image = image_value(keep, images).reshape(count, units + 1, size)
    by_unit = np.zeros((count, units, size))
    by_unit[np.arange(count)[:, None], perms] = np.diff(per_image, axis=1)
    draw = by_unit.mean(0)  # (units, images): the draw's marginal of each unit on each image
    return per_image.mean(2), np.full(count, units + 1), draw.var(1, ddof=1)


def _engine_chain_task(engine: Engine, layer: str, payoff: str, *task):
    """``_chain_task`` on a (remote) engine: what a Ray worker runs."""
    return _chain_task(game.payoff(engine, layer, payoff), game.image_payoff(engine, layer, payoff), *task)


def _prefix_keep(perms: np.ndarray, units: int, sizes: np.ndarray) -> np.ndarray:
    """(P, len(sizes), units) keep masks: row p, column s = the first sizes[s] units of perms[p] on."""
    rank_of = np.empty_like(perms)
    rank_of[np.arange(len(perms))[:, None], perms] = np.arange(units)  # position of each unit in its perm
    return (rank_of[:, None, :] < sizes[None, :, None]).astype(np.float32)


def _chains(value, perms: np.ndarray, units: int, ends: np.ndarray, truncation: float | None):
    """Payoff of every prefix of every permutation, (P, units + 1), and the coalitions evaluated per row."""
    count = len(perms)
    chain = np.empty((count, units + 1))
    chain[:, 0], chain[:, -1] = ends[0], ends[1]
    if units <= 1:
        return chain, np.zeros(count, dtype=int)
    if truncation is None:
        sizes = np.arange(1, units)
        chain[:, 1:-1] = value(_prefix_keep(perms, units, sizes).reshape(-1, units)).reshape(count, units - 1)
        return chain, np.full(count, units - 1)
    block = max(1, -(-(units - 1) // 8))
    active = np.abs(chain[:, 0] - ends[1]) >= truncation  # an empty coalition already at v(all) stops at once
    done_at = np.where(active, units, 0)  # prefix size from which the payoff is frozen
    used = np.zeros(count, dtype=int)
    for lo in range(1, units, block):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        sizes = np.arange(lo, min(units, lo + block))
        values = value(_prefix_keep(perms[rows], units, sizes).reshape(-1, units)).reshape(len(rows), len(sizes))
        used[rows] += len(sizes)
        chain[rows[:, None], sizes[None, :]] = values
        close = np.abs(values - ends[1]) < truncation
        for r, row in enumerate(rows):
            hit = np.flatnonzero(close[r])
            if len(hit):
                done_at[row] = sizes[hit[0]]
                active[row] = False
    for row in range(count):  # after truncation the payoff stays put: the remaining marginals are 0
        if done_at[row] < units:
            chain[row, done_at[row] + 1:units] = chain[row, done_at[row]]
            chain[row, units] = chain[row, done_at[row]]
    return chain, used


def _separated(draws: np.ndarray, top_k: int, confidence: float, comparisons: int) -> bool:
    """True when every top_k unit's lower bound lies above every other unit's upper bound, with two-sided
    Student-t intervals at level 1 - (1 - confidence) / comparisons each (Bonferroni)."""
    n = len(draws)
    mean = draws.mean(0)
    z = t_dist.ppf(1 - (1 - confidence) / (2 * comparisons), df=n - 1)
    half = z * draws.std(0, ddof=1) / np.sqrt(n)
    order = np.argsort(-mean, kind="stable")
    top, rest = order[:top_k], order[top_k:]
    return bool(np.min(mean[top] - half[top]) > np.max(mean[rest] + half[rest]))
