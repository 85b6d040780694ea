"""Shared pieces of the command line: the command registry, the common options, loading, progress bars."""
from __future__ import annotations

import argparse
import sys
import json
from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm import tqdm

from ..network.checkpoint import DEFAULT_CHECKPOINT, load_model
from ..data import DATASETS, EMBEDDED, default_dataset, load_dataset
from ..network.device import DEVICE_HELP, pick_device
from ..engine import PRECISIONS, Engine, check_precision

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
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files (looked in first; then $NRE_DATA_ROOT, "
                                                              "./data, /usr/share/datasets)")
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
            from ..engine.pools import engine_pool

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
    name = args.dataset or default_dataset(model.meta.dataset, args.data_root)
    if not args.dataset and name != (model.meta.dataset or "digits"):
        print(f"note: {model.meta.dataset} was not found on this machine; using the embedded {name}", file=sys.stderr)
    # ImageFolder images come in any size, and the embedded sets are converted to any model's input (as in
    # the app): a torchvision model (3x224x224) runs offline on the digits
    input_shape = model.meta.input_shape if name in ("imagefolder", *EMBEDDED) else None
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
