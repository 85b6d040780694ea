"""Shapley values worked by hand on a small game: a few units of a layer are the players, every other unit
stays on. All 2^n coalitions are evaluated (one batched engine call), every ordering of the players is
listed with each player's marginal contribution, and their average is the Shapley value (paper A Eq. 1).
For teaching: it shows how the number is made, and how it differs from the full layer's game.

    game = shapley_by_hand(engine, "conv2", [3, 7, 12])
    game.coalitions   # [(frozenset(), v), ({3}, v), ...]    v = accuracy with only those players on
    game.orderings    # [((3, 7, 12), {3: m, 7: m, 12: m}), ...]
    game.values       # {3: phi, 7: phi, 12: phi};  sum = v(all) - v(none)
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations, product
from typing import Sequence

import numpy as np

from ..engine import Engine

MAX_PLAYERS = 6  # 720 orderings: still a table a person can read


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
    v = {subset: float(value) for subset, value in zip(subsets, values)}
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
