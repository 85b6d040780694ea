"""``by-hand`` (Shapley values worked by hand on three units) and ``predict`` (what the model makes of one
picture, a student's drawing say)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data import read_image, suggest_inversion
from ..engine import Engine
from ..engine.predict import predict as top_classes
from ..rankings.by_hand import order_spread, shapley_by_hand, teaching_players
from .common import _common, _print, command, load


def _by_hand_args(parser: argparse.ArgumentParser) -> None:
    _common(parser, split="val")
    parser.add_argument("--layer", required=True)
    parser.add_argument("--players", default=None, metavar="UNITS",
                        help="2-6 units, e.g. 3,18,19 (default: three chosen by a rule so that the order they "
                             "join in matters, as in the app)")
    parser.add_argument("--json", action="store_true")


@command("by-hand", _by_hand_args)
def by_hand(args: argparse.Namespace) -> int:
    """Shapley values by hand: a few units as players, every coalition and order, the values and their sum."""
    model, data = load(args)
    engine = Engine(model, data)
    engine.units(args.layer)  # an unknown layer is one line naming the layers
    if args.players:
        try:
            players = [int(u) for u in args.players.split(",") if u.strip()]
        except ValueError:
            raise ValueError(f"--players {args.players!r}: whole numbers separated by commas, e.g. 3,18,19") from None
    else:
        players = teaching_players(engine, args.layer)
    game = shapley_by_hand(engine, args.layer, players)
    payload = {"layer": args.layer, "players": game.players, "default_players": not args.players,
               "coalitions": [{"coalition": sorted(c), "accuracy": v} for c, v in game.coalitions],
               "orders": [{"order": list(order), "marginals": {str(p): m[p] for p in order}}
                          for order, m in game.orderings],
               "values": {str(p): v for p, v in game.values.items()}, "order_spread": order_spread(game),
               "efficiency_gap": game.efficiency_gap}
    lines = [f"{args.layer}, players {', '.join(map(str, game.players))}"
             + (" (chosen so that the order matters)" if not args.players else "") + f", {len(data)} images",
             "coalitions (accuracy with only these players on):"]
    lines += [f"  {{{', '.join(map(str, sorted(c)))}}}: {v:.4f}" for c, v in game.coalitions]
    lines.append("orders (marginal of each player, points):")
    lines += [f"  {' -> '.join(map(str, order))}: " + "  ".join(f"{p}: {m[p] * 100:+.2f}" for p in game.players)
              for order, m in game.orderings]
    lines.append("Shapley values (points): " + "  ".join(f"{p}: {v * 100:+.3f}" for p, v in game.values.items())
                 + f"  (sum - (v(all) - v(none)) = {game.efficiency_gap:.1e})")
    _print(payload, args.json, "\n".join(lines))
    return 0


def _predict_args(parser: argparse.ArgumentParser) -> None:
    _common(parser, split="val")
    parser.add_argument("--image", required=True, help="a PNG or JPEG file (any size or colour mode)")
    parser.add_argument("--invert", default="auto", choices=("auto", "yes", "no"),
                        help="invert the brightness: auto = when the picture sits on the opposite background of "
                             "the model's data (dark ink on paper for an MNIST-style model)")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--json", action="store_true")


@command("predict", _predict_args)
def predict(args: argparse.Namespace) -> int:
    """The model's top classes for one picture, converted (and inverted when needed) as the app does."""
    model, data = load(args)
    path = Path(args.image)
    if not path.is_file():
        raise OSError(f"no file at {path}")
    image, conversion = read_image(path.read_bytes(), path.name, model.meta.input_shape)
    suggested = suggest_inversion(image, data.images)
    invert = args.invert == "yes" or (args.invert == "auto" and suggested)
    if invert:
        image, conversion = read_image(path.read_bytes(), path.name, model.meta.input_shape, invert=True)
    best = top_classes(model, image, top=max(1, args.top))
    payload = {"image": str(path), "conversion": conversion, "inversion_suggested": suggested, "inverted": invert,
               "predictions": [{"class": name, "probability": p} for name, p in best]}
    _print(payload, args.json, f"{path.name}: {conversion}\n"
                               + ("(inverted: the picture is dark on light, the model's data light on dark)\n"
                                  if invert and args.invert == "auto" else "")
                               + "\n".join(f"  {name}: {p:.1%}" for name, p in best))
    return 0
