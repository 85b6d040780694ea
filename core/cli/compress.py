"""``compress``: plan, prune, fine-tune and export a smaller model."""
from __future__ import annotations

import argparse
import json

from ..network.checkpoint import load_model
from ..data import load_dataset
from ..engine import Engine
from .common import _common, _distributed, _Pools, _workers_args, command, progress_bar


def _compress_args(parser: argparse.ArgumentParser) -> None:
    from ..rankings import METHODS
    from ..pruning.train import RECIPES

    _common(parser, split="test")
    rule = parser.add_mutually_exclusive_group(required=True)
    rule.add_argument("--plan", metavar="WIDTHS", help="kept units per layer, e.g. 5-7-45-20 (LeNet-5)")
    rule.add_argument("--pr", type=float, help="paper B: tolerated accuracy drop per layer, in points (e.g. 0.5)")
    rule.add_argument("--flops", type=float, help="keep this share of the FLOPs (0-1), least important units first")
    rule.add_argument("--params", type=float, help="keep this share of the parameters (0-1)")
    parser.add_argument("--crossing", default="first", choices=["first", "largest"],
                        help="--pr: units removed per layer up to where its cost curve first exceeds Pr (first), "
                             "or the largest count anywhere within Pr (largest)")
    parser.add_argument("--cross-layer", default="auto", choices=["auto", "raw", "normalized"],
                        help="--flops/--params: compare scores across layers raw (Shapley: accuracy points), "
                             "normalized (each layer shifted to 0, divided by its mean), or auto (raw for shapley)")
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
    from ..pruning import budgets, plans
    from ..pruning.export import atomic_write, export_checkpoint, export_onnx
    from ..pruning.report import compress_model, report_markdown
    from ..pruning.train import make_recipe

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
        rankings = None  # a cluster-aware plan orders units by clusters: no ranking is computed for it
        if not args.cluster_aware:
            with progress_bar(f"rank {args.method}", "layer") as progress:
                rankings = plans.layer_rankings(model, val, args.method, engine=engine, progress=progress, **params)
        if args.cluster_aware:
            with progress_bar("clusters", "layer") as progress:
                clusters = plans.layer_clusters(model, val, engine=engine, steps=args.am_steps, progress=progress)
        if args.plan is not None:
            plan = plans.plan_from_widths(model, args.plan, rankings, clusters, args.empty_clusters)
        elif args.pr is not None:
            plan = plans.plan_from_pr(engine, rankings, args.pr, clusters, args.empty_clusters, pool=pools.on(engine),
                                      crossing=args.crossing)
        else:
            plan = budgets.plan_from_budget(model, rankings, share, "flops" if args.flops is not None else "params",
                                            clusters, args.empty_clusters, cross_layer=args.cross_layer)
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
