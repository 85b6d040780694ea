"""Rankings a session has computed, shared across pages (the rankings page adds to them)."""
from __future__ import annotations

import streamlit as st

from core.rankings import Ranking, rank
from ui.state import Selection


def _store(chosen: Selection) -> dict[str, Ranking]:
    rankings = st.session_state.setdefault("rankings", {})
    return rankings.setdefault((chosen.model_key, chosen.dataset, chosen.layer), {})


def remember_ranking(chosen: Selection, ranking: Ranking) -> None:
    """Keep a computed ranking so other pages can offer it ("turn off the k lowest by ...")."""
    _store(chosen)[ranking.label] = ranking


def known_rankings(chosen: Selection) -> dict[str, Ranking]:
    """label -> Ranking for the selected layer: the L1 norm always, plus what this session computed."""
    store = _store(chosen)
    if not any(r.method == "l1" for r in store.values()):  # once per session: toggles rerun this often
        remember_ranking(chosen, rank(chosen.model, chosen.data("val"), layer=chosen.layer, method="l1",
                                      engine=chosen.engine("val")))
    l1 = [label for label, r in store.items() if r.method == "l1"]
    return {**{label: store[label] for label in l1}, **store}
