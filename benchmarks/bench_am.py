"""Batched AM (all units of a layer in one batch) vs one unit at a time, measured side by side.

    .venv/bin/python benchmarks/bench_am.py [--steps 64] [--threads 1]

Prints the speed-up on LeNet-5 conv2 (20 units, the shipped checkpoint), then the seconds a
whole layer takes at the default 256 steps for LeNet conv2 and for a VGG-16 layer of 64 units
(VGG-16 at width 0.5, random weights, conv3: 64 filters on 16x16 maps, 32x32 RGB input).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import core  # noqa: E402
from core.interpret.am import optimize_units  # noqa: E402
from core.network.models import unit_count  # noqa: E402


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64, help="steps for the side-by-side comparison")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (best time of each kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lenet = core.load_model()
    units = core.prunable_layers(lenet)[1].units

    optimize_units(lenet, "conv2", range(units), steps=4)  # warm-up
    batched, single = [], []
    for _ in range(args.repeats):  # interleaved, best of each: the CPU is shared, noise only adds time
        batched.append(seconds(lambda: optimize_units(lenet, "conv2", range(units), steps=args.steps)))
        single.append(seconds(lambda: [optimize_units(lenet, "conv2", [u], steps=args.steps) for u in range(units)]))
    batched, single = min(batched), min(single)
    print(f"LeNet-5 conv2 ({units} units, {args.steps} steps, {args.threads} thread(s), best of {args.repeats}):")
    print(f"  one batch of {units} images  : {batched:7.2f} s")
    print(f"  {units} runs of one image    : {single:7.2f} s")
    print(f"  speed-up of batching       : {single / batched:7.1f}x")

    full = seconds(lambda: optimize_units(lenet, "conv2", range(units), steps=256))
    torch.manual_seed(0)
    vgg = core.vgg16(width_mult=0.5).eval()
    vgg_units = unit_count(vgg, "conv3")
    vgg_time = seconds(lambda: optimize_units(vgg, "conv3", range(vgg_units), steps=256))
    print("Whole layer at the default 256 steps:")
    print(f"  LeNet-5 conv2, {units} units (28x28 grey)                       : {full:7.2f} s")
    print(f"  VGG-16 x0.5 conv3, {vgg_units} units (32x32 RGB, random weights)  : {vgg_time:7.2f} s")


if __name__ == "__main__":
    main()
