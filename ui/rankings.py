"""Rankings a session has computed, shared across pages (the rankings page adds to them), and the one
"order units by" choice every page shares (and the link carries as ``rank=``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import streamlit as st

from core.rankings import Ranking, rank

if TYPE_CHECKING:
    from torch import nn

    import core


class Selection(Protocol):
    """What this module needs of ``ui.state.Selection`` (which imports this module, so it cannot import it)."""

    model_key: str
    dataset: str
    layer: str
    model: nn.Module

    def data(self, split: str = "val") -> core.DataSplit: ...

    def engine(self, split: str = "val") -> core.Engine: ...


QUICK = ("l1", "l2", "taylor", "activation", "random")  # computed on request from a link; the rest take minutes


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


def ranking_picker(where, chosen: Selection, label: str = "Order units by") -> Ranking:
    """A select box of the known rankings; the choice is shared by every page and the link."""
    rankings = known_rankings(chosen)
    linked = st.session_state.pop("_url:rank", None)
    if linked:
        found = [name for name, r in rankings.items() if r.method == linked]
        if not found and linked in QUICK:
            remember_ranking(chosen, rank(chosen.model, chosen.data("val"), chosen.layer, linked,
                                         engine=chosen.engine("val")))
            rankings = known_rankings(chosen)
            found = [name for name, r in rankings.items() if r.method == linked]
        if found:
            st.session_state["_keep:ranking"] = found[0]
        else:
            st.warning(f"The link asks for the {linked} ranking, which this session has not computed yet "
                       "(it takes a while): compute it on the Rankings page. Showing the L1 norm meanwhile.")
    labels = list(rankings)
    if st.session_state.get("_keep:ranking") in labels:
        st.session_state["ranking"] = st.session_state["_keep:ranking"]
    choice = where.selectbox(label, labels, key="ranking", on_change=_keep_ranking,
                             help="L1 norm is always here; compute more on the Rankings page.")
    return rankings[choice]


def _keep_ranking() -> None:
    st.session_state["_keep:ranking"] = st.session_state["ranking"]


def chosen_method(chosen: Selection) -> str | None:
    """The method of the shared ranking choice, if this layer has it (for the link)."""
    ranking = _store(chosen).get(st.session_state.get("_keep:ranking"))
    return ranking.method if ranking is not None else None
