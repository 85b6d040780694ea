"""Shapley by hand: three units, their 8 coalitions, 6 orders and 3 Shapley values, worked out live."""
import core  # first of all: loads the whole library at once (see explorer.py)
import numpy as np
import pandas as pd
import streamlit as st

from ui.compute import heavy
from ui.explain import explain
from ui.rankings import known_rankings, remember_ranking
from ui.state import friendly_errors, selection

PLAYERS = 3
FULL_PERMUTATIONS = 100
GENERIC_PERMUTATIONS = 2  # a torchvision model: every coalition is a full pass (~1 s), 2 permutations of 64 units ~ 2 min

chosen = selection()
st.title(f"Shapley by hand — {chosen.layer}")
explain("by_hand")


def default_players(engine: core.Engine, layer: str) -> list[int]:
    """core.teaching_players: among the units whose loss costs most, the three whose marginals change most
    with the order they join in (two batched engine calls; on a torchvision model Taylor, then 26 passes).
    Computed once per server (the disk cache, keyed by the engine's weights and data), in a compute slot."""
    def compute():
        with heavy("choosing three units whose order matters"):
            return {"players": np.array(core.teaching_players(engine, layer, PLAYERS))}, {}

    key = {**engine.identity(), "layer": layer, "players": PLAYERS, "version": 1}
    arrays, _ = core.engine.cache.cached("teaching_players", key, compute)
    return [int(u) for u in arrays["players"]]


def name(coalition) -> str:
    return "{" + ", ".join(str(u) for u in sorted(coalition)) + "}" if coalition else "∅ (none)"


with friendly_errors():
    units = chosen.units()
    engine = chosen.engine("val")
    key = f"players:{chosen.model_key}:{chosen.layer}"
    if key not in st.session_state:
        st.session_state[key] = default_players(engine, chosen.layer)
    players = st.multiselect(f"Three units of {chosen.layer} (the players)", list(range(units)), key=key,
                             max_selections=PLAYERS,
                             help="Default, by a rule: among the 8 units whose loss alone costs the most accuracy "
                                  "(on a torchvision model the 5 with the highest Taylor score), the three whose "
                                  "marginal contributions change most with the order they join in.")
    if len(players) != PLAYERS:
        st.info(f"Pick {PLAYERS} units.")
        st.stop()
    with heavy("the 8 coalitions"):  # a compute slot (8 full passes on a torchvision model)
        game = st.session_state["by_hand"] = core.shapley_by_hand(engine, chosen.layer, players)  # notebooks/tests read it
    a, b, c = sorted(players)

    st.subheader("1. The 8 coalitions")
    st.caption(f"v(C) = validation accuracy ({len(engine.data)} images) with only the players in C on; "
               f"the other {units - PLAYERS} units of {chosen.layer} stay on throughout.")
    # plain tables, not data grids: a handful of rows, readable when projected
    st.table(pd.DataFrame({"coalition C": [name(s) for s, _ in game.coalitions],
                           "size": [len(s) for s, _ in game.coalitions],
                           "v(C), accuracy": [f"{v:.2%}" for _, v in game.coalitions]}).set_index("coalition C"))

    st.subheader("2. The 6 orders, each player's marginal contribution")
    st.caption("Players join one by one; a player's marginal = v(the ones before it + it) − v(the ones before it), "
               "in percentage points.")
    rows = [{"order": " → ".join(map(str, order)), **{f"unit {p}": f"{m[p] * 100:+.2f}" for p in (a, b, c)}}
            for order, m in game.orderings]
    rows.append({"order": "average = Shapley value", **{f"unit {p}": f"{game.values[p] * 100:+.3f}" for p in (a, b, c)}})
    st.table(pd.DataFrame(rows).set_index("order"))
    swing = {p: [m[p] for _, m in game.orderings] for p in (a, b, c)}
    widest = max(swing, key=lambda p: max(swing[p]) - min(swing[p]))
    if max(swing[widest]) > min(swing[widest]):
        st.caption(f"The order matters: unit {widest} adds between {min(swing[widest]) * 100:+.2f} and "
                   f"{max(swing[widest]) * 100:+.2f} pts depending on who joined before it — hence the average.")
    else:
        st.caption("Here every order gives the same marginals (the players do not interact), so the average "
                   "changes nothing. Try other units to see the order matter.")

    st.subheader("3. The Shapley values")
    columns = st.columns(PLAYERS + 1)
    for column, p in zip(columns, (a, b, c)):
        column.metric(f"φ(unit {p})", f"{game.values[p] * 100:+.3f} pts")
    total = sum(game.values.values())
    columns[-1].metric("Efficiency: sum of φ", f"{total * 100:+.3f} pts",
                       help="equals v(all three) − v(none)")
    whole = game.payoff(players) - game.payoff(())
    st.success(f"Check: φ({a}) + φ({b}) + φ({c}) = {total * 100:+.4f} pts and v({{{a}, {b}, {c}}}) − v(∅) = "
               f"{game.payoff(players):.2%} − {game.payoff(()):.2%} = {whole * 100:+.4f} pts "
               f"(difference {abs(game.efficiency_gap):.1e}).", icon=":material/check:")

    st.subheader("4. The same units in the real game")
    st.caption(f"In the full layer every one of its {units} units is a player, so a unit's value averages over many "
               "more coalitions. Sampled Shapley of the whole layer (antithetic permutations, ±1.96 standard errors):")
    permutations = FULL_PERMUTATIONS if engine.staged else GENERIC_PERMUTATIONS
    if st.button(f"Compute the full layer's sampled Shapley ({permutations} permutations)"):
        bar = st.progress(0.0, text="sampling permutations…")
        with heavy("sampled Shapley") as work:
            remember_ranking(chosen, core.rank(chosen.model, engine.data, chosen.layer, "shapley", engine=engine,
                                               samples=permutations, progress=work.progress(
                                                   lambda done, total: bar.progress(min(1.0, done / max(1, total))))))
        bar.empty()
    full = next((r for r in known_rankings(chosen).values() if r.method == "shapley"), None)
    if full is not None:
        rows = [{"unit": p, "3-player game": f"{game.values[p] * 100:+.3f} pts",
                 f"full layer ({full.label})": f"{full.scores[p] * 100:+.3f} pts"
                 + (f" ± {1.96 * full.stderr[p] * 100:.3f}" if full.stderr is not None else ""),
                 "rank in the layer": int(list(full.order()).index(p)) + 1} for p in (a, b, c)]
        st.table(pd.DataFrame(rows).set_index("unit"))
