"""Batched AM (all units of a layer in one batch) vs one unit at a time, measured side by side.

    .venv/bin/python benchmarks/bench_am.py [--steps 64] [--threads 1]

Prints the speed-up on LeNet-5 conv2 (20 units, the shipped checkpoint), then the seconds a
whole layer takes at the default 256 steps for LeNet conv2 and for a VGG-16 layer of 64 units
(VGG-16 at width 0.5, random weights, conv3: 64 filters on 16x16 maps, 32x32 RGB input).

Then a torchvision model (random-weight ResNet-18, 224x224), before and after issue 21 side by side:
a step with the layer's conv and BatchNorm run for every filter on every image (before) and with only
each image's own filter (``core.interpret.am._generic_own_unit``, after), after checking that both give
the same images (up to float rounding, which Adam's first steps amplify in a few pixels). ``--skip-resnet`` leaves it out.
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
    parser.add_argument("--resnet-steps", type=int, default=4, help="steps per ResNet-18 run (side by side)")
    parser.add_argument("--skip-resnet", action="store_true", help="leave out the ResNet-18 comparison")
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
    if not args.skip_resnet:
        resnet_side_by_side(args.resnet_steps, args.repeats)


def resnet_side_by_side(steps: int, repeats: int) -> None:
    """ResNet-18 (random weights) at 224x224: the full layer per step (before) vs each image's own unit (after)."""
    from core.interpret.am import _GENERIC_OWN

    torch.manual_seed(0)
    resnet = core.load_model("torchvision:resnet18:random")

    def run(layer: str, own: bool) -> torch.Tensor:
        known = _GENERIC_OWN.setdefault(resnet, {})
        if own:
            known.pop(layer, None)  # checked again against the full layer on two images, as in the app
        else:
            known[layer] = False  # the full layer: the path before issue 21
        return optimize_units(resnet, layer, range(unit_count(resnet, layer)), steps=steps)

    print(f"ResNet-18 (random weights, 224x224 RGB), {steps} steps per run, best of {repeats}, before | after:")
    for layer in ("net.conv1", "net.layer1.0.conv1"):
        full, own = run(layer, False), run(layer, True)
        # the same images up to float rounding, which Adam's normalized first steps amplify in a few pixels
        assert float((full - own).abs().mean()) < 1e-4 and float((full - own).abs().max()) < 0.05, layer
        before, after = [], []
        for _ in range(repeats):
            before.append(seconds(lambda: run(layer, False)))
            after.append(seconds(lambda: run(layer, True)))
        b, a = min(before) / steps, min(after) / steps
        print(f"  {layer:20s} {unit_count(resnet, layer)} units: {b:6.2f} s/step | {a:6.2f} s/step  ({b / a:4.1f}x)")


if __name__ == "__main__":
    main()
