"""Paper A Fig. 2 on real MNIST: pruning curves of every LeNet-5 layer for Shapley, switches, L1 and random.

LeNet-5 10-20-100-25 is trained on 8,000 images of the MNIST test set (t10k) as in
benchmarks/mnist_table.py. The other 2,000 images are split in two halves of 1,000: Shapley values
are computed on the first ("rank" half), the curves are measured on the second ("curve" half), so a
ranking is never scored on the images it was fitted to. Importance switches learn on the 8,000
training images (paper A). Random: 5 seeds, band = min-max. No retraining.

Writes docs/mnist_curves.png (matplotlib) and prints a Markdown table and one plain statement
per layer for the README.

    .venv/bin/python benchmarks/mnist_curves.py [--epochs 4] [--budget 1.0] [--switch-epochs 10]
"""
from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from benchmarks.mnist_table import mnist_splits  # noqa: E402
from core.pruning.curve_sets import CurveSet, curve_set  # noqa: E402
from core.data import DataSplit  # noqa: E402
from core.rankings import switches as switches_module  # noqa: E402
from core.pruning.train import fit  # noqa: E402

SHAPLEY = {"conv1": 40, "conv2": 50, "fc1": 40, "fc2": 50}  # sampled (antithetic) permutations per layer
SEEDS = 5
COLORS = {"shapley": "#1f77b4", "switches": "#d62728", "l1": "#2ca02c"}
NAMES = {"shapley": "Shapley (sampled)", "switches": "importance switches", "l1": "L1 norm"}


def halves(val: DataSplit) -> tuple[DataSplit, DataSplit]:
    """The validation split in two seeded halves: rankings on the first, curves on the second."""
    order = torch.randperm(len(val), generator=torch.Generator().manual_seed(1))
    a, b = order[: len(val) // 2].sort().values, order[len(val) // 2:].sort().values
    return (DataSplit(val.name, f"{val.split}-rank", val.images[a], val.labels[a], val.class_names),
            DataSplit(val.name, f"{val.split}-curve", val.images[b], val.labels[b], val.class_names))


def switch_options(train: DataSplit, epochs: int) -> dict:
    """Switch training options for the rankings API of this checkout (epochs on the training split, or steps)."""
    if "epochs" in switches_module.DEFAULTS and "train" in inspect.signature(core.rank).parameters:
        return {"epochs": epochs, "train": train}
    return {"steps": 300}


def mnist_curves(epochs: int = 4, budget: float = 1.0, switch_epochs: int = 10, seed: int = 0,
                 layers: tuple[str, ...] = tuple(SHAPLEY)) -> tuple[dict[str, CurveSet], dict]:
    train, val = mnist_splits()
    rank_half, curve_half = halves(val)
    torch.manual_seed(seed)
    model = core.lenet5(mean=(0.1307,), std=(0.3081,))
    start = time.perf_counter()
    fit(model, train, val, epochs=epochs, lr=0.05, batch_size=128, seed=seed, patience=epochs)
    info = {"train_seconds": time.perf_counter() - start}
    rank_engine, curve_engine = core.Engine(model, rank_half), core.Engine(model, curve_half)
    info["accuracy"] = curve_engine.evaluate().accuracy
    switch_params = switch_options(train, switch_epochs)
    results = {}
    start = time.perf_counter()
    for layer in layers:
        shapley = core.rank(model, rank_half, layer, "shapley", engine=rank_engine, seed=seed,
                            samples=max(10, int(SHAPLEY[layer] * budget)))
        switches = core.rank(model, rank_half, layer, "switches", engine=rank_engine, seed=seed, **switch_params)
        l1 = core.rank(model, rank_half, layer, "l1", engine=rank_engine)
        results[layer] = curve_set(curve_engine, layer, [shapley, switches, l1], seeds=SEEDS)
        print(f"{layer}: {shapley.label}, {switches.label} done ({time.perf_counter() - start:.0f} s)", flush=True)
    info["rank_seconds"] = time.perf_counter() - start
    info["switches"] = {k: v for k, v in switch_params.items() if k != "train"}
    return results, info


def figure(results: dict[str, CurveSet], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    columns = 2 if len(results) > 1 else 1
    rows = (len(results) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(5.6 * columns, 3.7 * rows + 0.9), dpi=110, squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(results):]:
        ax.axis("off")
    kinds = {r.reference.label.split(" (")[0] for r in results.values() if r.reference is not None}
    reference_label = kinds.pop() if len(kinds) == 1 else "reference line (per layer: see the title)"
    for ax, (layer, result) in zip(axes, results.items()):
        band = result.random
        ax.fill_between(band.counts, band.lo * 100, band.hi * 100, color="#999", alpha=0.35, linewidth=0,
                        label=f"random, min-max of {len(band.seeds)} seeds")
        ax.plot(band.counts, band.mean * 100, color="#555", linestyle="--", linewidth=1, label="random mean")
        for curve in result.curves:
            ax.plot(curve.counts, curve.accuracy * 100, color=COLORS.get(curve.method), linewidth=1.6,
                    marker="o", markersize=2.5, label=NAMES.get(curve.method, curve.label))
        if result.reference is not None:  # the oracle (an upper bound) or the greedy reference
            ax.plot(result.reference.counts, result.reference.accuracy * 100, color="black", linestyle=(0, (4, 2)),
                    linewidth=1.3, label=reference_label)
        ax.set_title(f"{layer} ({result.units} units)")
        ax.set_xlabel("units removed (least important first)")
        ax.set_ylim(0, 101)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel("accuracy, held-out images (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    legend_columns = len(labels) if len(labels) <= 5 else (len(labels) + 1) // 2  # two rows when one would not fit
    fig.legend(handles, labels, loc="lower center", ncol=legend_columns, frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05 if legend_columns == len(labels) else 0.08, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def comparison(result: CurveSet) -> dict[str, dict]:
    """Per informed method: interior points (0 < n < N) above / inside / below the random band, and vs L1."""
    band = result.random
    interior = (band.counts > 0) & (band.counts < result.units)
    l1 = next(c for c in result.curves if c.method == "l1")
    out = {}
    for curve in result.curves:
        acc = curve.accuracy[interior]
        above, below = acc > band.hi[interior] + 1e-12, acc < band.lo[interior] - 1e-12
        out[curve.method] = {"label": curve.label, "points": int(interior.sum()), "above": int(above.sum()),
                             "below": int(below.sum()), "inside": int((~above & ~below).sum()),
                             "over_l1": int((acc > l1.accuracy[interior] + 1e-12).sum()),
                             "under_l1": int((acc < l1.accuracy[interior] - 1e-12).sum())}
    return out


def curve_table(results: dict[str, CurveSet]) -> dict[str, dict]:
    """Print the README's curves table (markdown) and return, per layer, its summary records and comparison."""
    print("| layer | units | method | area (mean accuracy) | units removable within 1 pt | points above / inside / "
          "below the random band | points above / below L1 |")
    print("|---|---|---|---|---|---|---|")
    out = {}
    for layer, result in results.items():
        summary = result.summary().set_index("method")
        comp = comparison(result)
        out[layer] = {"summary": summary.reset_index().to_dict(orient="records"), "comparison": comp}
        for curve in result.curves:
            row = summary.loc[curve.label]
            m = comp[curve.method]
            vs = "—" if curve.method == "l1" else f"{m['over_l1']} / {m['under_l1']}"
            print(f"| {layer} | {result.units} | {curve.label} | {row['area']:.3f} | {int(row['units within 1 pt'])} | "
                  f"{m['above']} / {m['inside']} / {m['below']} (of {m['points']}) | {vs} |")
        for label in [result.random.label] + ([result.reference.label] if result.reference is not None else []):
            row = summary.loc[label]
            print(f"| {layer} | {result.units} | {label} | {row['area']:.3f} | {int(row['units within 1 pt'])} | — | — |")
    return out


def statement(layer: str, result: CurveSet) -> str:
    c = comparison(result)
    parts = []
    for method, name in (("shapley", "Shapley"), ("switches", "Switches")):
        m = c[method]
        band = ("stays above the random band" if m["above"] == m["points"] else
                f"is above the random band at {m['above']} of {m['points']} points"
                + (f", inside it at {m['inside']}" if m["inside"] else "")
                + (f", below it at {m['below']}" if m["below"] else ""))
        l1 = ("above L1 everywhere" if m["over_l1"] == m["points"] else
              f"above L1 at {m['over_l1']}, below at {m['under_l1']}, equal at "
              f"{m['points'] - m['over_l1'] - m['under_l1']}")
        parts.append(f"{name} {band}; {l1}")
    return f"**{layer}**: " + ". ".join(parts) + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--budget", type=float, default=1.0, help="scales the Shapley permutations")
    parser.add_argument("--switch-epochs", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "docs" / "mnist_curves.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results, info = mnist_curves(args.epochs, args.budget, args.switch_epochs)
    title = (f"LeNet-5 10-20-100-25, real MNIST: trained on 8,000 t10k images; rankings on 1,000 others, curves on "
             f"1,000 more (full model {info['accuracy']:.2%}); no retraining")
    figure(results, Path(args.out), title)
    print(f"\n{title}; training {info['train_seconds']:.0f} s, rankings + curves {info['rank_seconds']:.0f} s; "
          f"switches {info['switches']}\nfigure: {args.out}\n")
    curve_table(results)
    print()
    for layer, result in results.items():
        print(statement(layer, result) + "\n")


if __name__ == "__main__":
    main()
