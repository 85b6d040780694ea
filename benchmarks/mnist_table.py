"""Paper A Table 1 on real MNIST: top-5 overlap of Shapley and importance switches, every LeNet-5 layer.

LeNet-5 10-20-100-25 is trained on 8,000 images of the MNIST test set (t10k) and validated on the
other 2,000; Shapley values are computed on those 2,000, the importance switches learn on the
8,000 training images (paper A; KL / 8,000) for ``switch_epochs`` epochs. Prints a Markdown table
for the README.

    .venv/bin/python benchmarks/mnist_table.py [--epochs 4] [--switch-epochs 30]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from core.data import DataSplit, read_idx  # noqa: E402
from core.rankings.agreement import top_k_overlap  # noqa: E402
from core.pruning.train import fit  # noqa: E402

MNIST_T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"
SHAPLEY = {"conv1": dict(samples=40), "conv2": dict(samples=100), "fc1": dict(samples=100),
           "fc2": dict(samples=100)}  # sampled (antithetic) permutations per layer


def mnist_splits(folder: Path = MNIST_T10K, train: int = 8000) -> tuple[DataSplit, DataSplit]:
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz").long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    classes = [str(i) for i in range(10)]
    first, rest = order[:train].sort().values, order[train:].sort().values
    return (DataSplit("mnist-t10k", f"train{train}", images[first], labels[first], classes),
            DataSplit("mnist-t10k", f"val{len(rest)}", images[rest], labels[rest], classes))


def mnist_table(epochs: int = 4, k: int = 5, seed: int = 0, batch_size: int = 128, budget: float = 1.0,
                switch_epochs: int = 30) -> list[dict]:
    """One row per layer: units, top-5 overlap of Shapley and switches, its chance probability.

    ``budget`` scales the Shapley permutations, ``switch_epochs`` the switch training (tests use less)."""
    train, val = mnist_splits()
    torch.manual_seed(seed)
    model = core.lenet5(mean=(0.1307,), std=(0.3081,))
    start = time.perf_counter()
    fit(model, train, val, epochs=epochs, lr=0.05, batch_size=batch_size, seed=seed, patience=epochs)
    train_seconds = time.perf_counter() - start
    engine = core.Engine(model, val)
    train_engine = core.Engine(model, train)
    accuracy = engine.evaluate().accuracy
    rows = []
    for layer, params in SHAPLEY.items():
        shapley = core.rank(model, val, layer, "shapley", engine=engine, seed=seed,
                            samples=max(10, int(params["samples"] * budget)))
        switches = core.rank(model, val, layer, "switches", engine=engine, seed=seed, epochs=switch_epochs,
                             train=train_engine)
        overlap = top_k_overlap(shapley, switches, k)
        rows.append({"layer": layer, "units": engine.units(layer), "shapley": shapley.label,
                     "shapley_top": shapley.top(k), "switches_top": switches.top(k), "overlap": len(overlap.common),
                     "p_chance": overlap.p_chance, "accuracy": accuracy, "train_seconds": train_seconds,
                     "seconds": shapley.seconds + switches.seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--switch-epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows = mnist_table(args.epochs, switch_epochs=args.switch_epochs)
    print(f"LeNet-5 10-20-100-25, {args.epochs} epochs on 8,000 MNIST t10k images "
          f"({rows[0]['train_seconds']:.0f} s), validation accuracy {rows[0]['accuracy']:.2%} on the other 2,000; "
          f"switches: {args.switch_epochs} epochs on the 8,000 training images\n")
    print("| layer | units | Shapley top-5 | switches top-5 | overlap | P(overlap >= this by chance) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['units']} | {r['shapley_top']} ({r['shapley']}) | {r['switches_top']} | "
              f"{r['overlap']}/5 ({r['overlap'] / 5:.0%}) | {r['p_chance']:.3g} |")


if __name__ == "__main__":
    main()
