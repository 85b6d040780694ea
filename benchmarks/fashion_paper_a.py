"""Paper A on a full training set: LeNet-5 10-20-100-25 on the full Fashion-MNIST, against paper A.

Data: Fashion-MNIST's 60,000 training images, split by the project's seeded 1/12 hold-out into
55,000 train / 5,000 validation (``core.load_dataset("fashionmnist", "train" | "val")``), and the full
10,000 test images. Found wherever ``core.data.locate`` finds them (Debian's dataset-fashion-mnist in
/usr/share/datasets/fashion-mnist, ./data/FashionMNIST/raw, $NRE_DATA_ROOT, --data-root).

1. Base model: ``core.pruning.train.train_new`` — the function behind
   ``python -m core train --model lenet5 --dataset fashionmnist`` — for ``--epochs`` epochs (seed 0);
   or ``--checkpoint`` a model that command made (the shipped assets/lenet5_fashionmnist.pt).
2. Table 1: top-5 (fc1 top-10) units per layer, Shapley vs importance switches, with the overlap and
   its chance probability. Shapley's payoff is the accuracy on a seeded subset of ``--shapley-images``
   validation images: **exact** (all 2^N coalitions) for conv1 and conv2; fc2's 2^25 coalitions are
   too many here, so it is the best sampled estimator (antithetic permutations, ``--fc2-samples``), and
   the exact cost is extrapolated from the measured coalition rate; fc1 sampled (``--fc1-samples``).
   Switches learn on the 55,000 training images (``--switch-epochs``; paper A: 300).
3. Pruning curves of every layer on the full 10,000 test images: Shapley, switches, L1 and the random
   band (5 seeds, min-max), and a reference line: the exhaustive oracle on conv1, the greedy reference on
   the wider layers (conv2's oracle on 1,000 test images is in the report card,
   benchmarks/mnist_report_card.py --dataset fashionmnist); figure.
4. Compression: each plan (``--plans``) by each ranking (and random seeds), fine-tuned with paper A's
   recipe on the 55,000 training images (early stopping on the 5,000 validation images, at most
   ``--finetune-epochs``), test error on the full 10,000.

Prints Markdown tables for the README, with wall times; ``--json`` keeps everything.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fashion_paper_a.py --checkpoint assets/lenet5_fashionmnist.pt
    # on a busy machine, first fill the ranking cache side by side (one process each), then run the line above:
    .venv/bin/python benchmarks/fashion_paper_a.py --checkpoint ... --rank-only conv2:shapley &
    .venv/bin/python benchmarks/fashion_paper_a.py --checkpoint ... --rank-only conv1:switches conv2:switches &
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from benchmarks import mnist_curves  # noqa: E402
from benchmarks.mnist_curves import curve_table, figure, statement  # noqa: E402
from core.pruning.curve_sets import curve_set  # noqa: E402
from core.rankings.agreement import top_k_overlap  # noqa: E402

PAPER_TABLE1 = {  # paper A Table 1, FMNIST column (PAPER_RESULTS.md)
    "conv1": ([0, 7, 6, 5, 1], [0, 7, 5, 9, 6]), "conv2": ([5, 10, 0, 13, 9], [5, 8, 13, 14, 15]),
    "fc1": ([60, 13, 43, 88, 94, 20, 70, 44, 32, 64], [94, 7, 50, 92, 13, 25, 60, 40, 75, 45]),
    "fc2": ([5, 1, 8, 9, 7], [1, 7, 9, 5, 8])}
TOP = {"conv1": 5, "conv2": 5, "fc1": 10, "fc2": 5}
ORACLE_UNITS = 12  # the curves' oracle on the 10,000 test images up to 2^12 coalitions; wider layers: greedy


def base_model(args, train, val, test) -> tuple[torch.nn.Module, dict]:
    if args.checkpoint:
        model = core.load_model(args.checkpoint, device="cpu")
        return model, {"source": args.checkpoint, "train_seconds": None}
    from core.pruning.train import train_new

    start = time.perf_counter()
    model = train_new("lenet5", "fashionmnist", args.data_root, None, "cpu", epochs=args.epochs, seed=0)
    return model, {"source": f"train_new, {args.epochs} epochs", "train_seconds": time.perf_counter() - start}


def shapley_ranking(model, data, engine, layer: str, args) -> tuple[core.Ranking, dict]:
    """Exact for conv1 / conv2, sampled (antithetic) for fc1 and fc2, with fc2's exact cost extrapolated."""
    if layer in ("conv1", "conv2"):
        r = core.rank(model, data, layer, "shapley", engine=engine, estimator="exact")
        return r, {"estimator": f"exact (2^{engine.units(layer)} coalitions)", "seconds": r.seconds}
    samples = args.fc2_samples if layer == "fc2" else args.fc1_samples
    r = core.rank(model, data, layer, "shapley", engine=engine, samples=samples, seed=0)
    info = {"estimator": f"sampled, {samples} antithetic permutations", "seconds": r.seconds}
    evaluations = r.extra.get("evaluations") or samples * engine.units(layer)
    if layer == "fc2" and r.seconds:
        rate = evaluations / r.seconds
        info["exact_estimate_seconds"] = 2 ** engine.units(layer) / rate
        info["coalitions_per_second"] = rate
    return r, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a model made by `python -m core train` (skips training)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--epochs", type=int, default=30, help="base training epochs (when no --checkpoint)")
    parser.add_argument("--shapley-images", type=int, default=250, help="validation images of the Shapley payoff")
    parser.add_argument("--fc1-samples", type=int, default=1000)
    parser.add_argument("--fc2-samples", type=int, default=2000)
    parser.add_argument("--switch-epochs", type=int, default=5)
    parser.add_argument("--plans", default="5-7-45-20,3-5-20-10")
    parser.add_argument("--random-seeds", default="0", help="random rankings fine-tuned per plan")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--compress-methods", default=None,
                        help="only these rows, e.g. Shapley,L1 (names as printed; default: all)")
    parser.add_argument("--rank-only", nargs="*", default=None, metavar="LAYER:METHOD",
                        help="only compute these rankings into the disk cache (shapley / switches), then exit: "
                             "run several such processes side by side, then the whole script reads them back")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the README's numbers: 2)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["table", "curves", "compress"])
    parser.add_argument("--figure", default=str(ROOT / "docs" / "fashion_curves.png"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    train, val = core.load_dataset("fashionmnist", "train", args.data_root), core.load_dataset("fashionmnist", "val", args.data_root)
    test = core.load_dataset("fashionmnist", "test", args.data_root)
    model, info = base_model(args, train, val, test)
    test_engine = core.Engine(model, test)
    base = test_engine.evaluate().accuracy
    shapley_data = val.subset(args.shapley_images)
    shapley_engine, val_engine, train_engine = core.Engine(model, shapley_data), core.Engine(model, val), core.Engine(model, train)
    report = {"base": {"test_accuracy": base, "val_accuracy": val_engine.evaluate().accuracy, **info,
                       "train": len(train), "val": len(val), "test": len(test)}}
    print(f"LeNet-5 10-20-100-25 on Fashion-MNIST ({len(train):,} train / {len(val):,} val / {len(test):,} test): "
          f"test accuracy {base:.2%} (paper A: 90.04%); model: {info['source']}"
          + (f", trained in {info['train_seconds']:.0f} s" if info["train_seconds"] else ""), flush=True)

    if args.rank_only is not None:
        for spec in args.rank_only:
            layer, method = spec.split(":")
            if method == "shapley":
                r, sinfo = shapley_ranking(model, shapley_data, shapley_engine, layer, args)
            else:
                r = core.rank(model, val, layer, "switches", engine=val_engine, train=train_engine,
                              epochs=args.switch_epochs, seed=0)
            print(f"{layer} {method}: {r.label}, {r.seconds:.0f} s{' (cached)' if r.cached else ''}; top {r.top(TOP[layer])}",
                  flush=True)
        return
    rankings: dict[str, dict[str, core.Ranking]] = {}
    rows = []
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        shapley, sinfo = shapley_ranking(model, shapley_data, shapley_engine, layer, args)
        switches = core.rank(model, val, layer, "switches", engine=val_engine, train=train_engine,
                             epochs=args.switch_epochs, seed=0)
        l1 = core.rank(model, val, layer, "l1", engine=val_engine)
        rankings[layer] = {"shapley": shapley, "switches": switches, "l1": l1}
        k = TOP[layer]
        overlap = top_k_overlap(shapley, switches, k)
        paper_sh, paper_is = PAPER_TABLE1[layer]
        paper_overlap = len(set(paper_sh) & set(paper_is))
        rows.append({"layer": layer, "units": shapley_engine.units(layer), "k": k, "shapley_top": shapley.top(k),
                     "switches_top": switches.top(k), "overlap": len(overlap.common), "p_chance": overlap.p_chance,
                     "paper_overlap": paper_overlap, **sinfo, "switch_seconds": switches.seconds,
                     "shapley_stderr_max": float(shapley.stderr.max()) if shapley.stderr is not None else None})
        print(f"{layer}: Shapley {sinfo['estimator']} {sinfo['seconds']:.0f} s, switches {switches.seconds:.0f} s"
              + (" (read back from the disk cache: the seconds of the run that computed them)"
                 if shapley.cached or switches.cached else ""), flush=True)
    report["table1"] = rows
    print(f"\n### Table 1 (Shapley on {len(shapley_data):,} validation images; switches {args.switch_epochs} epochs on "
          f"{len(train):,} training images)\n")
    print("| layer | units | Shapley top-k (estimator, seconds) | switches top-k (seconds) | overlap | P(overlap >= this by chance) | paper A overlap (FMNIST) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['units']} | {r['shapley_top']} ({r['estimator']}, {r['seconds']:.0f} s) | "
              f"{r['switches_top']} ({r['switch_seconds']:.0f} s) | {r['overlap']}/{r['k']} ({r['overlap'] / r['k']:.0%}) | "
              f"{r['p_chance']:.3g} | {r['paper_overlap']}/{r['k']} |")
    fc2 = next(r for r in rows if r["layer"] == "fc2")
    if "exact_estimate_seconds" in fc2:
        print(f"\nfc2 exact would evaluate 2^25 = 33,554,432 coalitions: at the measured {fc2['coalitions_per_second']:,.0f} "
              f"coalitions/s that is about {fc2['exact_estimate_seconds'] / 3600:.1f} hours on one thread.")

    if "curves" not in args.skip:
        start = time.perf_counter()
        results = {}
        for layer, ranks in rankings.items():
            methods = [ranks["shapley"], ranks["switches"], ranks["l1"]]
            # the exhaustive oracle where it is cheap on 10,000 images; conv2's (2^20 x 10,000) is in the report card
            reference = "oracle" if test_engine.units(layer) <= ORACLE_UNITS else "greedy"
            results[layer] = curve_set(test_engine, layer, methods, seeds=5, rank_engine=val_engine, reference=reference)
        seconds = time.perf_counter() - start
        title = (f"LeNet-5 10-20-100-25 on Fashion-MNIST, trained on 55,000 images (test accuracy {base:.2%})\n"
                 f"rankings on validation images, curves on the 10,000 test images; no retraining\nblack dashed: "
                 f"the oracle (best of all removals) on conv1, the greedy reference on the wider layers")
        mnist_curves.NAMES["shapley"] = "Shapley (exact: conv1, conv2; sampled: fc1, fc2)"
        figure(results, Path(args.figure), title)
        print(f"\n### Pruning curves ({seconds:.0f} s; figure {args.figure})\n")
        report["curves"] = curve_table(results)
        print()
        for layer, result in results.items():
            print(statement(layer, result) + "\n")

    if "compress" not in args.skip:
        report["compress"] = []
        result_rows = []
        seeds = [int(s) for s in args.random_seeds.split(",") if s.strip()]
        for plan_text in args.plans.split(","):
            methods = {name: {layer: ranks[key] for layer, ranks in rankings.items()}
                       for name, key in (("Shapley", "shapley"), ("switches", "switches"), ("L1", "l1"))}
            for seed in seeds:
                methods[f"random seed {seed}"] = {layer: core.rank(model, val, layer, "random", engine=val_engine, seed=seed)
                                                  for layer in rankings}
            for name, ranks in methods.items():
                if args.compress_methods and name not in args.compress_methods.split(","):
                    continue
                plan = core.plan_from_widths(model, plan_text, ranks)
                result = core.compress_model(model, train, val, plan, "paper-a", test=test,
                                             epochs=args.finetune_epochs, eval_every=10**9, label=f"{name}, {plan_text}")
                result_rows.append(result.row)
                r = result.row
                print(f"{plan_text} {name}: pruned {r.accuracy_pruned:.4f} -> fine-tuned {r.accuracy_finetuned:.4f} "
                      f"({r.seconds_finetune:.0f} s)", flush=True)
        report["compress"] = core.pruning.report.report_rows(result_rows)
        print(f"\n### Compression (paper-a recipe, at most {args.finetune_epochs} epochs on {len(train):,} images, "
              f"early stopping on {len(val):,}; accuracy on the {len(test):,} test images)\n")
        print(core.report_markdown(result_rows))
    report["wall_seconds"] = time.perf_counter() - wall
    print(f"\ntotal wall time {report['wall_seconds']:.0f} s ({args.threads} torch thread(s))")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
