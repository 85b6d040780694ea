"""Reduced-precision evaluation (autocast bfloat16 / float16) against float32, measured side by side.

    .venv/bin/python benchmarks/bench_precision.py [--device auto] [--reps 3] [--images 1000] [--threads 2]

For each network and each precision this device's autocast offers (``Engine(..., precision=...)``):

* changed, full: share of the images whose predicted class differs from float32, whole network;
* changed, masks: the same share over 16 random masks (a quarter of the units off) of one layer
  (the engine's masked path: float32 prefix cache, reduced-precision suffix);
* max |acc diff|: the largest accuracy difference over those masks (in points);
* Spearman / top-5: sampled-Shapley ranking of the layer against the float32 one, same seed;
* time x: seconds of a K=64 batched mask evaluation (medians of interleaved reps) and of the
  Shapley ranking, float32 / reduced (> 1 = reduced precision is faster).

Networks: the shipped LeNet-5 on the digits val split (conv2); a LeNet-5 trained here for 2 epochs
on 8,000 images of real MNIST t10k, validated on the other 2,000, when ../shared/data/mnist-t10k
exists (conv2); a VGG-16 x0.25 with *random weights* (BN statistics of the data) on CIFAR-shaped
random images labelled by the network itself (conv13): its numbers say how much rounding moves a
deep network's argmax, not a trained model's accuracy.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: E402
from benchmarks.bench_engine import side_by_side, vgg_with_data  # noqa: E402
from core.network.device import device_label, pick_device  # noqa: E402
from core.engine import PRECISIONS, Engine, check_precision  # noqa: E402

MNIST_T10K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist-t10k"


def available(device: torch.device) -> list[str]:
    out = []
    for precision in PRECISIONS:
        try:
            check_precision(precision, device)
            out.append(precision)
        except ValueError as exc:
            print(f"  ({precision} skipped: {exc})")
    return out


def predictions_changed(a: Engine, b: Engine, offs: list[dict | None]) -> tuple[float, float]:
    """Share of (mask, image) predictions that differ, and the largest accuracy difference."""
    changed, worst = [], 0.0
    for off in offs:
        x, y = a.evaluate(off), b.evaluate(off)
        changed.append(float((x.predictions != y.predictions).mean()))
        worst = max(worst, abs(x.accuracy - y.accuracy))
    return float(np.mean(changed)), worst


def case(title: str, model, data, layer: str, samples: int, precisions: list[str], reps: int) -> list[dict]:
    exact = Engine(model, data)
    units = exact.units(layer)
    rng = np.random.default_rng(0)
    offs = [{layer: sorted(rng.choice(units, size=max(1, units // 4), replace=False).tolist())} for _ in range(16)]
    keep = (torch.rand(64, units, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    exact.evaluate_masks(layer, keep)  # warm-up: prefix cache and linear split
    reference = core.rank(model, data, layer, "shapley", samples=samples, seed=0, cache=False, engine=exact)
    rows = []
    print(f"\n{title}: {len(data)} images, layer {layer} ({units} units), float32 accuracy "
          f"{exact.evaluate().accuracy:.4f}, Shapley {samples} sampled permutations "
          f"({reference.seconds:.2f} s in float32)")
    print(f"  {'precision':<10} {'changed, full':>14} {'changed, masks':>15} {'max |acc diff|':>15} "
          f"{'Spearman':>9} {'top-5':>6} {'time x, K=64':>13} {'time x, Shapley':>16}")
    for precision in precisions:
        reduced = Engine(model, data, precision=precision)
        reduced.evaluate_masks(layer, keep)
        full, _ = predictions_changed(exact, reduced, [None])
        masked, worst = predictions_changed(exact, reduced, offs)
        ranking = core.rank(model, data, layer, "shapley", samples=samples, seed=0, cache=False, engine=reduced)
        rho = float(spearmanr(reference.scores, ranking.scores).statistic) if precision != "float32" else 1.0
        top = len(set(reference.top(5)) & set(ranking.top(5)))
        t32, tred = side_by_side(lambda: exact.evaluate_masks(layer, keep), lambda: reduced.evaluate_masks(layer, keep),
                                 reps)
        row = {"network": title, "precision": precision, "changed_full": full, "changed_masks": masked,
               "max_acc_diff": worst, "spearman": rho, "top5": top, "speed_batch": t32 / tred,
               "speed_shapley": reference.seconds / ranking.seconds}
        rows.append(row)
        print(f"  {precision:<10} {full:>13.2%} {masked:>15.2%} {worst * 100:>13.2f} pt {rho:>9.4f} {top:>4}/5 "
              f"{row['speed_batch']:>12.2f}x {row['speed_shapley']:>15.2f}x")
    return rows


def mnist_lenet(device: torch.device):
    from benchmarks.mnist_table import mnist_splits
    from core.pruning.train import fit

    train, val = mnist_splits(MNIST_T10K)
    torch.manual_seed(0)
    model = core.lenet5(mean=(0.1307,), std=(0.3081,)).to(device)
    fit(model, train, val, epochs=2, lr=0.05, batch_size=128, seed=0, patience=2)
    return model, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=1000, help="CIFAR-shaped images for the VGG case")
    parser.add_argument("--samples", type=int, default=40, help="Shapley permutations (LeNet; VGG uses a quarter)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {device_label(device)}; "
          f"medians of {args.reps} interleaved reps")
    precisions = available(device)
    start = time.perf_counter()
    rows = case("LeNet-5 (shipped) on digits val", core.load_model(device=device),
                core.load_dataset("digits", "val"), "conv2", args.samples, precisions, args.reps)
    if MNIST_T10K.exists():
        model, val = mnist_lenet(device)
        rows += case("LeNet-5 (2 epochs) on MNIST t10k", model, val, "conv2", args.samples, precisions, args.reps)
    else:
        print(f"\n(no real MNIST at {MNIST_T10K}: skipped)")
    vgg, cifar = vgg_with_data(args.images)
    rows += case("VGG-16 x0.25, random weights", vgg.to(device), cifar, "conv13", max(4, args.samples // 4),
                 precisions, args.reps)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    reduced = [r for r in rows if r["precision"] != "float32"]
    if reduced:
        print(f"worst over networks: {max(r['changed_full'] for r in reduced):.2%} of predictions changed "
              f"(full), lowest Shapley Spearman {min(r['spearman'] for r in reduced):.4f}, "
              f"median time ratio {statistics.median(r['speed_batch'] for r in reduced):.2f}x")


if __name__ == "__main__":
    main()
