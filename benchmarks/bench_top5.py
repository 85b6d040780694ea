"""Evaluations and seconds to a stable top-5: our sampled Shapley, our sampled Banzhaf and shapiq's estimators.

The layer game of the shipped LeNet-5 (core/rankings/game.py: v(S) = validation accuracy with only the
units in S on) is run through each estimator at a rising budget of evaluations (x2 per step), 10 seeds
per step. An estimator is *stable* at the first budget where at least 9 of the 10 seeds name exactly the
reference top-5 (as a set). Printed per layer, side by side, in one run: the evaluations (mean over the
10 seeds of the evaluations the estimator actually made) and seconds at that budget, and the ratio of
each to ours.

- conv2 (20 units): the reference is the exact Shapley top-5. The 2^20 coalition values are computed
  once through the engine (cached on disk) and every estimator then reads v from that table, so the
  comparison costs no engine time; its *seconds* are the estimator's own time on the table plus its
  evaluations x the engine's batched cost per evaluation, measured in this run.
- fc1 (100 units): there is no exact top-5 (2^100 coalitions). The reference is a long run of our
  sampled Shapley (``--reference`` antithetic permutations, its own seed); its top-5 margin is printed
  (5th vs 6th score in standard errors). Estimators call the engine for real; seconds are wall time.

Ours: ``shapley.sampled`` (the function behind ``core.rank(..., "shapley")``): antithetic permutations,
and TMC (truncated walks); ``stratified`` (``core.rank(..., "shapley", estimator="stratified")``): a budget of
coalitions stratified by size with a regression per size (core/rankings/stratified.py). On conv2 a second
table gives each estimator's mean squared error against the exact values at equal budgets (``--mse-budgets``),
a steadier comparison than the top-5 criterion when the 5th and 6th values are close. Banzhaf: ``core.rank(..., "banzhaf", estimator="sampled", samples=N, seed=s)``
when that method exists, else "not available". shapiq (1.4): PermutationSamplingSV, KernelSHAP,
UnbiasedKernelSHAP, SVARM, StratifiedSamplingSV on conv2; on fc1 the best of them on conv2.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_top5.py [--layers conv2,fc1] [--seeds 10]

One torch thread (torch.set_num_threads(1)).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from core.rankings import METHODS, game, shapley  # noqa: E402
from core.rankings.game import coalition_table  # noqa: E402
from core.rankings.stratified import stratified  # noqa: E402

TOP = 5
# name -> (lowest budget, highest budget) in evaluations, per layer
LADDER = {"conv2": (500, 256_000), "fc1": (5_000, 160_000)}
SHAPIQ = ("PermutationSamplingSV", "KernelSHAP", "UnbiasedKernelSHAP", "SVARM", "StratifiedSamplingSV")
Estimator = Callable[[int, int], tuple[np.ndarray, int]]  # (budget, seed) -> (scores, evaluations made)


class Counted:
    """v(keep) that counts the coalitions it is asked for."""

    def __init__(self, value: game.Value):
        self.value, self.count = value, 0

    def __call__(self, keep: np.ndarray) -> np.ndarray:
        keep = np.atleast_2d(np.asarray(keep, dtype=np.float32))
        self.count += len(keep)
        return self.value(keep)


def table_value(table: np.ndarray, units: int) -> game.Value:
    powers = 1 << np.arange(units, dtype=np.int64)
    return lambda keep: table[(np.asarray(keep) > 0.5).astype(np.int64) @ powers]


def ours(value: game.Value, units: int, truncation: float | None = None) -> Estimator:
    def run(budget: int, seed: int):
        counted = Counted(value)
        samples = max(2, budget // (units + 1))
        scores, _, extra = shapley.sampled(counted, units, samples + samples % 2, seed, truncation=truncation)
        return scores, counted.count
    return run


def ours_stratified(value: game.Value, units: int) -> Estimator:
    def run(budget: int, seed: int):
        counted = Counted(value)
        scores, _, _ = stratified(counted, units, budget, seed)
        return scores, counted.count
    return run


def mse_table(estimators: dict, exact: np.ndarray, budgets: list[int], seeds: int) -> None:
    """Mean squared error (summed over units) against the exact values at equal budgets, mean over seeds."""
    print(f"\nconv2: mean squared error against exact Shapley at equal budgets ({seeds} seeds; ratio to the best)\n")
    print("| estimator | " + " | ".join(f"{b:,}" for b in budgets) + " |")
    print("|---|" + "---|" * len(budgets))
    errors = {name: [np.mean([np.sum((run(b, s)[0] - exact) ** 2) for s in range(seeds)]) for b in budgets]
              for name, run in estimators.items()}
    best = np.min(list(errors.values()), axis=0)
    for name, row in errors.items():
        print(f"| {name} | " + " | ".join(f"{e:.2e} ({e / m:.2f})" for e, m in zip(row, best)) + " |")
    print(flush=True)


def peer(name: str, value: game.Value, units: int) -> Estimator:
    import shapiq

    def run(budget: int, seed: int):
        counted = Counted(value)
        approximator = getattr(shapiq, name)(n=units, random_state=seed)
        kwargs = {"batch_size": max(1, 4096 // (units + 1))} if name == "PermutationSamplingSV" else {}
        result = approximator.approximate(budget, lambda coalitions: counted(coalitions), **kwargs)
        return np.asarray(result.get_n_order_values(1), dtype=float), counted.count
    return run


def banzhaf(model, data, engine: core.Engine, layer: str) -> Estimator | None:
    if "banzhaf" not in METHODS:
        return None

    def run(budget: int, seed: int):
        ranking = core.rank(model, data, layer, "banzhaf", estimator="sampled", samples=budget, seed=seed,
                            engine=engine, cache=False)
        return ranking.scores, int(ranking.extra.get("evaluations", budget))
    return run


def stable_budget(run: Estimator, reference: set[int], low: int, high: int, seeds: int,
                  seconds_per_evaluation: float = 0.0, match: int = TOP, step: float = 2.0) -> dict:
    """The first budget (x ``step`` per step) where >= 9 of 10 seeds give the reference top-5 (>= ``match`` of it)."""
    budget, need = low, int(np.ceil(0.9 * seeds))
    while budget <= high:
        hits, evaluations, seconds = 0, [], []
        for seed in range(seeds):
            start = time.perf_counter()
            scores, made = run(budget, seed)
            seconds.append(time.perf_counter() - start + made * seconds_per_evaluation)
            evaluations.append(made)
            hits += len(set(np.argsort(-scores, kind="stable")[:TOP].tolist()) & reference) >= match
            if seed + 1 - hits > seeds - need:  # cannot reach 9 of 10 any more
                break
        if hits >= need:
            return {"budget": budget, "evaluations": float(np.mean(evaluations)), "seconds": float(np.mean(seconds)),
                    "hits": hits}
        print(f"    budget {budget:>9,}: {hits}/{seed + 1} seeds exact before giving up on this budget", flush=True)
        budget = int(round(budget * step))
    return {"budget": None, "evaluations": float("inf"), "seconds": float("inf"), "hits": hits}


def engine_cost(value: game.Value, units: int, batches: int = 3, size: int = 4096) -> float:
    rng = np.random.default_rng(0)
    keep = (rng.random((size, units)) < 0.5).astype(np.float32)
    value(keep)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        value(keep)
    return (time.perf_counter() - start) / (batches * size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="conv2,fc1")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--step", type=float, default=2.0, help="budget ladder factor (default 2)")
    parser.add_argument("--low", type=int, default=None, help="conv2: the smallest budget (default 500)")
    parser.add_argument("--wide-ours", default="antithetic,tmc", help="fc1: our variants to run")
    parser.add_argument("--wide-high", type=int, default=LADDER["fc1"][1], help="fc1: the largest budget")
    parser.add_argument("--reference", type=int, default=4000, help="fc1: antithetic permutations of the reference")
    parser.add_argument("--peers", default=",".join(SHAPIQ), help="shapiq estimators to run on conv2")
    parser.add_argument("--wide-match", type=int, default=TOP,
                        help="fc1: count a seed as right when its top-5 holds at least this many of the reference's")
    parser.add_argument("--wide-peers", default="", help="shapiq estimators on fc1 (default: the best on conv2)")
    parser.add_argument("--mse-budgets", default="1000,2000,4000,8000",
                        help="conv2: budgets of the equal-budget error table ('' skips it)")
    parser.add_argument("--ours", default="antithetic,tmc,stratified,banzhaf",
                        help="conv2: our estimators to run (banzhaf runs through the engine: slow)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, val = core.load_model(), core.load_dataset("digits", "val")
    engine = core.Engine(model, val)
    print(f"Shipped LeNet-5 on digits val ({len(val)} images), torch threads: {torch.get_num_threads()}, "
          f"{args.seeds} seeds per budget, stable = exact reference top-{TOP} in >= 90% of seeds")
    best_peer = None
    for layer in args.layers.split(","):
        units = engine.units(layer)
        live = game.payoff(engine, layer)
        per_eval = engine_cost(live, units)
        if layer == "conv2":
            start = time.perf_counter()
            table = coalition_table(engine, layer)  # cached on disk: shared with exact Shapley, the oracle and core.interactions(exact)
            print(f"  {layer}: 2^{units} coalition values ({time.perf_counter() - start:.0f} s)")
            value, charge = table_value(table, units), per_eval
            exact = game.semivalue(table, units, game.shapley_weights(units))
            order = np.argsort(-exact, kind="stable")
            reference = set(order[:TOP].tolist())
            print(f"  {layer}: exact top-{TOP} {sorted(reference)}; 5th - 6th Shapley value "
                  f"{exact[order[TOP - 1]] - exact[order[TOP]]:.5f}; engine {per_eval * 1e6:.0f} us per evaluation")
            peers = args.peers.split(",")
        else:
            value, charge = live, 0.0
            ref = core.rank(model, val, layer, "shapley", samples=args.reference, seed=10_000, engine=engine)
            order = ref.order()
            reference = set(order[:TOP].tolist())
            gap = (ref.scores[order[TOP - 1]] - ref.scores[order[TOP]]) / np.hypot(ref.stderr[order[TOP - 1]],
                                                                                   ref.stderr[order[TOP]])
            print(f"  {layer}: reference = sampled Shapley, {args.reference} permutations "
                  f"({ref.extra['evaluations']:,} evaluations, {ref.seconds:.0f} s): top-{TOP} {sorted(reference)}, "
                  f"5th vs 6th {gap:.1f} standard errors apart (a long-run reference, not exact)")
            peers = args.wide_peers.split(",") if args.wide_peers else [best_peer] if best_peer else []
            if args.wide_match < TOP:
                print(f"  {layer}: a seed counts when its top-{TOP} holds {args.wide_match} of the reference's")
        low, high = LADDER.get(layer, (1000, 128_000))
        variants = {"antithetic": ("ours: sampled Shapley (antithetic)", None),
                    "tmc": ("ours: sampled Shapley (TMC 0.005)", 0.005), "stratified": ("ours: stratified regression", None)}
        chosen = {k: variants[k] for k in (args.ours if charge else args.wide_ours).split(",") if k in variants}
        if not charge:
            high = args.wide_high
        elif args.low:
            low = args.low
        estimators: dict[str, Estimator | None] = {
            name: ours_stratified(value, units) if key == "stratified" else ours(value, units, tol)
            for key, (name, tol) in chosen.items()}
        if "banzhaf" in args.ours.split(","):  # through core.rank: pays the engine for every evaluation
            estimators["ours: sampled Banzhaf (MSR, core.rank)"] = banzhaf(model, val, engine, layer)
        estimators.update({f"shapiq {name}": peer(name, value, units) for name in peers if name})
        rows = {}
        for name, run in estimators.items():
            if run is None:
                rows[name] = None
                print(f"  {layer} {name}: not available (no 'banzhaf' ranking method here)", flush=True)
                continue
            # Banzhaf through core.rank pays the engine for real; on conv2 it is not on the table
            rows[name] = stable_budget(run, reference, low, high, args.seeds,
                                       0.0 if "core.rank" in name else charge, TOP if charge else args.wide_match,
                                       args.step)
            print(f"  {layer} {name}: {rows[name]}", flush=True)
        if charge and args.mse_budgets:
            mse_table({n: e for n, e in estimators.items() if e is not None and "core.rank" not in n}, exact,
                      [int(b) for b in args.mse_budgets.split(",")], args.seeds)
        mine = [r for n, r in rows.items() if r and n.startswith("ours: s")]
        best_ours = min(mine, key=lambda r: r["evaluations"])
        shapiq_rows = {n: r for n, r in rows.items() if r and n.startswith("shapiq")}
        if layer == "conv2" and shapiq_rows:
            best_peer = min(shapiq_rows, key=lambda n: shapiq_rows[n]["evaluations"]).split(" ", 1)[1]
        print(f"\n{layer} ({units} units): evaluations and seconds to a stable top-{TOP}"
              f"{' (seconds: estimator time on the table + evaluations x engine cost)' if charge else ''}\n")
        print("| estimator | evaluations | seconds | evaluations / best ours | seconds / best ours |")
        print("|---|---|---|---|---|")
        for name, r in rows.items():
            if r is None:
                print(f"| {name} | not available | | |")
                continue
            found = r["budget"] is not None
            print(f"| {name} | {r['evaluations']:,.0f} | {r['seconds']:.2f} | "
                  f"{r['evaluations'] / best_ours['evaluations']:.2f} | {r['seconds'] / best_ours['seconds']:.2f} |"
                  if found else f"| {name} | > {high:,} (not stable at {r['hits']}/{args.seeds}) | | | |")
        print(flush=True)


if __name__ == "__main__":
    main()
