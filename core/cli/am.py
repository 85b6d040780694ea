"""``am`` (activation maximization images) and ``clusters`` (paper B's similarity clusters)."""
from __future__ import annotations

import argparse
import json

from ..network.checkpoint import load_model
from ..network.device import pick_device
from ..engine import Engine
from .common import _common, _print, command, load, progress_bar


def _am_args(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--layer", required=True, help="layer name, e.g. conv2 (see `python -m core info`)")
    parser.add_argument("--out", required=True, help="folder for unit_NNN.png files and contact_sheet.png")
    parser.add_argument("--steps", type=int, default=256, help="optimization steps (default 256)")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    parser.add_argument("--size", type=int, default=None,
                        help="AM image side in pixels (default the model's input; a torchvision model takes smaller, "
                             "faster ones, e.g. 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=None, help="nearest-neighbour upscale factor for the PNGs")


@command("am", _am_args)
def am(args: argparse.Namespace) -> int:
    """Activation-maximization image of every unit of a layer, as PNGs plus a contact sheet."""
    from ..interpret.am import am_images, check_am_params

    pick_device(args.device)
    model = load_model(args.checkpoint, device=args.device)
    check_am_params(model, args.layer, args.steps, args.lr, args.size)  # before the progress bar: errors stay one line
    with progress_bar(f"AM {args.layer}", "step") as progress:
        result = am_images(model, args.layer, steps=args.steps, lr=args.lr, seed=args.seed, progress=progress,
                           size=args.size)
    paths = result.save_pngs(args.out, scale=args.scale)
    print(json.dumps({"layer": args.layer, "units": result.units, "out": str(args.out), "files": len(paths),
                      "contact_sheet": str(paths[-1]), "selectivity": result.selectivity(), **result.params}))
    return 0


def _clusters_args(parser: argparse.ArgumentParser) -> None:
    _common(parser, split="val")
    parser.add_argument("--layer", required=True, help="layer name, e.g. conv2")
    parser.add_argument("--steps", type=int, default=256, help="AM optimization steps (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=None,
                        help="AM image side in pixels (default the model's input; a torchvision model takes smaller, "
                             "faster ones, e.g. 64)")
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
    from ..interpret.am import am_images, check_am_params
    from ..interpret.contributions import class_contributions
    from ..interpret.similarity import cluster_filters, pruning_selection, similarity_matrix

    model, data = load(args)
    engine = Engine(model, data)
    check_am_params(model, args.layer, args.steps, 0.05, args.size)  # before the progress bars: errors stay one line
    if args.rate is not None and not 0 <= args.rate <= 1:
        raise ValueError(f"--rate must be between 0 and 1 (got {args.rate})")
    with progress_bar(f"AM {args.layer}", "step") as progress:
        am_images(model, args.layer, steps=args.steps, seed=args.seed, progress=progress, size=args.size)
    with progress_bar(f"class contributions {args.layer}", "batch") as progress:
        class_contributions(model, data, args.layer, engine=engine, definition=args.gamma, progress=progress)
    similarity = similarity_matrix(model, data, args.layer, args.steps, args.seed, engine=engine,
                                   gamma_definition=args.gamma, combine=args.combine, size=args.size)
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
