"""``interactions``: the pairwise Shapley interaction index of a layer's units, and (``--similarity``) how it
agrees with paper B's similarity degree."""
from __future__ import annotations

import argparse

from ..engine import Engine
from .common import _common, _print, command, load, progress_bar


def _interactions_args(parser: argparse.ArgumentParser) -> None:
    _common(parser, split="val")
    parser.add_argument("--layer", required=True, help="layer name, e.g. conv2 (see `info`)")
    parser.add_argument("--estimator", choices=("exact", "sampled"), default="exact",
                        help="exact: all 2^N coalitions (N <= 20, default); sampled: random orders per unit")
    parser.add_argument("--samples", type=int, default=20, help="sampled: orders per unit (2 N^2 evaluations each)")
    parser.add_argument("--seed", type=int, default=0, help="sampled: seed")
    parser.add_argument("--payoff", choices=("accuracy", "loss"), default="accuracy")
    parser.add_argument("--top", type=int, default=5, help="how many most redundant / synergistic pairs to list")
    parser.add_argument("--similarity", action="store_true",
                        help="also compute paper B's SD (AM + class contributions) and its correlation with the index")
    parser.add_argument("--steps", type=int, default=256, help="--similarity: AM optimization steps (default 256)")
    parser.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    parser.add_argument("--json", action="store_true")


@command("interactions", _interactions_args)
def interactions(args: argparse.Namespace) -> int:
    """Pairwise Shapley interaction index of a layer's units (negative = redundant pair), optionally vs SD."""
    from ..interpret.am import am_images, check_am_params
    from ..interpret.redundancy import similarity_vs_interactions
    from ..interpret.similarity import similarity_matrix
    from ..rankings.interactions import check_params, interactions as interaction_index

    if args.top < 0:
        raise ValueError(f"--top must be >= 0 (got {args.top})")
    model, data = load(args)
    engine = Engine(model, data)
    check_params(engine.units(args.layer), args.estimator, args.samples, args.payoff)  # one line before the bars
    if args.similarity:
        check_am_params(model, args.layer, args.steps, 0.05)
    with progress_bar(f"interactions {args.layer}", "coalition") as progress:
        found = interaction_index(model, data, args.layer, args.estimator, args.samples, args.seed, args.payoff,
                                  progress, engine, cache=not args.no_cache)
    payload = {**found.to_dict(), "most_redundant": found.most_redundant(args.top),
               "most_synergistic": found.most_synergistic(args.top)}
    lines = [f"{args.layer}: {found.label}, {found.evaluations:,} evaluations, {found.seconds:.1f} s",
             "  most redundant:   " + "  ".join(f"{i}&{j} {v:+.4f}" for i, j, v in payload["most_redundant"]),
             "  most synergistic: " + "  ".join(f"{i}&{j} {v:+.4f}" for i, j, v in payload["most_synergistic"])]
    if args.similarity:
        with progress_bar(f"AM {args.layer}", "step") as progress:
            am_images(model, args.layer, steps=args.steps, progress=progress)
        similarity = similarity_matrix(model, data, args.layer, args.steps, engine=engine)
        agreement = similarity_vs_interactions(similarity, found, k=max(1, args.top))
        payload["similarity_vs_interactions"] = agreement.to_dict()
        lines.append("  " + agreement.sentence())
    _print(payload, args.json, "\n".join(lines))
    return 0
