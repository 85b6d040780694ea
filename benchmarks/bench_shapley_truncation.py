"""Fewer coalitions for the same ranking: sampled Shapley with / without truncation (TMC) and
with / without antithetic pairs, side by side in one run.

For LeNet-5 conv2 (20 units) and fc1 (100 units) on the digits validation split (359 images):

1. a reference: 2,000 antithetic permutations, untruncated; its top-5 set is "the" top-5;
2. for each variant and each of 10 seeds, the estimate after every budget of the grid (the first
   P permutations of one long run: a run with ``samples=P`` draws exactly those permutations);
   the budget needed is the smallest P at which >= 9 of the 10 seeds give the reference's top-5
   set (order inside the five ignored);
3. at that budget, each variant is run again through ``core.rank`` for the 10 seeds (alternating
   variants), and its coalition evaluations (as reported by the library) and seconds are the means.

    .venv/bin/python benchmarks/bench_shapley_truncation.py [--tolerance 0.02] [--max-perms 600]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: E402
from core.rankings import shapley  # noqa: E402

LAYERS = ("conv2", "fc1")
SEEDS = range(10)
GRID = (10, 20, 30, 40, 60, 80, 100, 140, 200, 300, 400, 600, 800, 1000)


def variants(tolerance: float) -> dict[str, dict]:
    return {"plain permutations": dict(antithetic=False, truncation=None),
            "antithetic pairs": dict(antithetic=True, truncation=None),
            f"truncated (TMC {tolerance:g})": dict(antithetic=False, truncation=tolerance),
            f"antithetic + TMC {tolerance:g}": dict(antithetic=True, truncation=tolerance)}


def top5(scores: np.ndarray) -> frozenset:
    return frozenset(int(i) for i in np.argsort(-scores, kind="stable")[:5])


def running_top5(value, units: int, ends: np.ndarray, seed: int, budgets, antithetic: bool,
                 truncation: float | None) -> dict[int, frozenset]:
    """Top-5 set after each budget of permutations, from one run drawing the permutations as
    ``shapley.sampled`` does (same generator, same order)."""
    rng = np.random.default_rng(seed)
    group = 2 if antithetic else 1
    most = max(budgets) // group
    perms = [rng.permutation(units) for _ in range(most)]
    if antithetic:
        perms = [p for perm in perms for p in (perm, perm[::-1])]
    perms = np.array(perms)
    marginals = np.zeros((len(perms), units))
    for lo in range(0, len(perms), 64):
        chain, _ = shapley._chains(value, perms[lo:lo + 64], units, ends, truncation)
        for row, perm in enumerate(perms[lo:lo + 64]):
            marginals[lo + row, perm] = np.diff(chain[row])
    draws = marginals.reshape(most, group, units).mean(1)
    running = np.cumsum(draws, 0) / np.arange(1, most + 1)[:, None]
    return {p: top5(running[p // group - 1]) for p in budgets if p // group >= 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=0.02, help="TMC tolerance (accuracy)")
    parser.add_argument("--max-perms", type=int, default=600)
    parser.add_argument("--reference", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, val = core.load_model(), core.load_dataset("digits", "val")
    engine = core.Engine(model, val)
    budgets = [p for p in GRID if p <= args.max_perms]
    table = []
    for layer in LAYERS:
        units = engine.units(layer)
        value = shapley._payoff(engine, layer, "accuracy")
        ends = value(np.stack([np.zeros(units, np.float32), np.ones(units, np.float32)]))
        start = time.perf_counter()
        reference = core.rank(model, val, layer, "shapley", engine=engine, samples=args.reference, seed=12345,
                              cache=False)
        print(f"{layer}: reference {args.reference} antithetic permutations in {time.perf_counter() - start:.0f} s, "
              f"top-5 {sorted(reference.top(5))}, v(all) {ends[1]:.4f}", flush=True)
        target = top5(reference.scores)
        needed = {}
        for name, options in variants(args.tolerance).items():
            hits = {p: 0 for p in budgets}
            for seed in SEEDS:
                for p, found in running_top5(value, units, ends, seed, budgets, **options).items():
                    hits[p] += found == target
            needed[name] = next((p for p in budgets if hits[p] >= 9), None)
            print(f"  {name}: seeds with the reference top-5 per budget {hits} -> {needed[name]}", flush=True)
        timing = {name: [] for name in needed}
        evaluations = {name: [] for name in needed}
        matched = {name: 0 for name in needed}
        for seed in SEEDS:  # alternate the variants, seed by seed
            for name, options in variants(args.tolerance).items():
                if needed[name] is None:
                    continue
                ranking = core.rank(model, val, layer, "shapley", engine=engine, samples=needed[name], seed=seed,
                                    cache=False, **options)
                timing[name].append(ranking.seconds)
                evaluations[name].append(ranking.extra["evaluations"])
                matched[name] += top5(ranking.scores) == target
        plain = "plain permutations"
        for name in needed:
            if needed[name] is None:
                table.append((layer, units, name, f"> {budgets[-1]}", "-", "-", "-", "-"))
                continue
            evals, secs = float(np.mean(evaluations[name])), float(np.mean(timing[name]))
            ratio = (np.mean(evaluations[plain]) / evals) if needed[plain] else float("nan")
            table.append((layer, units, name, needed[name], f"{matched[name]}/10", f"{evals:,.0f}", f"{secs:.2f}",
                          f"{ratio:.1f}x"))
    print("\n| layer | units | variant | permutations needed | seeds with the top-5 | coalition evaluations "
          "| seconds | fewer evaluations than plain |")
    print("|---|---|---|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
