"""Benchmark of the masking engine, measured side by side in one run.

    .venv/bin/python benchmarks/bench_engine.py [--reps 7] [--threads 1] [--images 2000]

1. Live toggle: one mask evaluated through the prefix cache (``Engine.evaluate(off)`` after
   warm-up) vs a full forward pass of the whole network with the same mask applied by a hook
   (the engine's generic path, as for any torchvision model). Both must give the same accuracy.
   For conv13 of a VGG-16 (width x0.25: 16..128 filters) on CIFAR-shaped images, and for
   conv2 of the shipped LeNet-5 on all 1,797 digits images.
2. Shapley hot path: K=64 masks in one batched pass (``Engine.evaluate_masks``) vs the same
   64 masks one at a time (``Engine.evaluate``), both from the warm prefix cache.

Repetitions of the two sides are interleaved and medians reported, so machine load hits both.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: E402
from core.data import DataSplit  # noqa: E402
from core.engine import Engine  # noqa: E402


class FullPass(nn.Module):
    """The same network, not staged: the engine then runs every mask as a full hooked forward pass."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.meta = getattr(net, "meta", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(a, b, reps: int) -> tuple[float, float]:
    """Median seconds of a() and b(), repetitions interleaved (a, b, a, b, ...)."""
    ta, tb = [], []
    for _ in range(reps):
        ta.append(timed(a))
        tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)


def random_offs(units: int, count: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [sorted(rng.choice(units, size=units // 4, replace=False).tolist()) for _ in range(count)]


def live_toggle(title: str, net: nn.Module, data: DataSplit, layer: str, full_layer: str, reps: int) -> float:
    cached, full = Engine(net, data), Engine(FullPass(net), data)
    offs = random_offs(cached.units(layer), reps + 1, seed=0)
    cached.evaluate({layer: offs[0]})  # warm-up: fills the prefix cache (and the linear split)
    for off in offs[:3]:  # same network, same answer
        a, b = cached.evaluate({layer: off}), full.evaluate({full_layer: off})
        assert a.accuracy == b.accuracy, (a.accuracy, b.accuracy)
        assert abs(a.loss - b.loss) <= 1e-4 * max(1.0, abs(b.loss)), (a.loss, b.loss)
    i = iter(range(10**9))
    t_cached, t_full = side_by_side(lambda: cached.evaluate({layer: offs[next(i) % len(offs)]}),
                                    lambda: full.evaluate({full_layer: offs[next(i) % len(offs)]}), reps)
    ratio = t_full / t_cached
    print(f"{title:<44} cached {t_cached * 1e3:9.1f} ms   full pass {t_full * 1e3:9.1f} ms   "
          f"speed-up {ratio:6.1f}x")
    return ratio


def batching(title: str, net: nn.Module, data: DataSplit, layer: str, k: int, reps: int) -> float:
    engine = Engine(net, data)
    units = engine.units(layer)
    keep = (torch.rand(k, units, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    offs = [torch.nonzero(row == 0).flatten().tolist() for row in keep]
    engine.evaluate({layer: offs[0]})  # warm-up: prefix cache and linear split

    def one_at_a_time():
        return np.array([engine.evaluate({layer: off}).accuracy for off in offs])

    batched = engine.evaluate_masks(layer, keep).accuracy
    assert np.array_equal(batched, one_at_a_time())
    t_batched, t_single = side_by_side(lambda: engine.evaluate_masks(layer, keep), one_at_a_time, reps)
    ratio = t_single / t_batched
    print(f"{title:<44} batched {t_batched * 1e3:8.1f} ms   one at a time {t_single * 1e3:7.1f} ms   "
          f"speed-up {ratio:6.1f}x")
    return ratio


def vgg_with_data(images: int) -> tuple[nn.Module, DataSplit]:
    """VGG-16 x0.25 with BN statistics of the data (random weights: timing does not depend on training)."""
    torch.manual_seed(0)
    net = core.vgg16(width_mult=0.25)
    x = torch.rand(images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(x[:256])
    net.eval()
    with torch.no_grad():  # labels the network mostly gets right, so masks move the accuracy
        labels = torch.cat([net(x[i:i + 500]) for i in range(0, images, 500)]).argmax(1)
    return net, DataSplit("cifar-shaped random", "test", x, labels, [str(i) for i in range(10)])


def all_digits() -> DataSplit:
    parts = [core.load_dataset("digits", s) for s in ("train", "val", "test")]
    return DataSplit("digits", "all", torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                     parts[0].class_names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=2000, help="CIFAR-shaped images for the VGG case")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU; medians of {args.reps} interleaved reps")
    lenet, digits = core.load_model(device="cpu"), all_digits()
    vgg, cifar = vgg_with_data(args.images)
    results = {
        "VGG-16 x0.25 conv13, live toggle": live_toggle(
            f"VGG-16 x0.25 conv13 ({args.images} images)", vgg, cifar, "conv13", "net.conv13.0", args.reps),
        "LeNet-5 conv2, live toggle": live_toggle(
            f"LeNet-5 conv2 ({len(digits)} digits)", lenet, digits, "conv2", "net.conv2.0", args.reps),
        "LeNet-5 conv2, K=64 batched": batching(
            f"LeNet-5 conv2, K=64 masks ({len(digits)} digits)", lenet, digits, "conv2", 64, args.reps),
        "VGG-16 x0.25 conv13, K=64 batched": batching(
            f"VGG-16 x0.25 conv13, K=64 masks ({args.images})", vgg, cifar, "conv13", 64, args.reps),
    }
    targets = {"VGG-16 x0.25 conv13, live toggle": 3.0, "LeNet-5 conv2, K=64 batched": 2.0,
               "VGG-16 x0.25 conv13, K=64 batched": 2.0}
    for name, target in targets.items():
        verdict = "met" if results[name] >= target else "MISSED"
        print(f"target {name}: >= {target:.0f}x -> {results[name]:.1f}x {verdict}")


if __name__ == "__main__":
    main()
