"""Rankings a session has computed, shared across pages (the rankings page adds to them)."""
from __future__ import annotations

import streamlit as st

from ui.state import Selection


def remember_ranking(chosen: Selection, ranking) -> None:
    """Keep a computed ranking so other pages can offer it ("turn off the k lowest by ...")."""
    store = st.session_state.setdefault("rankings", {})
    store.setdefault((chosen.model_key, chosen.dataset, chosen.layer), {})[ranking.label] = ranking


def known_rankings(chosen: Selection) -> dict:
    """label -> Ranking for the selected layer: the L1 norm always, plus what this session computed."""
    from core.rankings import rank

    l1 = rank(chosen.model, chosen.data("val"), layer=chosen.layer, method="l1")
    stored = st.session_state.get("rankings", {}).get((chosen.model_key, chosen.dataset, chosen.layer), {})
    return {l1.label: l1, **stored}
