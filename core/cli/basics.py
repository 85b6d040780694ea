"""``info``, ``evaluate`` and ``train``."""
from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from ..network.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint
from ..network.device import device_label, model_device, pick_device
from ..engine import Engine
from ..network.models import model_totals, prunable_layers
from .common import _common, _device_arg, _print, command, load, parse_off


@command("info", lambda p: (_common(p), p.add_argument("--json", action="store_true")))
def info(args: argparse.Namespace) -> int:
    model, data = load(args)
    result = Engine(model, data).evaluate()
    layers = [vars(layer) for layer in prunable_layers(model)]
    device = model_device(model)
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
    from ..pruning.train import train_new

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
