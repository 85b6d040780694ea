"""Benchmark of pruning curves, measured side by side in one run.

    .venv/bin/python benchmarks/bench_curves.py [--reps 5] [--vgg-reps 3] [--threads 1] [--images 2000]

A complete layer curve (every count 0..N) for 4 methods (Shapley sampled, L1, L2, Taylor) plus a
random band of 5 seeds, i.e. 9 removal orders x (N + 1) masks, evaluated three ways:

  (a) ``core.curve_set``: whole curves stacked into ``Engine.evaluate_masks`` calls of up to 256 masks
      (LeNet: all 189 masks in one call; VGG: 129-mask curves, one per call);
  (b) one batched call per curve (``core.layer_curve`` per method, ``core.random_band`` for the seeds);
  (c) the same masks one at a time through ``Engine.evaluate`` (the prefix cache, no batching).

For conv2 of the shipped LeNet-5 on all 1,797 digits images, and for conv13 of a VGG-16 at width
x0.25 (the engine benchmark's model: random weights, BN statistics from the data) on 2,000
CIFAR-shaped images. The three sides must give the same accuracies (checked before timing);
repetitions are interleaved (a, b, c, a, b, c, ...) and medians reported, so machine load hits all.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: E402
from benchmarks.bench_engine import all_digits, vgg_with_data  # noqa: E402
from core.pruning.curve_sets import curve_set  # noqa: E402
from core.pruning.curves import layer_curve, random_band
from core.engine import Engine  # noqa: E402

SEEDS = 5


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rankings(engine: Engine, layer: str, shapley_samples: int) -> list[core.Ranking]:
    """4 methods' rankings (computed once, not timed: the benchmark times the curves)."""
    model, data = engine.model, engine.data
    return [core.rank(model, data, layer, "shapley", engine=engine, samples=shapley_samples, cache=False),
            *(core.rank(model, data, layer, m, engine=engine, cache=False) for m in ("l1", "l2", "taylor"))]


def case(title: str, engine: Engine, layer: str, reps: int, shapley_samples: int) -> tuple[float, float]:
    ranked = rankings(engine, layer, shapley_samples)
    units = engine.units(layer)
    counts = np.arange(units + 1)
    engine.evaluate({layer: [0]})  # warm-up: prefix cache and linear split

    def stacked():
        return curve_set(engine, layer, ranked, seeds=SEEDS, counts=counts)

    def per_curve():
        return [layer_curve(engine, layer, r, counts) for r in ranked], random_band(engine, layer, SEEDS, counts)

    reference = stacked()
    masks = [c.off(i) for c in reference.curves for i in range(len(counts))]
    masks += [reference.random.curve(s).off(i) for s in range(SEEDS) for i in range(len(counts))]

    def one_at_a_time():
        return np.array([engine.evaluate(off).accuracy for off in masks])

    expected = np.concatenate([*(c.accuracy for c in reference.curves), reference.random.accuracy.ravel()])
    curves, band = per_curve()
    assert np.array_equal(np.concatenate([*(c.accuracy for c in curves), band.accuracy.ravel()]), expected)
    assert np.array_equal(one_at_a_time(), expected), "one-at-a-time accuracies differ from the batched curves"
    times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for _ in range(reps):
        times["a"].append(timed(stacked))
        times["b"].append(timed(per_curve))
        times["c"].append(timed(one_at_a_time))
    a, b, c = (statistics.median(times[k]) for k in "abc")
    print(f"{title}: {len(masks)} masks ({len(ranked)} methods + {SEEDS} seeds x {len(counts)} counts)\n"
          f"  (a) curve_set, stacked {a * 1e3:9.1f} ms\n"
          f"  (b) one call per curve {b * 1e3:9.1f} ms\n"
          f"  (c) one mask at a time {c * 1e3:9.1f} ms\n"
          f"  speed-up (c)/(a) {c / a:6.1f}x   (c)/(b) {c / b:6.1f}x   (b)/(a) {b / a:4.2f}x")
    return c / a, c / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions for LeNet")
    parser.add_argument("--vgg-reps", type=int, default=3, help="interleaved repetitions for VGG (each ~30 s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=2000, help="CIFAR-shaped images for the VGG case")
    parser.add_argument("--skip-vgg", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU; medians of interleaved reps "
          f"({args.reps} LeNet, {args.vgg_reps} VGG)")
    lenet, digits = core.load_model(device="cpu"), all_digits()
    results = {"LeNet-5 conv2": case(f"LeNet-5 conv2, {len(digits)} digits", Engine(lenet, digits), "conv2",
                                     args.reps, shapley_samples=20)}
    if not args.skip_vgg:
        vgg, cifar = vgg_with_data(args.images)
        results["VGG-16 x0.25 conv13"] = case(f"VGG-16 x0.25 conv13, {args.images} CIFAR-shaped images",
                                              Engine(vgg, cifar), "conv13", args.vgg_reps, shapley_samples=4)
    for name, (stacked, per_curve) in results.items():
        verdict = "met" if stacked >= 5 else "MISSED"
        print(f"target {name}: batched curves >= 5x one mask at a time -> {stacked:.1f}x stacked, "
              f"{per_curve:.1f}x one call per curve: {verdict}")


if __name__ == "__main__":
    main()
