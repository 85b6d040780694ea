"""AM gallery: the synthetic image that drives each unit of the layer most, ordered by a ranking."""
import core  # first of all: loads the whole library at once (see explorer.py)
import numpy as np
import streamlit as st

from core.engine.plots import heat_thumbnails, to_display, unit_activations
from ui.rankings import ranking_picker
from ui.compute import am_size_input, default_am_steps, heavy
from ui.explain import explain
from ui.state import friendly_errors, selection

PER_PAGE = 40
COLUMNS = 8
TOP_IMAGES = 8

chosen = selection()
st.title(f"Activation maximization — {chosen.layer}")
explain("am_gallery")
st.caption("Each picture is the input that makes one unit fire most (paper B Eq. 1): every unit of the layer is "
           "optimized at once from noise, with a smooth Fourier image parameterization and random shifts, zooms "
           "and rotations each step, so the patterns look natural. Tiny images are enlarged pixel by pixel.")


def am_result(steps: int, seed: int, size: int | None) -> core.AMResult:
    """AM images for the selected layer: from this session, the disk cache, or computed with a progress bar."""
    store = st.session_state.setdefault("_am_results", {})
    key = (chosen.model_key, chosen.layer, steps, seed, size)
    if key not in store:
        bar = st.progress(0.0, text=f"Optimizing {chosen.units()} images for {chosen.layer}…")
        with heavy("activation maximization") as work:
            store[key] = core.am_images(chosen.model, chosen.layer, steps=steps, seed=seed, size=size,
                                        progress=work.progress(lambda done, total: bar.progress(
                                            done / total, text=f"Optimizing step {done}/{total}")))
        bar.empty()
    return store[key]


with friendly_errors():
    a, b, c = st.columns([2, 1, 1])
    ranking = ranking_picker(a, chosen)
    steps = b.number_input("Optimization steps", min_value=16, max_value=2048, value=default_am_steps(chosen), step=64)
    seed = c.number_input("Seed", min_value=0, max_value=10_000, value=0)
    size = am_size_input(chosen, int(steps))
    result = am_result(int(steps), int(seed), size)
    order = [int(u) for u in ranking.order()]
    st.caption(f"{result.units} units, most important first by **{ranking.label}**. "
               f"{result.selectivity():.0%} of the units respond more to their own image than any other unit's "
               f"image does.")

    pages = (len(order) + PER_PAGE - 1) // PER_PAGE
    page = st.number_input(f"Page (of {pages})", 1, pages, 1) if pages > 1 else 1
    shown = order[(page - 1) * PER_PAGE: page * PER_PAGE]
    for row in range(0, len(shown), COLUMNS):
        for column, unit in zip(st.columns(COLUMNS), shown[row:row + COLUMNS]):
            rank_number = order.index(unit) + 1
            column.image(to_display(result.images[unit], size=140),
                         caption=f"rank {rank_number} · unit {unit} · score {ranking.scores[unit]:.3g}", width="stretch")

    st.divider()
    st.subheader("One unit up close")
    unit = st.selectbox("Unit", order, format_func=lambda u: f"unit {u} (rank {order.index(u) + 1}, "
                                                            f"score {ranking.scores[u]:.3g})")
    data = chosen.data("val")
    acts = unit_activations(chosen.engine("val"), chosen.layer)[:, unit]
    strength = acts.flatten(1).mean(1) if acts.dim() > 1 else acts
    top = strength.argsort(descending=True)[:TOP_IMAGES].tolist()
    left, right = st.columns([1, 3])
    left.image(to_display(result.images[unit], size=260), caption=f"AM image of unit {unit}", width="stretch")
    with right:
        st.markdown(f"**Validation images that activate unit {unit} most** (mean activation)")
        for column, i in zip(st.columns(TOP_IMAGES), top):
            column.image(to_display(data.images[i], size=112), width="stretch",
                         caption=f"{data.class_names[int(data.labels[i])]} · {float(strength[i]):.2f}")
        if acts.dim() > 1:
            st.markdown(f"**Feature map of unit {unit} on each** (yellow = strong)")
            maps = heat_thumbnails(acts[top], size=112, per_map=False)
            for column, heat in zip(st.columns(TOP_IMAGES), maps):
                column.image(np.asarray(heat), width="stretch")
        else:
            st.caption("An fc unit is one number per image (shown under each image), not a map.")
