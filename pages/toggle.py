"""Live toggles: switch units of the chosen layer off and watch accuracy change."""
import streamlit as st

import core  # first: loads the whole library at once (see explorer.py)
from core.engine import parse_units
from core.engine.plots import (class_profile_thumbnails, confusion_figure, heat_thumbnails, per_class_figure,
                               unit_activations)
from ui.rankings import ranking_picker
from ui.compute import live
from ui.explain import explain
from ui.state import Selection, friendly_errors, publish_view, selection

PAGE_SIZE = 60
COLUMNS = 6  # at 1280x720 with the sidebar open, 8 columns left room for one digit of a unit's number

chosen = selection()
st.title(f"Live toggles — {chosen.layer}")
explain("toggle")


@st.cache_data(show_spinner="Computing unit thumbnails…", max_entries=32)
def thumbnails(model_key: str, data_key: str, layer: str, _chosen: Selection, split: str) -> list:
    engine = _chosen.engine(split)
    acts = unit_activations(engine, layer)  # the prefix cache, or hooked passes for a torchvision model
    if acts.dim() == 2:  # an fc layer: one number per image, so show what each neuron prefers by class
        return class_profile_thumbnails(acts, engine.data.labels, len(engine.data.class_names), size=96)
    return heat_thumbnails(acts.mean(0), size=96, per_map=True)


def unit_key(i: int) -> str:
    return f"unit:{chosen.model_key}:{chosen.dataset}:{chosen.layer}:{i}"


def flip(i: int) -> None:
    # statements, not a conditional expression: Streamlit's magic would write a bare expression's value
    if st.session_state[unit_key(i)]:
        chosen.units_off().discard(i)
    else:
        chosen.units_off().add(i)


def change(text: str, colour: str = "normal") -> dict:
    """st.metric delta arguments; a change that rounds to nothing gets no coloured arrow."""
    unchanged = text.lstrip("+-").rstrip(" pts").strip("0.") == ""
    return {"delta": text, "delta_color": "off" if unchanged else colour, "delta_arrow": "off" if unchanged else "auto"}


@st.fragment
def panel(split: str) -> None:
    """Controls, switches and results: a toggle reruns only this fragment."""
    with friendly_errors():
        units = chosen.units()
        engine = chosen.engine(split)
        with st.container(border=True):
            a, b, c, d, e = st.columns([1, 1, 2.2, 1.2, 1.4], vertical_alignment="bottom")
            a.button("All on", on_click=chosen.set_units_off, args=(set(),), width="stretch")
            b.button("Invert", on_click=lambda: chosen.set_units_off(set(range(units)) - chosen.units_off()), width="stretch")
            ranking = ranking_picker(c, chosen, "Ranking")
            k = d.number_input("k", min_value=0, max_value=units - 1, value=min(5, units - 1), step=1)
            e.button(f"Turn off {k} lowest", width="stretch",
                     on_click=lambda: chosen.set_units_off(set(ranking.lowest(int(k)))))

        off = sorted(chosen.units_off())
        full = chosen.baseline(split)  # once per server (every session's reference)
        with live():  # a toggle's compute slot: ahead of heavy work (core.engine.compute)
            masked = engine.evaluate({chosen.layer: off}) if off else full
        m1, m2, m3 = st.columns(3)
        m1.metric(f"Accuracy ({split}, {full.n} images)", f"{masked.accuracy:.2%}",
                  **change(f"{(masked.accuracy - full.accuracy) * 100:+.2f} pts"))
        m2.metric("Units off", f"{len(off)} / {units}")
        m3.metric("Loss", f"{masked.loss:.3f}", **change(f"{masked.loss - full.loss:+.3f}", "inverse"))
        elsewhere = {layer: len(chosen.units_off(layer)) for layer in engine.layers
                     if layer != chosen.layer and chosen.units_off(layer)}
        if elsewhere:
            listed = ", ".join(f"{n} in {layer}" for layer, n in elsewhere.items())
            st.caption(f"Only {chosen.layer}'s switches apply here. Units you switched off in other layers "
                       f"({listed}) are remembered and come back when you pick that layer again.")

        left, right = st.columns([3, 2])  # the results stay beside the switches, in view on wide layers too
        with left:
            switches(units, split)
        right.plotly_chart(per_class_figure(masked.per_class, engine.data.class_names, full.per_class),
                           width="stretch", key="per_class")
        right.plotly_chart(confusion_figure(masked.confusion, engine.data.class_names), width="stretch",
                           key="confusion")
        publish_view(chosen)  # a toggle reruns only this fragment: keep the address bar and the popover in step


def switches(units: int, split: str) -> None:
    """The grid of unit switches, paged (and searchable) for wide layers."""
    shown = list(range(units))
    if units > PAGE_SIZE:
        left, right = st.columns(2)
        query = left.text_input("Find units", placeholder="e.g. 17, 200-230", key=f"find:{chosen.layer}")
        if query:
            shown = parse_units(query, units)
        else:
            pages = (units + PAGE_SIZE - 1) // PAGE_SIZE
            page = right.number_input(f"Page (of {pages})", 1, pages, 1, key=f"page:{chosen.layer}")
            shown = shown[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    images = thumbnails(chosen.model_key, chosen.engine(split).data.key, chosen.layer, chosen, split)
    off = chosen.units_off()
    for row in range(0, len(shown), COLUMNS):
        cells = st.columns(COLUMNS)
        for cell, i in zip(cells, shown[row:row + COLUMNS]):
            cell.image(images[i], width="stretch")
            st.session_state[unit_key(i)] = i not in off
            cell.toggle(str(i), key=unit_key(i), on_change=flip, args=(i,))


split = st.radio("Evaluate on", ["test", "val"], horizontal=True,
                 help="The validation split is what rankings (e.g. Shapley) are computed on.")
st.caption(f"Evaluated on {chosen.evaluated_on(split)}.")
panel(split)
