"""Command line: ``python -m core <command>``. Errors are one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import sys

from ..network.checkpoint import CheckpointError
from ..data import DataError
from ..engine.compute import set_threads
from ..engine.pools import WorkerError
from .common import (COMMANDS, _check_precision, _common, _device_arg, _distributed, _Pools,  # noqa: F401
                     _precision_arg, _print, _workers_args, command, load, parse_off, progress_bar)
from . import basics, am, rankings, curves, compress  # noqa: F401  registers the commands, in this order
from . import teaching  # noqa: F401,E402  by-hand and predict (issue 22)
from . import interactions  # noqa: F401,E402  registers `interactions` (after the others: help order)

__all__ = ["COMMANDS", "command", "load", "main", "parse_off", "progress_bar"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description="Neuron Ranking Explorer command line")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads per computation (default: $NRE_THREADS, else one per four cores, 1-4)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (arguments, run) in COMMANDS.items():
        arguments(sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None))
    args = parser.parse_args(argv)
    try:
        set_threads(args.threads)  # the compute policy (core.engine.compute); a bad value is one line, exit 2
        return COMMANDS[args.command][1](args)
    except (CheckpointError, DataError, ValueError, OSError, KeyError, WorkerError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
