"""Command line: ``python -m core <command>``. Errors are one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model, save_checkpoint
from .data import DATASETS, DataError, load_dataset
from .distributed import WorkerError
from .device import DEVICE_HELP, device_label, pick_device
from .engine import PRECISIONS, Engine, check_precision
from .models import model_totals, prunable_layers

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register a sub-command: ``arguments`` adds its options, the decorated function runs it."""
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (arguments, run)
        return run
    return register


def _common(parser: argparse.ArgumentParser, split: str = "test") -> None:
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                        help="checkpoint file or torchvision model name (default: the shipped LeNet-5 on digits)")
    parser.add_argument("--dataset", default=None, help=f"one of {', '.join(DATASETS)} (default: the checkpoint's)")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files")
    parser.add_argument("--download", action="store_true", help="download the dataset if missing (needs internet)")
    parser.add_argument("--split", default=split, choices=("train", "val", "test"))
    parser.add_argument("--limit", type=int, default=None, help="use a seeded subset of this many images")
    _device_arg(parser)


def _device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def _precision_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="float32",
                        help=f"masked evaluation precision: {', '.join(PRECISIONS)} (autocast; default float32)")


def _workers_args(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help=f"{what} on N Ray workers (a local Ray unless --ray-address or $RAY_ADDRESS); "
                             "same numbers as without")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="Ray cluster to run on, e.g. ray://host:10001 or auto (implies Ray workers)")


def _distributed(args: argparse.Namespace) -> bool:
    """Whether --workers / --ray-address ask for Ray; a bad --workers is one line before any work."""
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {args.workers})")
    return args.workers is not None or bool(args.ray_address)


class _Pools:
    """At most one Ray pool open at a time (each holds its CPUs), on the engine asked for; closes it."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.engine, self.pool = args, None, None

    def on(self, engine: Engine):
        if not _distributed(self.args):
            return None
        if self.engine is not engine:
            from .distributed import engine_pool

            self.close()
            self.pool, self.engine = engine_pool(engine, self.args.workers, self.args.ray_address), engine
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.engine = self.pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_precision(args: argparse.Namespace) -> None:
    """A bad --precision (or one the device cannot do) is one line before any work."""
    check_precision(args.precision, pick_device(args.device))


def load(args: argparse.Namespace):
    """The model and data split the common options name."""
    pick_device(args.device)  # a bad --device is one line before the (slow) checkpoint load
    model = load_model(args.checkpoint, device=args.device)
    name = args.dataset or model.meta.dataset or "digits"
    input_shape = model.meta.input_shape if name == "imagefolder" else None
    data = load_dataset(name, args.split, args.data_root, args.download, input_shape, args.limit)
    return model, data


def parse_off(specs: list[str]) -> dict[str, list[int]]:
    """``conv2:0,3,5`` (repeatable) -> {"conv2": [0, 3, 5]}."""
    off: dict[str, list[int]] = {}
    for spec in specs:
        layer, sep, units = spec.partition(":")
        if not sep or not units:
            raise ValueError(f"--off {spec!r}: expected LAYER:UNIT,UNIT,... e.g. conv2:0,3,5")
        try:
            off.setdefault(layer, []).extend(int(u) for u in units.split(",") if u.strip())
        except ValueError:
            raise ValueError(f"--off {spec!r}: units must be whole numbers") from None
    return off


@contextmanager
def progress_bar(desc: str, unit: str = "it") -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` progress callback drawing a tqdm bar; the bar appears on the first
    report, so an error raised before any work stays one line on stderr."""
    bars: list[tqdm] = []

    def report(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc=desc, unit=unit, leave=False))
        bars[0].total = total
        bars[0].update(done - bars[0].n)  # tqdm throttles redraws itself

    try:
        yield report
    finally:
        for bar in bars:
            bar.close()


def _print(payload: dict, as_json: bool, text: str) -> None:
    print(json.dumps(payload, indent=2) if as_json else text)


@command("info", lambda p: (_common(p), p.add_argument("--json", action="store_true")))
def info(args: argparse.Namespace) -> int:
    model, data = load(args)
    result = Engine(model, data).evaluate()
    layers = [vars(layer) for layer in prunable_layers(model)]
    device = next(model.parameters()).device
    payload = {"model": model.meta.arch, "arch_params": model.meta.arch_params, "checkpoint": model.meta.source,
               "device": str(device), "dataset": data.name, "split": args.split, "images": len(data), "accuracy": result.accuracy,
               **model_totals(model), "layers": layers}
    rows = "\n".join(f"  {l['name']:<10} {l['kind']:<5} {l['units']:>6} units {l['params']:>10,} params "
                     f"{l['flops']:>12,} FLOPs" for l in layers)
    _print(payload, args.json, f"{payload['model']} on {data.name} ({args.split}, {len(data)} images): "
                               f"accuracy {result.accuracy:.4f} (on {device_label(device)})\n{rows}\n  total {payload['params']:,} params, "
                               f"{payload['flops']:,} FLOPs (multiply-adds per image)")
    return 0


def _evaluate_args(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--off", action="append", default=[], metavar="LAYER:UNITS",
                        help="units to turn off, e.g. conv2:0,3,5 (repeatable)")
    parser.add_argument("--json", action="store_true")


@command("evaluate", _evaluate_args)
def evaluate(args: argparse.Namespace) -> int:
    model, data = load(args)
    off = parse_off(args.off)
    engine = Engine(model, data)
    full, masked = engine.evaluate(), engine.evaluate(off)
    payload = {"dataset": data.name, "split": args.split, "images": len(data), "off": off,
               "accuracy": masked.accuracy, "full_accuracy": full.accuracy,
               "delta": masked.accuracy - full.accuracy, "loss": masked.loss,
               "per_class": {c: (None if a != a else float(a)) for c, a in zip(data.class_names, masked.per_class)}}
    _print(payload, args.json, f"accuracy {masked.accuracy:.4f} (full model {full.accuracy:.4f}, "
                               f"delta {payload['delta']:+.4f}) on {len(data)} {data.name} {args.split} images")
    return 0


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lenet5", choices=("lenet5", "vgg16"))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--widths", default=None, help="lenet5 widths, e.g. 10,20,100,25")
    parser.add_argument("--width-mult", type=float, default=1.0, help="vgg16 width multiplier")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    _device_arg(parser)
    parser.add_argument("--out", default=None, help="checkpoint path (default: assets/<model>_<dataset>.pt)")


@command("train", _train_args)
def train(args: argparse.Namespace) -> int:
    from .train import train_new

    device = pick_device(args.device)  # a bad --device is one line before the progress bar

    params = {"width_mult": args.width_mult} if args.model == "vgg16" else {}
    if args.widths:
        try:
            params["widths"] = [int(w) for w in args.widths.split(",")]
        except ValueError:
            raise ValueError("--widths: whole numbers separated by commas, e.g. 10,20,100,25") from None
        if args.model == "lenet5" and len(params["widths"]) != 4:
            raise ValueError("--widths: lenet5 takes 4 widths (conv1, conv2, fc1, fc2)")
    bar = tqdm(total=args.epochs, desc="train", unit="epoch")

    def progress(epoch: int, epochs: int, stats: dict) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", val=f"{stats['val_accuracy']:.4f}")

    model = train_new(args.model, args.dataset, args.data_root, params or None, device,
                      progress, epochs=args.epochs, lr=args.lr, seed=args.seed)
    bar.close()
    out = args.out or DEFAULT_CHECKPOINT.parent / f"{args.model}_{args.dataset}.pt"
    save_checkpoint(model, out)
    print(json.dumps({"checkpoint": str(out), "accuracy": model.meta.accuracy}))
    return 0


def _am_args(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--layer", required=True, help="layer name, e.g. conv2 (see `python -m core info`)")
    parser.add_argument("--out", required=True, help="folder for unit_NNN.png files and contact_sheet.png")
    parser.add_argument("--steps", type=int, default=256, help="optimization steps (default 256)")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=None, help="nearest-neighbour upscale factor for the PNGs")


@command("am", _am_args)
def am(args: argparse.Namespace) -> int:
    """Activation-maximization image of every unit of a layer, as PNGs plus a contact sheet."""
    from .am import am_images, check_am_params

    pick_device(args.device)
    model = load_model(args.checkpoint, device=args.device)
    check_am_params(model, args.layer, args.steps, args.lr)  # before the progress bar: errors stay one line
    with progress_bar(f"AM {args.layer}", "step") as progress:
        result = am_images(model, args.layer, steps=args.steps, lr=args.lr, seed=args.seed, progress=progress)
    paths = result.save_pngs(args.out, scale=args.scale)
    print(json.dumps({"layer": args.layer, "units": result.units, "out": str(args.out), "files": len(paths),
                      "contact_sheet": str(paths[-1]), "selectivity": result.selectivity(), **result.params}))
    return 0


def _clusters_args(parser: argparse.ArgumentParser) -> None:
    _common(parser, split="val")
    parser.add_argument("--layer", required=True, help="layer name, e.g. conv2")
    parser.add_argument("--steps", type=int, default=256, help="AM optimization steps (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=None, help="also list the units this pruning rate (0-1) removes")
    parser.add_argument("--gamma", choices=("gate", "paper"), default="gate",
                        help="class contributions: d/d(gate on the whole activation) (default) or paper B's "
                             "literal mean dP/dA")
    parser.add_argument("--combine", choices=("sum", "product"), default="sum",
                        help="SD = AM distance + gamma distance (paper B's text, default) or their product "
                             "(its printed Eq. 3)")
    parser.add_argument("--json", action="store_true")


@command("clusters", _clusters_args)
def clusters(args: argparse.Namespace) -> int:
    """Similarity degree and k-means clusters of a layer's units (paper B), ranked by contribution index."""
    from .am import am_images, check_am_params
    from .similarity import cluster_filters, pruning_selection, similarity_matrix

    model, data = load(args)
    engine = Engine(model, data)
    check_am_params(model, args.layer, args.steps, 0.05)  # before the progress bars: errors stay one line
    if args.rate is not None and not 0 <= args.rate <= 1:
        raise ValueError(f"--rate must be between 0 and 1 (got {args.rate})")
    with progress_bar(f"AM {args.layer}", "step") as progress:
        am_images(model, args.layer, steps=args.steps, seed=args.seed, progress=progress)
    similarity = similarity_matrix(model, data, args.layer, args.steps, args.seed, engine=engine,
                                   gamma_definition=args.gamma, combine=args.combine)
    with progress_bar("k-means over k", "k") as progress:
        result = cluster_filters(model, data, args.layer, args.steps, args.seed, similarity=similarity,
                                 engine=engine, progress=progress)
    payload = {**result.to_dict(), "gamma_definition": similarity.gamma_definition, "combine": similarity.combine,
               "dead": [int(u) for u in (similarity.dead.nonzero()[0] if similarity.dead is not None else [])]}
    if args.rate is not None:
        payload["rate"], payload["pruned"] = args.rate, pruning_selection(result, args.rate)
    rows = "\n".join(f"  cluster {c}: {' '.join(map(str, m))}{'  (locked)' if len(m) == 1 else ''}"
                     for c, m in enumerate(result.members))
    extra = f"\n  rate {args.rate}: prune {payload['pruned']}" if args.rate is not None else ""
    _print(payload, args.json, f"{args.layer}: {result.k} clusters (units by contribution index, highest first)\n"
                               f"{rows}{extra}")
    return 0


def _rank_args(parser: argparse.ArgumentParser) -> None:
    from .rankings import METHODS

    _common(parser, split="val")
    parser.add_argument("--layer", required=True, help="layer to rank, e.g. conv2 (see `info`)")
    parser.add_argument("--method", default="shapley", choices=list(METHODS))
    estimator = parser.add_mutually_exclusive_group()
    estimator.add_argument("--exact", action="store_true", help="shapley: all 2^N coalitions")
    estimator.add_argument("--samples", type=int, help="shapley: N sampled permutations (default 100)")
    estimator.add_argument("--k", type=int, help="shapley: truncated to removal sets of size <= K")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sampled shapley: stop early once the top K units are separated")
    parser.add_argument("--payoff", choices=("accuracy", "loss"), default=None, help="shapley payoff")
    parser.add_argument("--truncation", type=float, default=None, metavar="TOL",
                        help="sampled shapley: stop a permutation once the coalition is within TOL of v(all) (TMC)")
    parser.add_argument("--no-antithetic", action="store_true",
                        help="sampled shapley: independent permutations instead of antithetic pairs")
    parser.add_argument("--subset", default=None, metavar="M|auto",
                        help="sampled shapley: evaluate each permutation on a random subset of M images "
                             "(auto: M from a pilot); prints the image and permutation errors")
    parser.add_argument("--alpha0", type=float, default=None, help="switches: Dirichlet prior (default: paper's)")
    parser.add_argument("--epochs", type=int, default=None, help="switches: passes over the training split (300)")
    parser.add_argument("--switch-split", choices=("train", "val"), default=None,
                        help="switches: split they learn on (default train, as paper A; accuracy is on --split)")
    parser.add_argument("--seed", type=int, default=None, help="seed (sampled shapley, switches, random)")
    parser.add_argument("--no-cache", action="store_true", help="recompute even if a cached ranking exists")
    _precision_arg(parser)
    _workers_args(parser, "sampled shapley")
    parser.add_argument("--json", metavar="OUT.json", default=None, help="write the ranking as JSON here")


def _rank_params(args: argparse.Namespace) -> dict:
    shapley_only = {"--exact": args.exact, "--samples": args.samples, "--k": args.k, "--top-k": args.top_k,
                    "--payoff": args.payoff, "--truncation": args.truncation, "--no-antithetic": args.no_antithetic,
                    "--subset": args.subset}
    switch_only = {"--alpha0": args.alpha0, "--epochs": args.epochs, "--switch-split": args.switch_split}
    for flags, method in ((shapley_only, "shapley"), (switch_only, "switches")):
        given = [flag for flag, value in flags.items() if value not in (None, False)]
        if given and args.method != method:
            raise ValueError(f"{given[0]} applies to --method {method} only")
    params: dict = {}
    if args.method == "shapley":
        params["estimator"] = "exact" if args.exact else "truncated" if args.k is not None else "sampled"
        params.update({k: v for k, v in (("samples", args.samples), ("k", args.k), ("top_k", args.top_k),
                                         ("payoff", args.payoff), ("truncation", args.truncation)) if v is not None})
        if args.no_antithetic:
            params["antithetic"] = False
        if params["estimator"] != "sampled" and (args.truncation is not None or args.no_antithetic
                                                 or args.subset is not None):
            raise ValueError("--truncation, --no-antithetic and --subset apply to sampled shapley only")
        if args.subset is not None:
            params["subset"] = _parse_subset(args.subset)
    if _distributed(args) and not (args.method == "shapley" and params["estimator"] == "sampled"):
        raise ValueError("--workers and --ray-address run sampled shapley only (--method shapley without "
                         "--exact or --k); the other methods run here")
    params.update({k: v for k, v in (("alpha0", args.alpha0), ("epochs", args.epochs),
                                     ("split", args.switch_split)) if v is not None})
    if args.seed is not None:
        if args.method not in ("shapley", "switches", "random"):
            raise ValueError(f"--seed applies to shapley, switches and random, not {args.method}")
        params["seed"] = args.seed
    return params


def _parse_subset(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--subset {text!r}: a number of images (at least 2) or auto") from None
    if value < 2:
        raise ValueError(f"--subset must be at least 2 images (for its error), got {value}")
    return value


def _subset_lines(ranking, images: int) -> str:
    """With an image subset: its size, the work saved, and the image vs permutation standard errors."""
    extra = ranking.extra
    if "subset" not in extra or "image_stderr" not in extra:
        return ""
    image, perm = np.asarray(extra["image_stderr"]), np.asarray(extra["permutation_stderr"])
    used, full = int(extra.get("image_evaluations", 0)), int(extra.get("full_image_evaluations", 0))
    top = ranking.order()[:5]
    units = ", ".join(f"unit {i} {image[i]:.4f} / {perm[i]:.4f}" for i in top)
    return (f"\n  image subset: {int(extra['subset'])} of {images} images per permutation draw; "
            f"{used:,} image evaluations of {full:,} on all images ({used / max(1, full):.0%})"
            f"\n  standard error, mean over units: image {image.mean():.4f}, permutation {perm.mean():.4f}"
            f"\n  standard error (image / permutation) of the top units: {units}")


@command("rank", _rank_args)
def rank_units(args: argparse.Namespace) -> int:
    """Rank the units of one layer (Shapley, switches, L1, L2, Taylor, activation, random)."""
    from .rankings import rank

    params = _rank_params(args)
    _check_precision(args)
    model, data = load(args)
    train = None
    if args.method == "switches" and params.get("split", "train") == "train":  # paper A: the training split
        input_shape = model.meta.input_shape if data.name == "imagefolder" else None
        train = load_dataset(data.name, "train", args.data_root, args.download, input_shape)
    with progress_bar(f"{args.method} {args.layer}") as progress:
        ranking = rank(model, data, args.layer, args.method, progress=progress, cache=not args.no_cache,
                       train=train, precision=args.precision, workers=args.workers,
                       ray_address=args.ray_address, **params)
    payload = {"dataset": data.name, "split": args.split, "images": len(data), **ranking.to_dict()}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
    order = ranking.order()
    error = (lambda i: f" +- {ranking.stderr[i]:.4f}") if ranking.stderr is not None else (lambda i: "")
    rows = "\n".join(f"  {rank_:>3}. unit {i:<4} {ranking.scores[i]:.6g}{error(i)}"
                     for rank_, i in enumerate(order[:20], 1))
    more = f"\n  ... {len(order) - 20} more" if len(order) > 20 else ""
    where = (f"{ranking.extra['workers']} Ray workers" if _distributed(args) and "workers" in ranking.extra
             else device_label(next(model.parameters()).device))
    print(f"{ranking.label} of {args.layer} on {len(data)} {data.name} {args.split} images "
          f"on {where} ({ranking.seconds:.2f} s{', cached' if ranking.cached else ''}):\n{rows}{more}"
          + _subset_lines(ranking, len(data)) + (f"\nwritten to {args.json}" if args.json else ""))
    return 0


def _curve_args(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--layer", help="the layer to prune, e.g. conv2 (see `info`)")
    where.add_argument("--all-layers", action="store_true",
                       help="whole-network curve: every prunable layer pruned at the same rate")
    parser.add_argument("--methods", default="shapley,switches,l1",
                        help="comma-separated ranking methods (default shapley,switches,l1); random is always drawn")
    parser.add_argument("--random-seeds", type=int, default=5, help="random orders in the band (5-100, default 5)")
    parser.add_argument("--rates", default=None,
                        help="pruning rates, e.g. 0,0.1,0.5 (default: every count 0..N for a layer, "
                             "0,0.1,...,0.9 for --all-layers)")
    parser.add_argument("--direction", choices=("least", "most"), default="least",
                        help="remove the least important units first (default) or the most important (mirror)")
    parser.add_argument("--samples", type=int, default=None, help="shapley: sampled permutations (default 100)")
    parser.add_argument("--rank-split", default="val", choices=("train", "val", "test"),
                        help="split the rankings are computed on (default val; the curve uses --split)")
    parser.add_argument("--sensitivity", action="store_true",
                        help="with --all-layers: also the layers x rates sensitivity grid (paper B Fig. 4)")
    parser.add_argument("--json", metavar="OUT.json", default=None, help="write curves and summary as JSON here")
    parser.add_argument("--csv", metavar="OUT.csv", default=None, help="write every point as a CSV row here")
    _precision_arg(parser)
    _workers_args(parser, "the curves (and sampled shapley rankings)")


def _curve_options(args: argparse.Namespace) -> tuple[list[str], dict, list[float] | None]:
    from .curves import check_rates, check_seeds
    from .rankings import METHODS

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ValueError("--methods: give at least one method, e.g. shapley,switches,l1")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if not [m for m in methods if m != "random"]:
        raise ValueError("--methods: name at least one method besides random (the random band is always drawn)")
    check_seeds(args.random_seeds)
    rates = None
    if args.rates is not None:
        try:
            rates = [float(r) for r in args.rates.split(",") if r.strip()]
        except ValueError:
            raise ValueError(f"--rates {args.rates!r}: numbers separated by commas, e.g. 0,0.1,0.5") from None
        check_rates(rates, allow_one=False)
    if args.sensitivity and not args.all_layers:
        raise ValueError("--sensitivity goes with --all-layers")
    if args.samples is not None and "shapley" not in methods:
        raise ValueError("--samples applies to the shapley method only")
    if args.samples is not None and args.samples < 1:
        raise ValueError(f"--samples must be at least 1 (got {args.samples})")
    params = {"shapley": {"samples": args.samples}} if args.samples is not None else {}
    return methods, params, rates


@command("curve", _curve_args)
def curve(args: argparse.Namespace) -> int:
    """Pruning curves: accuracy after removing the least important units by each method, vs random."""
    from .curves import (NETWORK_RATES, counts_for_rates, curve_set, layer_rankings, network_curves,
                         resolve_methods, sensitivity_grid)

    methods, params, rates = _curve_options(args)
    distributed = _distributed(args)
    _check_precision(args)
    model, data = load(args)
    engine = Engine(model, data, precision=args.precision)
    rank_data = data if args.rank_split == args.split else load_dataset(
        args.dataset or model.meta.dataset or "digits", args.rank_split, args.data_root, args.download,
        model.meta.input_shape if (args.dataset or model.meta.dataset) == "imagefolder" else None, args.limit)
    rank_engine = engine if rank_data is data else Engine(model, rank_data, precision=args.precision)
    if not args.all_layers:
        engine.units(args.layer)  # an unknown layer is one line before any progress bar
    with _Pools(args) as pools:
        if distributed:  # rank first (sampled shapley on workers of the rank split), then the curves' workers
            rank_params = {**params, "shapley": {**params.get("shapley", {}), "pool": pools.on(rank_engine)}} \
                if "shapley" in methods else params
            with progress_bar("rank") as progress:
                if args.all_layers:
                    methods = layer_rankings(engine, methods, None, rank_params, rank_engine, progress)
                else:
                    methods = resolve_methods(engine, args.layer, methods, rank_params, rank_engine, progress)
            params = {}
        pool = pools.on(engine)
        with progress_bar("curves" if args.all_layers else f"curves {args.layer}") as progress:
            if args.all_layers:
                result = network_curves(engine, methods, rates if rates is not None else NETWORK_RATES,
                                        args.random_seeds, args.direction, params=params, rank_engine=rank_engine,
                                        progress=progress, pool=pool)
            else:
                counts = None if rates is None else counts_for_rates(engine.units(args.layer), rates)
                result = curve_set(engine, args.layer, methods, args.random_seeds, counts, args.direction, params,
                                   rank_engine, progress, pool=pool)
        payload = {"dataset": data.name, "split": args.split, "rank_split": args.rank_split, "images": len(data),
                   "precision": args.precision, **result.to_dict()}
        if pool is not None:
            payload["workers"] = pool.workers
        if args.sensitivity:
            with progress_bar("sensitivity") as progress:
                grid = sensitivity_grid(engine, methods, seeds=args.random_seeds, direction=args.direction,
                                        params=params, rank_engine=rank_engine, progress=progress, pool=pool)
            payload["sensitivity"] = grid.to_dict()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
    if args.csv:
        result.to_frame().to_csv(args.csv, index=False)
    table = result.summary().to_string(index=False, float_format=lambda v: f"{v:.4f}")
    where = "all layers at once" if args.all_layers else f"{args.layer} ({result.units} units)"
    lines = [f"Pruning curves of {where}, {'least' if args.direction == 'least' else 'most'} important first, "
             f"on {len(data)} {data.name} {args.split} images (full model {result.full_accuracy:.4f}); "
             f"random band: min-max of {args.random_seeds} seeds"
             + (f"; on {payload['workers']} Ray workers" if "workers" in payload else ""), table]
    if args.sensitivity:
        lines.append("sensitivity (accuracy with one layer pruned; rows: layers, columns: rates):")
        for label in grid.labels:
            rows = "\n".join(f"    {layer:<8} " + " ".join(f"{a:.3f}" for a in grid.grid(label)[j])
                             for j, layer in enumerate(grid.layers))
            lines.append(f"  {label}  (rates {' '.join(f'{r:g}' for r in grid.rates)})\n{rows}")
    lines += [f"written to {path}" for path in (args.json, args.csv) if path]
    print("\n".join(lines))
    return 0


# --- compress (plan, prune, fine-tune, export) ----------------------------------------------------

def _compress_args(parser: argparse.ArgumentParser) -> None:
    from .rankings import METHODS
    from .train import RECIPES

    _common(parser, split="test")
    rule = parser.add_mutually_exclusive_group(required=True)
    rule.add_argument("--plan", metavar="WIDTHS", help="kept units per layer, e.g. 5-7-45-20 (LeNet-5)")
    rule.add_argument("--pr", type=float, help="paper B: tolerated accuracy drop per layer, in points (e.g. 0.5)")
    rule.add_argument("--flops", type=float, help="keep this share of the FLOPs (0-1), least important units first")
    rule.add_argument("--params", type=float, help="keep this share of the parameters (0-1)")
    parser.add_argument("--method", default="l1", choices=list(METHODS), help="ranking that picks the units")
    parser.add_argument("--samples", type=int, default=None, help="shapley: sampled permutations per layer")
    parser.add_argument("--seed", type=int, default=None, help="seed of random / shapley / switches")
    parser.add_argument("--cluster-aware", action="store_true",
                        help="paper B: units go by cluster share and contribution index, locked units stay "
                             "(the --method ranking is then not used)")
    parser.add_argument("--empty-clusters", action="store_true", help="cluster-aware: allow emptying whole clusters")
    parser.add_argument("--am-steps", type=int, default=256, help="cluster-aware: AM steps for the similarity")
    parser.add_argument("--recipe", default="paper-a", choices=list(RECIPES) + ["none"],
                        help="fine-tuning preset (none: prune only)")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the recipe's)")
    parser.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the compressed model as a checkpoint here")
    parser.add_argument("--onnx", default=None, help="also export ONNX here (checked with onnxruntime)")
    parser.add_argument("--json", metavar="REPORT.json", default=None, help="write the plan and report here")
    _workers_args(parser, "the --pr search (and --method shapley's rankings)")


@command("compress", _compress_args)
def compress(args: argparse.Namespace) -> int:
    """Plan, prune, fine-tune and export a smaller model (paper A Table 2, paper B hierarchical pruning)."""
    from . import compress as plans
    from .export import atomic_write, export_checkpoint, export_onnx
    from .report import compress_model, report_markdown
    from .train import make_recipe

    if args.pr is not None and args.pr < 0:
        raise ValueError(f"--pr is a tolerated accuracy drop in points and cannot be negative (got {args.pr})")
    share = args.flops if args.flops is not None else args.params
    if share is not None and not 0 < share <= 1:
        raise ValueError(f"--{'flops' if args.flops is not None else 'params'} must be in (0, 1] (got {share})")
    if args.samples is not None and args.method != "shapley":
        raise ValueError("--samples applies to --method shapley only")
    if _distributed(args) and args.pr is None and (args.method != "shapley" or args.cluster_aware):
        raise ValueError("--workers and --ray-address apply to --pr plans and to --method shapley's rankings")
    recipe = None if args.recipe == "none" else make_recipe(args.recipe, epochs=args.epochs, lr=args.lr,
                                                            batch_size=args.batch_size)
    model = load_model(args.checkpoint, device=args.device)
    if args.plan is not None:
        plans.parse_widths(model, args.plan)  # a bad plan is one line before any work
    name = args.dataset or model.meta.dataset or "digits"
    shape = model.meta.input_shape if name == "imagefolder" else None
    split = {s: load_dataset(name, s, args.data_root, args.download, shape, args.limit) for s in ("train", "val", "test")}
    val = split["val"]
    engine = Engine(model, val)
    params = {k: v for k, v in (("samples", args.samples), ("seed", args.seed)) if v is not None}
    if args.method in ("l1", "l2", "taylor", "activation"):
        params.pop("seed", None)
    clusters = None
    with _Pools(args) as pools:  # one pool on the validation engine serves the rankings and the Pr search
        if args.method == "shapley" and not args.cluster_aware and pools.on(engine) is not None:
            params["pool"] = pools.on(engine)
        with progress_bar(f"rank {args.method}", "layer") as progress:
            rankings = plans.layer_rankings(model, val, args.method, engine=engine, progress=progress, **params)
        if args.cluster_aware:
            with progress_bar("clusters", "layer") as progress:
                clusters = plans.layer_clusters(model, val, engine=engine, steps=args.am_steps, progress=progress)
        if args.plan is not None:
            plan = plans.plan_from_widths(model, args.plan, rankings, clusters, args.empty_clusters)
        elif args.pr is not None:
            plan = plans.plan_from_pr(engine, rankings, args.pr, clusters, args.empty_clusters, pool=pools.on(engine))
        else:
            plan = plans.plan_from_budget(model, rankings, share, "flops" if args.flops is not None else "params",
                                          clusters, args.empty_clusters)
    with progress_bar("fine-tune", "it") as progress:
        result = compress_model(model, split["train"], val, plan, recipe, test=split["test"],
                                progress=lambda i, total, stats: progress(i, total))
    payload = {"plan": plan.to_dict(), "report": vars(result.row),
               "recipe": result.finetune.recipe.to_dict() if result.finetune else None,
               "history": result.finetune.history if result.finetune else []}
    if args.out:
        payload["checkpoint"] = str(export_checkpoint(result.model, args.out))
    if args.onnx:
        path, diff = export_onnx(result.model, args.onnx, split["test"].images[:16])
        payload["onnx"], payload["onnx_max_logit_diff"] = str(path), diff
    if args.json:
        text = json.dumps(payload, indent=2)
        atomic_write(args.json, lambda tmp: tmp.write_text(text))
    notes = "".join(f"\n  note: {n}" for n in plan.notes)
    print(f"plan {plan.widths_string()} ({plan.rule}, {plan.method}){notes}\n{report_markdown([result.row])}"
          + (f"\nwritten {args.out}" if args.out else "") + (f"\nwritten {args.onnx}" if args.onnx else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description="Neuron Ranking Explorer command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (arguments, run) in COMMANDS.items():
        arguments(sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except (CheckpointError, DataError, ValueError, OSError, KeyError, WorkerError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
