"""``curve``: pruning curves of one layer or of the whole network."""
from __future__ import annotations

import argparse
import json

from ..data import load_dataset
from ..engine import Engine
from .common import (_check_precision, _common, _distributed, _Pools, _precision_arg, _workers_args, command, load,
                     progress_bar)


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
    parser.add_argument("--reference", choices=("oracle", "greedy", "auto"), default=None,
                        help="with --layer: add the oracle (best of all removals, exhaustive up to 20 units) or the "
                             "greedy reference line; auto: the oracle where it fits (default with --report)")
    parser.add_argument("--report", action="store_true",
                        help="with --layer: the report card (each ranking's gap to the reference, units within "
                             "1 point, Spearman vs exact Shapley, cost, stability over seeds)")
    parser.add_argument("--exact", action="store_true",
                        help="shapley, banzhaf, beta_shapley: the exact estimator (all 2^N coalitions)")
    parser.add_argument("--stability-seeds", type=int, default=0, metavar="K",
                        help="with --report: recompute each sampled ranking with K more seeds (default 0)")
    parser.add_argument("--json", metavar="OUT.json", default=None, help="write curves and summary as JSON here")
    parser.add_argument("--csv", metavar="OUT.csv", default=None, help="write every point as a CSV row here")
    _precision_arg(parser)
    _workers_args(parser, "the curves (and sampled shapley rankings)")


def _curve_options(args: argparse.Namespace) -> tuple[list[str], dict, list[float] | None]:
    from ..pruning.curves import check_rates, check_seeds
    from ..rankings import METHODS

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
    if args.all_layers and (args.reference or args.report):
        raise ValueError("--reference and --report go with --layer (a reference is the best removal in one layer)")
    if args.report and args.direction != "least":
        raise ValueError("--report compares removals of the least important units first: drop --direction most")
    if args.stability_seeds and not args.report or not 0 <= args.stability_seeds <= 20:
        raise ValueError("--stability-seeds goes with --report and is between 0 and 20")
    if args.exact:
        exact = [m for m in methods if m in ("shapley", "banzhaf", "beta_shapley")]
        if not exact or args.samples is not None:
            raise ValueError("--exact applies to shapley, banzhaf or beta_shapley among --methods, without --samples")
        params.update({m: {"estimator": "exact"} for m in exact})
    return methods, params, rates


@command("curve", _curve_args)
def curve(args: argparse.Namespace) -> int:
    """Pruning curves: accuracy after removing the least important units by each method, vs random."""
    from ..pruning.curve_sets import curve_set, resolve_methods
    from ..pruning.curves import counts_for_rates
    from ..pruning.network_curves import NETWORK_RATES, layer_rankings, network_curves, sensitivity_grid
    from ..pruning.report_card import report_card

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
        if args.reference == "oracle":
            from ..pruning.oracle import check_oracle
            check_oracle(engine.units(args.layer))
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
                reference = args.reference or ("auto" if args.report else None)
                if args.report:  # the report card needs the Ranking objects
                    methods = resolve_methods(engine, args.layer, methods, params, rank_engine, progress)
                    params = {}
                result = curve_set(engine, args.layer, methods, args.random_seeds, counts, args.direction, params,
                                   rank_engine, progress, pool=pool, reference=reference)
        payload = {"dataset": data.name, "split": args.split, "rank_split": args.rank_split, "images": len(data),
                   "precision": args.precision, **result.to_dict()}
        if pool is not None:
            payload["workers"] = pool.workers
        if args.report:
            with progress_bar("stability") as progress:
                card = report_card(result, methods, stability_seeds=args.stability_seeds, rank_engine=rank_engine,
                                   progress=progress)
            payload["report_card"] = card.to_dict()
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
    if result.reference is not None:
        lines.append(f"reference: {result.reference.label}: "
                     + " ".join(f"{a:.3f}" for a in result.reference.accuracy))
    if args.report:
        lines.append(f"Report card of {args.layer} (gaps in accuracy points to {card.reference}, interior points; "
                     f"best first):\n{card.markdown()}\n{card.reading}")
    lines += [f"written to {path}" for path in (args.json, args.csv) if path]
    print("\n".join(lines))
    return 0
