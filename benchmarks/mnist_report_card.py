"""The report card on real data (issue 19): per LeNet-5 layer, how close each ranking's pruning curve comes
to the best possible removal (the exhaustive oracle, conv1 and conv2) or to the greedy reference (fc1, fc2).

``--dataset mnist`` (default): the model and the data of benchmarks/mnist_curves.py: LeNet-5 10-20-100-25
trained 4 epochs on 8,000 MNIST t10k images; rankings on 1,000 of the other 2,000 ("rank" half), curves and
the reference on the last 1,000 ("curve" half).

``--dataset fashionmnist``: the shipped ``assets/lenet5_fashionmnist.pt`` (trained on the full 55,000
Fashion-MNIST training images); rankings on the seeded 250 validation images of benchmarks/fashion_paper_a.py's
Table 1 (so its exact Shapley tables and switches are read back from the disk cache), switches trained on the
55,000 training images for 5 epochs as there; curves and the reference on a seeded 1,000 of the 10,000 test
images. Rankings: exact Shapley (N <= 20), sampled Shapley, Banzhaf (exact for
N <= 20, else MSR), Beta-Shapley(1, 16) (exact / sampled), leave-one-out, importance switches, L1, Taylor;
random as the band (5 seeds). Sampled rankings are recomputed with ``--stability-seeds`` more seeds.

    .venv/bin/python benchmarks/mnist_report_card.py [--layers conv1,conv2,fc1,fc2] [--stability-seeds 3]
    .venv/bin/python benchmarks/mnist_report_card.py --dataset fashionmnist
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
from benchmarks.mnist_curves import SHAPLEY, halves, switch_options  # noqa: E402
from benchmarks.mnist_table import mnist_splits  # noqa: E402
from core.pruning.train import fit  # noqa: E402
from core.rankings.game import EXACT_LIMIT  # noqa: E402

MSR_SAMPLES = 4000
BETA_DRAWS = {"fc1": 60, "fc2": 200}


def methods(layer: str, units: int) -> list[tuple[str, dict]]:
    small = units <= EXACT_LIMIT
    out = [("shapley", {"estimator": "exact"})] if small else []
    out += [("shapley", {"samples": SHAPLEY[layer]}),
            ("banzhaf", {"estimator": "exact"} if small else {"samples": MSR_SAMPLES}),
            ("beta_shapley", {"estimator": "exact"} if small else {"samples": BETA_DRAWS[layer]}),
            ("loo", {}), ("switches", {}), ("l1", {}), ("taylor", {})]
    return out


def mnist_setup(args) -> tuple:
    """(model, rank split, curve split, (switch split, switch options)) of the MNIST t10k run (benchmarks/mnist_curves.py)."""
    train, val = mnist_splits()
    rank_half, curve_half = halves(val)
    torch.manual_seed(0)
    model = core.lenet5(mean=(0.1307,), std=(0.3081,))
    fit(model, train, val, epochs=args.epochs, lr=0.05, batch_size=128, seed=0, patience=args.epochs)
    return model, rank_half, curve_half, (rank_half, switch_options(train, args.switch_epochs)), "MNIST t10k"


def fashion_setup(args) -> tuple:
    """(model, rank split, curve split, (switch split, switch options)) of the full Fashion-MNIST run: the shipped model,
    fashion_paper_a.py's Shapley images and switch recipe, 1,000 test images for the curves."""
    model = core.load_model(str(ROOT / "assets" / "lenet5_fashionmnist.pt"), device="cpu")
    train = core.load_dataset("fashionmnist", "train")
    val, test = core.load_dataset("fashionmnist", "val"), core.load_dataset("fashionmnist", "test")
    switches = (val, {"epochs": args.switch_epochs, "train": core.Engine(model, train)})  # as fashion_paper_a.py
    return model, val.subset(250), test.subset(1000), switches, "full Fashion-MNIST"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashionmnist"])
    parser.add_argument("--layers", default="conv1,conv2,fc1,fc2")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--switch-epochs", type=int, default=None, help="default: 10 (MNIST), 5 (Fashion-MNIST)")
    parser.add_argument("--stability-seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    fashion = args.dataset == "fashionmnist"
    if args.switch_epochs is None:
        args.switch_epochs = 5 if fashion else 10
    model, rank_half, curve_half, (switch_split, switch_params), name = (fashion_setup if fashion else mnist_setup)(args)
    rank_engine, curve_engine = core.Engine(model, rank_half), core.Engine(model, curve_half)
    switch_engine = rank_engine if switch_split is rank_half else core.Engine(model, switch_split)
    print(f"LeNet-5 10-20-100-25 on {name}: rankings on {len(rank_half):,} images, curves on {len(curve_half):,}; "
          f"full model {curve_engine.evaluate().accuracy:.2%} on the curve split; torch threads 1", flush=True)
    for layer in args.layers.split(","):
        units = rank_engine.units(layer)
        start = time.perf_counter()
        rankings = []
        for method, params in methods(layer, units):
            if method == "switches":
                rankings.append(core.rank(model, switch_split, layer, method, engine=switch_engine, seed=0,
                                          **switch_params))
            elif method in ("shapley", "banzhaf", "beta_shapley") and params.get("estimator") != "exact":
                rankings.append(core.rank(model, rank_half, layer, method, engine=rank_engine, seed=0, **params))
            else:
                rankings.append(core.rank(model, rank_half, layer, method, engine=rank_engine, **params))
            print(f"  {layer}: {rankings[-1].label} ({rankings[-1].seconds:.0f} s)", flush=True)
        curves = core.curve_set(curve_engine, layer, rankings, seeds=5, reference="auto")
        card = core.report_card(curves, rankings, stability_seeds=args.stability_seeds, rank_engine=rank_engine)
        table = card.table.set_index("ranking")
        shapley = next((r.label for r in rankings if r.params.get("estimator") == "exact" and r.method == "shapley"),
                       next(r.label for r in rankings if r.method == "shapley"))
        l1 = table.loc["L1 norm", "mean gap (pts)"]
        verdict = "beats" if table.loc[shapley, "mean gap (pts)"] < l1 else "does not beat"
        closest = card.winner
        print(f"\n#### {layer} ({units} units), reference: {card.reference} ({time.perf_counter() - start:.0f} s)\n")
        print(card.markdown())
        print(f"\n**{layer}**: {shapley} {verdict} L1 (mean gap {table.loc[shapley, 'mean gap (pts)']:.2f} vs "
              f"{l1:.2f} points); closest to the reference: {closest}. Reading: {card.reading}.\n", flush=True)


if __name__ == "__main__":
    main()
