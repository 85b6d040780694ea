"""The exhaustive enumeration behind exact Shapley, the exact semivalues and the oracle reference:
v of all 2^20 coalitions of LeNet-5 conv2 on 1,000 images, today's path (``game.coalition_values``:
batched ``Engine.evaluate_masks`` calls of 4,096 masks, the engine's einsum fast path) against the
one-sweep enumeration (``core/engine/enumerate.py``: pre-activation = A[high units] + B[low units]),
side by side in one run, alternating (a, b, a, b, ...), 1 torch thread. Before timing, both sides are
checked to give the same values on the slice.

    .venv/bin/python benchmarks/bench_enumeration.py                 # the full 2^20 both ways (~15 min)
    .venv/bin/python benchmarks/bench_enumeration.py --first 32768   # a slice, extrapolated to 2^20

Model: the shipped LeNet-5 10-20-100-25 (digits); data: the first 1,000 MNIST t10k images when the
folder is there (../shared/data/mnist-t10k), else 1,000 digits repeated (timing does not depend on them).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from core.data import DataSplit  # noqa: E402
from core.engine.enumerate import all_coalition_values  # noqa: E402
from core.rankings import game  # noqa: E402


def images(count: int) -> DataSplit:
    try:
        data = core.load_dataset("mnist", "test", root=str(ROOT.parent / "shared" / "data" / "mnist-t10k"))
        return data.subset(count)
    except Exception:  # noqa: BLE001 - timing only: any 1,000 images will do
        data = core.load_dataset("digits", "val")
        reps = -(-count // len(data))
        return DataSplit("digits", "bench", data.images.repeat(reps, 1, 1, 1)[:count],
                         data.labels.repeat(reps)[:count], data.class_names)


def today(engine: core.Engine, layer: str, first: int) -> np.ndarray:
    """Today's path: game.coalition_values over bitmasks 0 .. first - 1 (chunks of evaluate_masks calls)."""
    value = game.payoff(engine, layer)
    chunk = max(64, min(game.CHUNK, 2 ** engine.units(layer) // 16))
    out = []
    for lo in range(0, first, chunk):
        out.append(value(game.bits(np.arange(lo, min(first, lo + chunk)), engine.units(layer))))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", default="conv2")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--first", type=int, default=None, help="time coalitions 0..FIRST-1 only (default: all)")
    parser.add_argument("--reps", type=int, default=1, help="alternating repetitions per side (median)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = core.load_model()
    data = images(args.images)
    engine = core.Engine(model, data)
    units = engine.units(args.layer)
    total = 2 ** units
    first = total if args.first is None else min(total, args.first)
    engine.evaluate_masks(args.layer, np.ones((2, units), np.float32))  # warm caches (prefix, contributions)
    check = min(first, 4096)
    np.testing.assert_allclose(all_coalition_values(engine, args.layer, first=check)[:check],
                               today(engine, args.layer, check), atol=1e-6)
    times = {"today": [], "sweep": []}
    cpu = {"today": [], "sweep": []}
    for _ in range(args.reps):
        for side in ("today", "sweep"):
            start, start_cpu = time.perf_counter(), time.process_time()
            if side == "today":
                today(engine, args.layer, first)
            else:
                all_coalition_values(engine, args.layer, first=first)
            times[side].append(time.perf_counter() - start)
            cpu[side].append(time.process_time() - start_cpu)
    scale = total / first
    print(f"{args.layer} ({units} units, 2^{units} = {total:,} coalitions), {len(data):,} {data.name} images, "
          f"torch threads {torch.get_num_threads()}, {'all coalitions' if first == total else f'{first:,} coalitions timed, x{scale:g} to 2^{units}'}, "
          f"median of {args.reps}; values checked equal on {check:,} coalitions")
    print("| path | wall s (timed) | CPU s (timed) | CPU s for 2^%d | ratio (wall) | ratio (CPU) |" % units)
    print("|---|---|---|---|---|---|")
    base, base_cpu = statistics.median(times["today"]), statistics.median(cpu["today"])
    for side, name in (("today", "today: batched evaluate_masks (4,096 masks per call)"),
                       ("sweep", "one sweep: A[high] + B[low] pre-activations (core/engine/enumerate.py)")):
        t, c = statistics.median(times[side]), statistics.median(cpu[side])
        print(f"| {name} | {t:.1f} | {c:.1f} | {c * scale:.0f} ({c * scale / 60:.1f} min) | {base / t:.2f}x | "
              f"{base_cpu / c:.2f}x |")
    print("(CPU s: the process's CPU time, less sensitive than wall time to the other jobs on a shared machine)")
    print("target: <= 300 s (5 min) for 2^20 coalitions on 1,000 images")


if __name__ == "__main__":
    main()
