"""Fewer coalitions for the same ranking: sampled Shapley with / without truncation (TMC) and
with / without antithetic pairs, side by side in one run.

For LeNet-5 conv2 (20 units) and fc1 (100 units) on the digits validation split (359 images):

1. a reference: 2,000 antithetic permutations, untruncated (seed 12345); its top-5 set is "the" top-5;
2. for each variant and each of 10 seeds, the estimate after each budget of the grid (the first
   P permutations of one growing run: a run with ``samples=P`` draws exactly those permutations);
   the budget needed is the smallest P of the grid at which >= 9 of the 10 seeds give the
   reference's top-5 set (order inside the five ignored);
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
from core.rankings import game, shapley  # noqa: E402

LAYERS = ("conv2", "fc1")
SEEDS = range(10)
GRID = (10, 20, 30, 40, 60, 80, 100, 140, 200, 300, 400, 600, 800, 1000, 1400, 2000)


def variants(tolerance: float) -> dict[str, dict]:
    return {"plain permutations": dict(antithetic=False, truncation=None),
            "antithetic pairs": dict(antithetic=True, truncation=None),
            f"truncated (TMC {tolerance:g})": dict(antithetic=False, truncation=tolerance),
            f"antithetic + TMC {tolerance:g}": dict(antithetic=True, truncation=tolerance)}


def top5(scores: np.ndarray) -> frozenset:
    return frozenset(int(i) for i in np.argsort(-scores, kind="stable")[:5])


class Run:
    """One seed's permutations drawn as ``shapley.sampled`` draws them (same generator, same order),
    extended on demand, with the running estimate."""

    def __init__(self, value, units: int, ends: np.ndarray, seed: int, antithetic: bool, truncation: float | None):
        self.value, self.units, self.ends, self.truncation = value, units, ends, truncation
        self.rng, self.group = np.random.default_rng(seed), (2 if antithetic else 1)
        self.total, self.draws = np.zeros(units), 0

    def extend_to(self, permutations: int) -> frozenset:
        more = permutations // self.group - self.draws
        if more > 0:
            perms = [self.rng.permutation(self.units) for _ in range(more)]
            if self.group == 2:
                perms = [p for perm in perms for p in (perm, perm[::-1])]
            perms = np.array(perms)
            for lo in range(0, len(perms), 64):
                chain, _ = shapley._chains(self.value, perms[lo:lo + 64], self.units, self.ends, self.truncation)
                marginals = np.zeros((len(chain), self.units))
                for row, perm in enumerate(perms[lo:lo + 64]):
                    marginals[row, perm] = np.diff(chain[row])
                self.total += marginals.sum(0) / self.group
            self.draws += more
        return top5(self.total / self.draws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=0.02, help="TMC tolerance (accuracy)")
    parser.add_argument("--max-perms", type=int, default=2000)
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--reference", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, val = core.load_model(), core.load_dataset("digits", "val")
    engine = core.Engine(model, val)
    budgets = [p for p in GRID if p <= args.max_perms]
    table = []
    for layer in args.layers.split(","):
        units = engine.units(layer)
        value = game.payoff(engine, layer, "accuracy")
        ends = value(np.stack([np.zeros(units, np.float32), np.ones(units, np.float32)]))
        start = time.perf_counter()
        reference = core.rank(model, val, layer, "shapley", engine=engine, samples=args.reference, seed=12345,
                              cache=False)
        print(f"{layer}: reference {args.reference} antithetic permutations in {time.perf_counter() - start:.0f} s, "
              f"top-5 {sorted(reference.top(5))}, v(all) {ends[1]:.4f}", flush=True)
        target = top5(reference.scores)
        needed = {}
        for name, options in variants(args.tolerance).items():
            runs = [Run(value, units, ends, seed, **options) for seed in SEEDS]
            hits, needed[name] = {}, None
            for p in budgets:  # grow every seed's run until 9 of the 10 give the reference top-5
                hits[p] = sum(run.extend_to(p) == target for run in runs)
                if hits[p] >= 9:
                    needed[name] = p
                    break
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
