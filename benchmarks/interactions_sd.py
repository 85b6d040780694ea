"""Are paper B's similar filters (small SD) the redundant ones (negative Shapley interaction)? Measured.

For every layer of the shipped LeNet-5 on digits (validation split) and of a LeNet-5 trained on real
MNIST (8,000 t10k images, validated on the other 2,000, as benchmarks/mnist_table.py), it computes
paper B's SD (``core.similarity_matrix``, 256 AM steps) and the pairwise Shapley interaction index
(``core.interactions``: exact where 2^n coalitions are affordable, else sampled), and prints the
Spearman correlation of the two over the pairs i < j (positive = similar pairs tend to be redundant),
its p-value, Pearson, and how many of the 5 most similar pairs are among the 5 most redundant.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/interactions_sd.py [--data digits,mnist]

One torch thread (torch.set_num_threads(1)). Everything is cached on disk: a rerun prints at once.
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

# layer -> interaction estimator settings, per data set (exact costs 2^n evaluations)
SETTINGS = {
    "digits": {"conv1": {"estimator": "exact"}, "conv2": {"estimator": "exact"},
               "fc1": {"estimator": "sampled", "samples": 4}, "fc2": {"estimator": "sampled", "samples": 40}},
    "mnist": {"conv1": {"estimator": "exact"}, "conv2": {"estimator": "sampled", "samples": 20},
              "fc1": {"estimator": "sampled", "samples": 6}, "fc2": {"estimator": "sampled", "samples": 20}},
}


def model_and_data(name: str):
    if name == "digits":
        return core.load_model(), core.load_dataset("digits", "val"), "shipped LeNet-5 on digits val"
    from benchmarks.mnist_table import mnist_splits
    from core.pruning.train import fit

    train, val = mnist_splits()
    torch.manual_seed(0)
    model = core.lenet5(mean=(0.1307,), std=(0.3081,))
    fit(model, train, val, epochs=4, lr=0.05, batch_size=128, seed=0, patience=4)
    return model, val, f"LeNet-5 trained 4 epochs on 8,000 MNIST t10k images, val = the other {len(val):,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits,mnist")
    parser.add_argument("--layers", default="conv1,conv2,fc1,fc2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.data.split(","):
        model, val, what = model_and_data(name)
        engine = core.Engine(model, val)
        print(f"\n{what}: accuracy {engine.evaluate().accuracy:.2%}; torch threads {torch.get_num_threads()}\n")
        print("| layer | units | interaction index | Spearman(SD, I) | p | Pearson | top-5 similar among top-5 "
              "redundant (chance p) | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        for layer in args.layers.split(","):
            start = time.perf_counter()
            similarity = core.similarity_matrix(model, val, layer, engine=engine)
            found = core.interactions(model, val, layer, engine=engine, **SETTINGS[name][layer])
            agreement = core.similarity_vs_interactions(similarity, found)
            print(f"| {layer} | {engine.units(layer)} | {found.label.split('(')[1].rstrip(')')}, "
                  f"{found.evaluations:,} evaluations | {agreement.spearman:+.2f} | {agreement.p_value:.2g} | "
                  f"{agreement.pearson:+.2f} | {agreement.overlap}/5 ({agreement.p_overlap:.2g}) | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
