"""Shapley values worked by hand on a small game: a few units of a layer are the players, every other unit
stays on. All 2^n coalitions are evaluated (one batched engine call), every ordering of the players is
listed with each player's marginal contribution, and their average is the Shapley value (paper A Eq. 1).
For teaching: it shows how the number is made, and how it differs from the full layer's game.

    game = shapley_by_hand(engine, "conv2", [3, 7, 12])
    game.coalitions   # [(frozenset(), v), ({3}, v), ...]    v = accuracy with only those players on
    game.orderings    # [((3, 7, 12), {3: m, 7: m, 12: m}), ...]
    game.values       # {3: phi, 7: phi, 12: phi};  sum = v(all) - v(none)

    teaching_players(engine, "conv2")   # default players chosen by a rule: the order they join in matters
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, permutations, product
from typing import Sequence

import numpy as np

from ..engine import Engine

MAX_PLAYERS = 6  # 720 orderings: still a table a person can read
CANDIDATES = 8  # teaching_players looks for its players among the layer's 8 units whose loss hurts most
GENERIC_CANDIDATES = 5  # on a torchvision model (a full pass per coalition): 26 coalitions instead of 93


@dataclass
class ShapleyByHand:
    layer: str
    players: list[int]
    coalitions: list[tuple[frozenset[int], float]]  # every subset of the players -> payoff
    orderings: list[tuple[tuple[int, ...], dict[int, float]]]  # each ordering -> marginal of each player
    values: dict[int, float]  # mean marginal over the orderings

    def payoff(self, coalition) -> float:
        return dict(self.coalitions)[frozenset(coalition)]

    @property
    def efficiency_gap(self) -> float:
        """sum of values - (v(all players) - v(no player)); zero up to rounding."""
        return sum(self.values.values()) - (self.payoff(self.players) - self.payoff(()))


def shapley_by_hand(engine: Engine, layer: str, players: Sequence[int], payoff: str = "accuracy") -> ShapleyByHand:
    """The Shapley values of ``players`` (units of ``layer``) in the game where only they can be switched off."""
    players = [int(p) for p in players]
    units = engine.units(layer)
    if len(set(players)) != len(players) or not 2 <= len(players) <= MAX_PLAYERS:
        raise ValueError(f"pick between 2 and {MAX_PLAYERS} different units")
    if any(not 0 <= p < units for p in players):
        raise ValueError(f"{layer} has units 0..{units - 1}")
    if payoff not in ("accuracy", "loss"):
        raise ValueError("payoff is 'accuracy' or 'loss'")
    subsets = [frozenset(p for p, on in zip(players, bits) if on) for bits in product((0, 1), repeat=len(players))]
    keep = np.ones((len(subsets), units), dtype=np.float32)
    for row, subset in enumerate(subsets):
        keep[row, [p for p in players if p not in subset]] = 0.0
    result = engine.evaluate_masks(layer, keep)
    values = result.accuracy if payoff == "accuracy" else -result.loss
    return _solve(layer, players, {subset: float(value) for subset, value in zip(subsets, values)})


def _solve(layer: str, players: list[int], v: dict[frozenset[int], float]) -> ShapleyByHand:
    """Every ordering's marginals and their means, from the payoff of every subset of ``players``."""
    orderings = []
    for order in permutations(players):
        before: frozenset[int] = frozenset()
        marginals = {}
        for player in order:
            marginals[player] = v[before | {player}] - v[before]
            before = before | {player}
        orderings.append((order, marginals))
    shapley = {p: float(np.mean([m[p] for _, m in orderings])) for p in players}
    coalitions = sorted(v.items(), key=lambda item: (len(item[0]), sorted(item[0])))
    return ShapleyByHand(layer, players, coalitions, orderings, shapley)


def order_spread(game: ShapleyByHand) -> float:
    """How much the order the players join in changes what they add: the sum over players of the range
    (largest - smallest) of their marginal contributions across the orderings. 0 = every order gives the
    same marginals, so averaging over orders would teach nothing."""
    return float(sum(np.ptp([m[p] for _, m in game.orderings]) for p in game.players))


def teaching_players(engine: Engine, layer: str, count: int = 3, candidates: int | None = None) -> list[int]:
    """Players for Shapley by hand that show why the order matters, chosen by a rule (not by unit numbers).

    1. Every unit of ``layer`` is switched off alone (one batched call); the ``candidates`` units whose loss
       costs the most accuracy are kept (ties: lower unit first). Units worth nothing make a dull game.
       On a torchvision model, where each of those is a full pass of the network, the loss of each unit is
       estimated by its Taylor score instead (one backward pass), and ``candidates`` defaults to 5.
    2. Every ``count``-subset of the candidates is played (its coalitions share one more batched call), and
       the subset with the most players of non-zero Shapley value wins, then the largest ``order_spread``
       (different marginals in different orders), then the largest sum of |values|, then the lowest units.
    Returned in ascending unit order."""
    units = engine.units(layer)
    if not 2 <= count <= MAX_PLAYERS or count > units:
        raise ValueError(f"{layer} has {units} units: pick between 2 and {min(MAX_PLAYERS, units)} players")
    if candidates is None:
        candidates = CANDIDATES if engine.staged else GENERIC_CANDIDATES
    if engine.staged:
        single = np.ones((units + 1, units), dtype=np.float32)
        single[np.arange(1, units + 1), np.arange(units)] = 0.0  # row 0: everyone on; row i + 1: unit i off
        accuracy = engine.evaluate_masks(layer, single).accuracy
        drop = accuracy[0] - accuracy[1:]
    else:
        from .taylor import compute as taylor  # Eq. 7: the first-order loss change of removing each unit

        drop = taylor(engine, layer)[0]
    pool = sorted(sorted(range(units), key=lambda u: (-drop[u], u))[:max(count, min(candidates, units))])
    offs = [frozenset(c) for size in range(count + 1) for c in combinations(pool, size)]  # the units switched off
    keep = np.ones((len(offs), units), dtype=np.float32)
    for row, off in enumerate(offs):
        keep[row, list(off)] = 0.0
    payoff = dict(zip(offs, engine.evaluate_masks(layer, keep).accuracy.tolist()))
    best, best_key = None, None
    for players in combinations(pool, count):
        everyone = frozenset(players)
        game = _solve(layer, list(players), {everyone - off: payoff[off] for size in range(count + 1)
                                             for off in map(frozenset, combinations(players, size))})
        values = np.array(list(game.values.values()))
        key = (int(np.sum(np.abs(values) > 1e-12)), round(order_spread(game), 12), round(float(np.abs(values).sum()), 12))
        if best_key is None or key > best_key:  # strict: among equals the first (lowest units) stays
            best, best_key = list(players), key
    return best
