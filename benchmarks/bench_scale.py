"""Sampled Shapley at scale: Ray workers (1 vs 2), the Ray overhead per round, and image subsets.

    .venv/bin/python benchmarks/bench_scale.py [--cpus 2] [--threads 2] [--conv13-images 2000]
        [--conv13-pairs 4] [--conv10-images 100] [--conv10-pairs 2] [--val 4000] [--device cpu]
        [--precision float32] [--skip conv13 conv10 subset]

About 14 minutes on a quiet 2-core CPU with the defaults. On a GPU machine, e.g.
``--device cuda --precision bfloat16 --conv10-images 2000 --cpus 16``: the local run and the VGG
data use the GPU, and so do the Ray workers (RayPool runs them where the engine runs; 2 workers on
one GPU share it, half each; rows are marked "(GPU)").

Measured side by side in one run (the machine is noisy: compare ratios within one run):

1. Ray 1 vs 2 workers (and the local run, ``--threads`` torch threads, no Ray, for reference) on a
   full-width VGG-16 (32x32 input) with *random weights*: its BatchNorm running statistics are set
   from the data (one forward pass in train mode, momentum=None) and the labels are the network's
   own predictions, so masks move the accuracy. Timing does not depend on training; the rankings
   themselves are noise. Layers conv13 (``--conv13-images``) and conv10 (fewer images so it
   finishes; 97+ so that the engine takes the same path as with thousands of images: at <= 96
   images it caches conv10's per-channel contributions to conv11, a faster path that 10,000 images
   would not fit). Same seed and permutations for every run; one task = one antithetic pair
   (2 x 511 = 1,022 coalitions for 512 units). Timed after ``pool.ready()`` and after one warm-up
   task per worker (the prefix cache): both reported separately as start-up.
2. Ray overhead: ``pool.map`` rounds of trivial tasks on the 2 warm workers.
3. Image subset vs all images on a *trained* LeNet-5 (2 epochs on real MNIST t10k, ``--val``
   images held out for the payoff), layer fc1 (100 units): a reference ranking (all images,
   ``--reference`` permutations, another seed), then all images / subset="auto" / a fixed subset at
   growing permutation counts: top-10 overlap and Spearman vs the reference, image evaluations
   (coalitions x images) and seconds; the first count reaching 9/10 of the reference's top-10.

Images for VGG: MNIST t10k digits converted to 3x32x32 (``core.data.convert_images``); random
images when ../shared/data/mnist-t10k is missing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: E402
from core.data import DataSplit, convert_images  # noqa: E402
from core.network.device import device_label, pick_device  # noqa: E402

MNIST_T10K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist-t10k"
CLASSES = [str(i) for i in range(10)]
VGG_MEAN, VGG_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


# --- tasks run on the Ray workers (pickled by value from __main__) ------------------------------------

def warm_task(engine, layer: str) -> int:
    """The worker's prefix cache (and linear split) for the layer, plus its torch thread count."""
    units = engine.units(layer)
    engine.evaluate_masks(layer, torch.ones(2, units))
    return torch.get_num_threads()


def trivial_task(engine, layer: str) -> int:
    return engine.units(layer)


# --- models and data ---------------------------------------------------------------------------------

def vgg_images(count: int) -> tuple[torch.Tensor, str]:
    if MNIST_T10K.exists():
        from benchmarks.mnist_table import read_idx

        digits = read_idx(MNIST_T10K / "t10k-images-idx3-ubyte.gz")[:count].float().div(255).unsqueeze(1)
        return convert_images(digits, (3, 32, 32)), "MNIST t10k digits as 3x32x32"
    return torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(0)), "random 3x32x32 images"


def random_vgg(images: torch.Tensor) -> nn.Module:
    """Full-width VGG-16, random weights, BatchNorm running statistics of these images (momentum=None:
    the exact mean over the batches of one forward pass in train mode)."""
    torch.manual_seed(0)
    net = core.vgg16(width_mult=1.0, num_classes=10, in_channels=3, mean=VGG_MEAN, std=VGG_STD)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for lo in range(0, min(len(images), 1000), 250):
            net(images[lo:lo + 250])
    net.eval()
    net.meta = core.ModelMeta("vgg16", {"width_mult": 1.0, "in_channels": 3}, (3, 32, 32), CLASSES,
                              VGG_MEAN, VGG_STD, sha256="bench-scale-random-vgg16")
    return net


def labelled(net: nn.Module, images: torch.Tensor, name: str) -> DataSplit:
    device = next(net.parameters()).device
    with torch.no_grad():  # the network's own predictions: masks then move the accuracy
        labels = torch.cat([net(images[lo:lo + 250].to(device)).argmax(1).cpu() for lo in range(0, len(images), 250)])
    return DataSplit(name, f"{len(images)}", images, labels, CLASSES)


def mnist_lenet(val_count: int):
    from benchmarks.mnist_table import mnist_splits
    from core.pruning.train import fit

    train, val = mnist_splits(MNIST_T10K, train=10000 - val_count)
    torch.manual_seed(0)
    model = core.lenet5(mean=(0.1307,), std=(0.3081,))
    fit(model, train, val, epochs=2, lr=0.05, batch_size=128, seed=0, patience=2)
    return model.eval(), val


# --- 1 + 2: Ray workers ------------------------------------------------------------------------------

def shapley(model, data, engine, layer, pairs, pool=None):
    return core.rank(model, data, layer, "shapley", samples=2 * pairs, seed=0, cache=False, engine=engine,
                     pool=pool)


def ray_case(title, model, data, layer, pairs, args, rows, overhead=None):
    from core.engine.pools import RayPool

    engine = core.Engine(model, data, precision=args.precision)
    warm_task(engine, layer)  # the driver evaluates v(none), v(all) itself: warm it too
    local = shapley(model, data, engine, layer, pairs)
    n_images, evals = len(data), local.extra["evaluations"]
    results = [("local, no Ray", args.threads, 0.0, 0.0, local, torch.get_num_threads())]
    for workers in (1, 2):
        start = time.perf_counter()
        pool = RayPool(engine, workers=workers).ready()
        started = time.perf_counter() - start
        start = time.perf_counter()
        threads = pool.map(warm_task, [(layer,)] * workers)
        warmed = time.perf_counter() - start
        try:
            ranking = shapley(model, data, engine, layer, pairs, pool)
            assert ranking.extra["evaluations"] == evals
            if workers == 2 and overhead is not None:
                overhead.update(ray_overhead(pool, layer, args.rounds, args.round_tasks))
        finally:
            pool.close()
        results.append((f"Ray, {workers} worker{'s' * (workers > 1)}" + (" (GPU)" if pool.device == "cuda" else ""),
                        workers, started, warmed, ranking, max(threads)))
    print(f"\n{title}, {layer} (512 units), {n_images} images, {2 * pairs} permutations "
          f"({pairs} antithetic pairs = {pairs} tasks), {evals:,} coalitions, seed 0")
    print(f"  {'run':<20} {'threads':>7} {'start-up s':>10} {'warm-up s':>9} {'seconds':>8} {'coal/s':>8} "
          f"{'ms/coal-img':>11} {'x local':>7} {'x 1 worker':>10}")
    base_local, base_one = results[0][4].seconds, results[1][4].seconds
    for name, count, started, warmed, ranking, threads in results:
        per = ranking.seconds / (evals * n_images) * 1e3
        up = f"{started:.1f}" if count and name.startswith("Ray") else "-"
        warm = f"{warmed:.1f}" if name.startswith("Ray") else "-"
        print(f"  {name:<20} {threads:>7} {up:>10} {warm:>9} {ranking.seconds:>8.1f} "
              f"{evals / ranking.seconds:>8.1f} {per:>11.4f} {base_local / ranking.seconds:>6.2f}x "
              f"{base_one / ranking.seconds:>9.2f}x")
        rows.append({"layer": layer, "run": name, "images": n_images, "evaluations": evals,
                     "seconds": ranking.seconds, "ms_per_coalition_image": per})
    one, two = results[1][4], results[2][4]
    same = np.array_equal(one.scores, two.scores) and np.array_equal(one.stderr, two.stderr)
    diff_local = float(np.max(np.abs(local.scores - two.scores)))
    print(f"  1-worker and 2-worker scores identical: {'yes' if same else 'NO'}; "
          f"max |local - Ray| = {diff_local:.2g}; 2 vs 1 workers: {one.seconds / two.seconds:.2f}x "
          f"(target >= 1.6x)")
    return one.seconds / two.seconds


def ray_overhead(pool, layer, rounds, tasks) -> dict:
    pool.map(trivial_task, [(layer,)] * tasks)  # first call of a new function: its pickle is shipped
    before = len(pool.round_seconds)
    for _ in range(rounds):
        pool.map(trivial_task, [(layer,)] * tasks)
    many = statistics.median(pool.round_seconds[before:])
    before = len(pool.round_seconds)
    for _ in range(rounds):
        pool.map(trivial_task, [(layer,)])
    single = statistics.median(pool.round_seconds[before:])
    return {"round": many, "tasks": tasks, "single": single, "workers": pool.workers, "rounds": rounds}


# --- 3: image subsets ----------------------------------------------------------------------------------

def subset_case(args) -> None:
    start = time.perf_counter()
    model, val = mnist_lenet(args.val)
    engine = core.Engine(model, val)
    layer, n = args.layer, len(val)
    units = engine.units(layer)
    warm_task(engine, layer)
    print(f"\nImage subset vs all images: LeNet-5 trained 2 epochs on {10000 - n} MNIST t10k images "
          f"({time.perf_counter() - start:.0f} s), payoff = accuracy on the other {n} "
          f"(full-network accuracy {engine.evaluate().accuracy:.4f}), layer {layer} ({units} units)")
    reference = core.rank(model, val, layer, "shapley", samples=args.reference, seed=1000, cache=False,
                          engine=engine)
    ref_top = set(reference.top(10))
    gaps = np.sort(reference.scores)[::-1]
    print(f"  reference: all images, {reference.extra['permutations']} permutations (seed 1000), "
          f"{reference.seconds:.1f} s; its 10th/11th scores {gaps[9]:.5f} / {gaps[10]:.5f}, "
          f"median stderr {np.median(reference.stderr):.5f}")
    modes = [("all images", None), ('subset="auto"', "auto")] + [(f"subset={m}", m) for m in args.fixed]
    print(f"  {'images per coalition':<22} {'perms':>5} {'subset':>6} {'top-10':>6} {'Spearman':>8} "
          f"{'image evals':>12} {'seconds':>7} {'image se':>8} {'perm se':>8}")
    firsts = []
    for name, subset in modes:
        first = None
        for perms in args.perms:
            params = {} if subset is None else {"subset": subset}
            r = core.rank(model, val, layer, "shapley", samples=perms, seed=0, cache=False, engine=engine, **params)
            overlap = len(ref_top & set(r.top(10)))
            rho = float(spearmanr(reference.scores, r.scores).statistic)
            image_evals = r.extra.get("image_evaluations", r.extra["evaluations"] * n)
            size = r.extra.get("subset", n)
            ise = r.extra.get("image_stderr")
            pse = r.extra.get("permutation_stderr")
            se = (f"{np.mean(ise):>8.5f} {np.mean(pse):>8.5f}" if ise is not None
                  else f"{'-':>8} {np.mean(r.stderr):>8.5f}")
            print(f"  {name:<22} {perms:>5} {size:>6} {overlap:>4}/10 {rho:>8.3f} {image_evals:>12,} "
                  f"{r.seconds:>7.2f} {se}")
            if first is None and overlap >= 9:
                first = (perms, image_evals, r.seconds, size)
        firsts.append((name, first))
    print("  (image se / perm se: mean over units of the image-sampling and permutation parts of the "
          "standard error; all images: no image part)")
    print(f"\n  first permutation count reaching >= 9/10 of the reference top-10 (counts {args.perms}):")
    base = firsts[0][1]
    for name, first in firsts:
        if first is None:
            print(f"  {name:<22} not reached")
            continue
        perms, image_evals, seconds, size = first
        ratio = "" if base is None else (f"  ({base[1] / image_evals:.2f}x fewer image evaluations, "
                                         f"{base[2] / seconds:.2f}x faster than all images)")
        print(f"  {name:<22} {perms:>4} permutations, subset {size}, {image_evals:>12,} image evaluations, "
              f"{seconds:>6.2f} s{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (the local run and the "
                        "VGG data; the Ray workers run there too)")
    parser.add_argument("--precision", default="float32", help="the VGG runs' engine precision (bfloat16 on a GPU)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the local (no Ray) run")
    parser.add_argument("--conv13-images", type=int, default=2000)
    parser.add_argument("--conv13-pairs", type=int, default=4, help="antithetic pairs (= tasks)")
    parser.add_argument("--conv10-images", type=int, default=100)
    parser.add_argument("--conv10-pairs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20, help="trivial pool.map rounds for the overhead")
    parser.add_argument("--round-tasks", type=int, default=8)
    parser.add_argument("--val", type=int, default=4000, help="MNIST t10k images held out for the payoff")
    parser.add_argument("--layer", default="fc1", help="LeNet-5 layer of the subset comparison")
    parser.add_argument("--reference", type=int, default=800, help="permutations of the reference ranking")
    parser.add_argument("--perms", type=int, nargs="+", default=[20, 40, 80, 160, 320, 640])
    parser.add_argument("--fixed", type=int, nargs="*", default=[200], help="fixed subset sizes to compare")
    parser.add_argument("--skip", nargs="*", default=[], choices=["conv13", "conv10", "subset"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    begin = time.perf_counter()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, local run: {args.threads} torch threads, "
          f"VGG on {device_label(device)} ({args.precision}), LeNet on CPU; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    rows: list[dict] = []
    overhead: dict = {}
    speedups = {}
    cases = [("conv13", args.conv13_images, args.conv13_pairs), ("conv10", args.conv10_images, args.conv10_pairs)]
    cases = [c for c in cases if c[0] not in args.skip]
    if cases:
        from core.engine.pools import ray_init

        ray = ray_init(num_cpus=args.cpus)
        try:
            resources = ray.cluster_resources()
            print(f"local Ray {ray.__version__}: {int(resources.get('CPU', 0))} CPUs, "
                  f"{int(resources.get('GPU', 0))} GPUs")
            images, source = vgg_images(max(c[1] for c in cases))
            net = random_vgg(images).to(device)
            print(f"VGG-16 full width, RANDOM weights; BatchNorm running statistics from {min(len(images), 1000)} "
                  f"of the images (train-mode forward, momentum=None); data: {source}, labelled by the "
                  f"network's own predictions. Timing only: these rankings are noise.")
            for layer, count, pairs in cases:
                data = labelled(net, images[:count], source)
                speedups[layer] = ray_case("VGG-16 (random weights)", net, data, layer, pairs, args, rows,
                                           overhead if layer == cases[0][0] else None)
        finally:
            ray.shutdown()
    if overhead:
        print(f"\nRay overhead, {overhead['workers']} warm workers, trivial tasks (engine.units), medians of "
              f"{overhead['rounds']} rounds:")
        print(f"  round of {overhead['tasks']} tasks: {overhead['round'] * 1e3:.1f} ms "
              f"({overhead['round'] / overhead['tasks'] * 1e3:.2f} ms per task); round of 1 task: "
              f"{overhead['single'] * 1e3:.1f} ms")
    for layer in speedups:
        one = next(r for r in rows if r["layer"] == layer and r["run"].startswith("Ray, 1"))
        print(f"{layer}: 1 CPU core costs {one['ms_per_coalition_image']:.4f} ms per coalition-image "
              f"(1 Ray worker); 2 vs 1 workers {speedups[layer]:.2f}x")
    if "subset" not in args.skip:
        if MNIST_T10K.exists():
            subset_case(args)
        else:
            print(f"\n(no real MNIST at {MNIST_T10K}: image-subset comparison skipped)")
    print(f"\ntotal {time.perf_counter() - begin:.0f} s; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
