"""Paper A Table 2 on real MNIST: LeNet-5 10-20-100-25 compressed to 5-7-45-20 by Shapley, switches, L1
and random (3 seeds), each fine-tuned with the same recipe and budget.

The base model is trained as in benchmarks/mnist_table.py (8,000 MNIST t10k images, 4 epochs); the other
2,000 are split into 1,000 for validation (rankings, early stopping) and 1,000 held-out test images
(every accuracy in the table). Prints a Markdown table for the README.

    .venv/bin/python benchmarks/compress_mnist.py [--epochs 10] [--recipe paper-a]
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from benchmarks.mnist_table import SHAPLEY, mnist_splits  # noqa: E402
from core.data import DataSplit  # noqa: E402
from core.pruning.train import fit  # noqa: E402

TARGET = "5-7-45-20"  # paper A's NR row: 1.0 % error


def split_half(data: DataSplit) -> tuple[DataSplit, DataSplit]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    a, b = order[:len(order) // 2].sort().values, order[len(order) // 2:].sort().values
    return (DataSplit(data.name, "val1000", data.images[a], data.labels[a], data.class_names),
            DataSplit(data.name, "test1000", data.images[b], data.labels[b], data.class_names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (same for every method)")
    parser.add_argument("--recipe", default="paper-a")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, rest = mnist_splits()
    val, test = split_half(rest)
    torch.manual_seed(0)
    model = core.lenet5(mean=(0.1307,), std=(0.3081,))
    fit(model, train, val, epochs=args.base_epochs, lr=0.05, batch_size=128, seed=0, patience=args.base_epochs)
    model.meta = core.ModelMeta("lenet5", {"widths": [10, 20, 100, 25], "in_channels": 1}, (1, 28, 28),
                                [str(i) for i in range(10)], [0.1307], [0.3081], "mnist-t10k",
                                sha256="mnist-t10k-lenet5-base")
    engine, train_engine = core.Engine(model, val), core.Engine(model, train)
    methods = {"Shapley (sampled)": ("shapley", [{"samples": None, "seed": 0}]),
               "switches": ("switches", [{"seed": 0}]),
               "L1": ("l1", [{}]),
               "random": ("random", [{"seed": s} for s in (0, 1, 2)])}
    rows, ranking_seconds = [], {}
    for name, (method, variants) in methods.items():
        for params in variants:
            start = time.perf_counter()
            rankings = {}
            for layer in engine.layers:
                p = dict(params)
                if method == "shapley":
                    p["samples"] = SHAPLEY[layer]["samples"]
                if method == "switches" and "train" in inspect.signature(core.rank).parameters:
                    p["train"] = train_engine  # switches learn on the training split (paper A)
                rankings[layer] = core.rank(model, val, layer, method, engine=engine, **p)
            seconds = time.perf_counter() - start
            label = f"{name}" + (f" seed {params['seed']}" if method == "random" else "")
            ranking_seconds[label] = seconds
            plan = core.plan_from_widths(model, TARGET, rankings)
            result = core.compress_model(model, train, val, plan, args.recipe, test=test, epochs=args.epochs,
                                         eval_every=10**9, label=label)
            rows.append(result.row)
            r = result.row
            print(f"{label}: ranking {seconds:.1f} s, pruned {r.accuracy_pruned:.4f} -> fine-tuned "
                  f"{r.accuracy_finetuned:.4f} ({r.seconds_finetune:.0f} s)", flush=True)
    base = core.Engine(model, test).evaluate().accuracy
    totals = core.model_totals(model)
    print(f"\nbase LeNet-5 10-20-100-25: {totals['params']:,} params, {totals['flops']:,} MACs, "
          f"test accuracy {base:.2%} ({len(test)} held-out images); fine-tuning: {args.recipe}, "
          f"{args.epochs} epochs max on {len(train)} images\n")
    print(core.report_markdown(rows))
    randoms = [r.accuracy_finetuned for r in rows if r.method.startswith("random")]
    print(f"\nrandom mean after fine-tuning: {sum(randoms) / len(randoms):.2%} "
          f"(min {min(randoms):.2%}, max {max(randoms):.2%})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": core.pruning.report.report_rows(rows), "base": base,
                                               "ranking_seconds": ranking_seconds}, indent=2))


if __name__ == "__main__":
    main()
