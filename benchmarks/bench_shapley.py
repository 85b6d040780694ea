"""Shapley coalition evaluations per second: the engine vs the authors' protocol vs Captum.

Same layer (LeNet-5 conv2, 20 units), same data (digits validation split, 359 images), same
number of permutations, measured side by side in one run:

- engine: ``core.rankings`` sampled Shapley (coalitions batched through Engine.evaluate_masks);
- (a) naive, as the authors' code: deepcopy the model, zero the off filters' weights and bias,
  full forward pass over the validation set, one coalition at a time (same permutations, so
  the two estimates must agree exactly: checked);
- (b) Captum ShapleyValueSampling attributing to a 1xN gate vector, forward function built on
  Engine.gated_logits (only the suffix runs), one coalition per call.

Then the wall time of exact Shapley on conv1 (2^10 coalitions) and conv2 (2^20; measured on a
slice and extrapolated unless --full).

    .venv/bin/python benchmarks/bench_shapley.py [--permutations 50] [--threads 2] [--full]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: E402
from core.network.models import weight_module  # noqa: E402
from core.rankings import game, shapley  # noqa: E402

LAYER = "conv2"


def naive_value(model, data, layer):
    """v(keep rows), the authors' way: a zeroed copy of the model and a full forward pass per coalition."""
    def value(keep: np.ndarray) -> np.ndarray:
        out = []
        for row in keep:
            pruned = copy.deepcopy(model)
            conv = weight_module(pruned, layer)
            off = torch.from_numpy(np.flatnonzero(row == 0))
            with torch.no_grad():
                conv.weight[off] = 0
                conv.bias[off] = 0
                predicted = pruned(data.images).argmax(1)
            out.append(float((predicted == data.labels).float().mean()))
        return np.array(out)
    return value


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description="Shapley evaluation throughput, side by side")
    parser.add_argument("--permutations", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="run exact conv2 (2^20 coalitions) to the end")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, data = core.load_model(), core.load_dataset("digits", "val")
    units, perms = 20, args.permutations + args.permutations % 2
    print(f"LeNet-5 {LAYER} ({units} units), digits val ({len(data)} images), {perms} permutations, "
          f"{args.threads} threads\n")

    engine = core.Engine(model, data)
    engine_value = game.payoff(engine, LAYER, "accuracy")
    engine_value(np.ones((2, units), np.float32))  # warm the prefix cache (a one-off per layer, ~ms)
    (ours, _, info), t_engine = timed(lambda: shapley.sampled(engine_value, units, perms, seed=0))
    evals = info["evaluations"]
    (naive, _, _), t_naive = timed(lambda: shapley.sampled(naive_value(model, data, LAYER), units, perms, seed=0))
    assert np.allclose(ours, naive, atol=1e-6), "engine and naive protocol disagree"

    from captum.attr import ShapleyValueSampling
    calls = {"n": 0}

    def gate_accuracy(gate: torch.Tensor) -> torch.Tensor:
        calls["n"] += len(gate)
        with torch.no_grad():
            return torch.stack([(engine.gated_logits(LAYER, g).argmax(1) == engine.data.labels).float().mean()
                                for g in gate])

    svs = ShapleyValueSampling(gate_accuracy)
    (captum_sv, t_captum) = timed(lambda: svs.attribute(torch.ones(1, units), baselines=torch.zeros(1, units),
                                                        n_samples=perms, perturbations_per_eval=1))
    spearman = float(np.corrcoef(np.argsort(np.argsort(ours)), np.argsort(np.argsort(captum_sv[0].numpy())))[0, 1])

    rows = [("engine (batched coalitions)", evals, t_engine), ("(a) naive: copy + zero + full forward", evals,
            t_naive), ("(b) Captum ShapleyValueSampling, 1xN gate", calls["n"], t_captum)]
    print(f"{'method':<45} {'evaluations':>11} {'seconds':>8} {'eval/s':>9} {'engine is':>10}")
    rate = evals / t_engine
    for name, n, seconds in rows:
        print(f"{name:<45} {n:>11} {seconds:>8.2f} {n / seconds:>9.0f} {rate / (n / seconds):>9.1f}x")
    print(f"\nengine vs naive: same permutations, identical estimates; engine vs Captum: Spearman "
          f"{spearman:.2f} (different permutations)\n")

    conv1 = core.Engine(model, data)
    _, t_conv1 = timed(lambda: core.rank(model, data, "conv1", "shapley", estimator="exact", cache=False,
                                         engine=conv1))
    print(f"exact Shapley conv1 (2^10 = 1,024 coalitions): {t_conv1:.1f} s")
    if args.full:
        _, t_conv2 = timed(lambda: core.rank(model, data, "conv2", "shapley", estimator="exact", cache=False,
                                             engine=engine))
        print(f"exact Shapley conv2 (2^20 = 1,048,576 coalitions): {t_conv2:.0f} s (measured)")
    else:
        block = 2 ** 15
        masks = ((np.arange(block)[:, None] >> np.arange(units)) & 1).astype(np.float32)
        _, t_block = timed(lambda: engine_value(masks))
        print(f"exact Shapley conv2 (2^20 = 1,048,576 coalitions): ~{t_block * 2 ** 20 / block:.0f} s "
              f"EXTRAPOLATED from {block:,} coalitions in {t_block:.1f} s ({block / t_block:.0f} coalitions/s); "
              f"run with --full to measure")


if __name__ == "__main__":
    main()
