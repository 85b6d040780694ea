"""``rank``: rank the units of one layer."""
from __future__ import annotations

import argparse
import json

import numpy as np

from ..data import EMBEDDED, load_dataset
from ..network.device import device_label, model_device
from .common import (_check_precision, _common, _distributed, _precision_arg, _workers_args, command, load,
                     progress_bar)


def _rank_args(parser: argparse.ArgumentParser) -> None:
    from ..rankings import METHODS

    _common(parser, split="val")
    parser.add_argument("--layer", required=True, help="layer to rank, e.g. conv2 (see `info`)")
    parser.add_argument("--method", default="shapley", choices=list(METHODS))
    estimator = parser.add_mutually_exclusive_group()
    estimator.add_argument("--exact", action="store_true",
                           help="shapley, banzhaf, beta_shapley: all 2^N coalitions (shared on disk)")
    estimator.add_argument("--samples", type=int, help="shapley: N sampled permutations (default 100); banzhaf: "
                                                       "N MSR coalitions (2000); beta_shapley: N draws (100)")
    estimator.add_argument("--k", type=int, help="shapley: truncated to removal sets of size <= K")
    estimator.add_argument("--stratified", type=int, metavar="BUDGET",
                           help="shapley: our stratified regression estimator with BUDGET coalitions")
    estimator.add_argument("--svarm", type=int, metavar="BUDGET",
                           help="shapley: shapiq's SVARM with BUDGET coalitions (needs shapiq)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sampled shapley: stop early once the top K units are separated")
    parser.add_argument("--payoff", choices=("accuracy", "loss"), default=None,
                        help="shapley, banzhaf, beta_shapley, loo payoff")
    parser.add_argument("--alpha", type=float, default=None, help="beta_shapley: alpha (default 1)")
    parser.add_argument("--beta", type=float, default=None,
                        help="beta_shapley: beta (default 16; beta > alpha weights nearly-full coalitions)")
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


SEMIVALUES = ("banzhaf", "beta_shapley", "loo")


def _semivalue_params(args: argparse.Namespace) -> dict:
    """banzhaf / beta_shapley / loo: --exact, --samples, --payoff, --seed, --alpha, --beta."""
    shapley_only = {"--k": args.k, "--top-k": args.top_k, "--truncation": args.truncation,
                    "--no-antithetic": args.no_antithetic, "--subset": args.subset, "--alpha0": args.alpha0,
                    "--epochs": args.epochs, "--switch-split": args.switch_split}
    sampling = {"--exact": args.exact, "--samples": args.samples, "--seed": args.seed}
    beta_only = {"--alpha": args.alpha, "--beta": args.beta}
    for flags, allowed in ((shapley_only, ()), (sampling, ("banzhaf", "beta_shapley")), (beta_only, ("beta_shapley",))):
        given = [flag for flag, value in flags.items() if value not in (None, False)]
        if given and args.method not in allowed:
            raise ValueError(f"{given[0]} does not apply to --method {args.method}")
    if _distributed(args):
        raise ValueError("--workers and --ray-address run sampled shapley only; the other methods run here")
    params = {k: v for k, v in (("payoff", args.payoff), ("samples", args.samples), ("seed", args.seed),
                                ("alpha", args.alpha), ("beta", args.beta)) if v is not None}
    if args.method != "loo":
        params["estimator"] = "exact" if args.exact else "sampled"
    return params


def _rank_params(args: argparse.Namespace) -> dict:
    if args.method in SEMIVALUES:
        return _semivalue_params(args)
    if args.alpha is not None or args.beta is not None:
        raise ValueError(f"{'--alpha' if args.alpha is not None else '--beta'} applies to --method beta_shapley only")
    shapley_only = {"--exact": args.exact, "--samples": args.samples, "--k": args.k, "--top-k": args.top_k,
                    "--payoff": args.payoff, "--truncation": args.truncation, "--no-antithetic": args.no_antithetic,
                    "--subset": args.subset, "--svarm": args.svarm, "--stratified": args.stratified}
    switch_only = {"--alpha0": args.alpha0, "--epochs": args.epochs, "--switch-split": args.switch_split}
    for flags, method in ((shapley_only, "shapley"), (switch_only, "switches")):
        given = [flag for flag, value in flags.items() if value not in (None, False)]
        if given and args.method != method:
            raise ValueError(f"{given[0]} applies to --method {method} only")
    params: dict = {}
    if args.method == "shapley":
        params["estimator"] = "exact" if args.exact else "truncated" if args.k is not None else \
            "svarm" if args.svarm is not None else "stratified" if args.stratified is not None else "sampled"
        if args.svarm is not None or args.stratified is not None:
            params["samples"] = args.svarm if args.svarm is not None else args.stratified
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
    from ..rankings import rank

    params = _rank_params(args)
    _check_precision(args)
    model, data = load(args)
    train = None
    if args.method == "switches" and params.get("split", "train") == "train":  # paper A: the training split
        input_shape = model.meta.input_shape if data.name in ("imagefolder", *EMBEDDED) else None  # as ``load``
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
             else device_label(model_device(model)))
    print(f"{ranking.label} of {args.layer} on {len(data)} {data.name} {args.split} images "
          f"on {where} ({ranking.seconds:.2f} s{', cached' if ranking.cached else ''}):\n{rows}{more}"
          + _subset_lines(ranking, len(data)) + (f"\nwritten to {args.json}" if args.json else ""))
    return 0
