"""AppTest: the AM gallery and the similarity & clusters pages render on the shipped LeNet-5."""
from __future__ import annotations

import re

import torch
from streamlit.testing.v1 import AppTest

import core
from tests.conftest import open_page

def images_shown(at: AppTest) -> int:
    """st.image elements on the page (counted through their proto)."""
    return sum(len(e.proto.imgs) for e in at.get("image"))


def test_am_gallery_shows_every_unit_in_ranking_order(model):
    at = open_page("pages/am_gallery.py", layer="conv2")
    assert at.title[0].value == "Activation maximization — conv2"
    units = core.prunable_layers(model)[1].units
    # the gallery (one per unit) + the close-up AM image + 8 top images + 8 feature maps
    assert images_shown(at) == units + 1 + 8 + 8
    unit_box = next(s for s in at.selectbox if s.label == "Unit")
    assert len(unit_box.options) == units
    unit_box.select_index(len(unit_box.options) - 1).run()  # the least important unit
    assert not at.exception
    lowest = core.rank(model, core.load_dataset("digits", "val"), layer="conv2", method="l1").lowest(1)[0]
    close_up = [img.caption for e in at.get("image") for img in e.proto.imgs if img.caption.startswith("AM image")]
    assert close_up == [f"AM image of unit {lowest}"]
    # the images that activate a unit most: the top 8 by mean activation, strongest first (independent pass)
    unit_box.select_index(0).run()  # the most important unit (the least one may be silent: all ties)
    unit = int(re.match(r"unit (\d+)", str(unit_box.value)).group(1))
    data = core.load_dataset("digits", "val")
    with torch.no_grad():
        strength = model.conv2(model.conv1(model.input(data.images)))[:, unit].flatten(1).mean(1)
    top = torch.argsort(strength, descending=True)[:8]
    expected = [f"{data.class_names[int(data.labels[i])]} · {float(strength[i]):.2f}" for i in top]
    shown = [img.caption for e in at.get("image") for img in e.proto.imgs
             if re.fullmatch(r"\S+ · -?\d+\.\d\d", img.caption or "")]
    assert shown == expected


def test_similarity_page_shows_clusters_and_both_heatmaps(model):
    at = open_page("pages/similarity.py", layer="conv2")
    assert at.title[0].value == "Similar filters & clusters — conv2"
    k = int(next(m for m in at.metric if m.label == "Clusters (k)").value)
    assert 1 <= k <= 10
    charts = [e for e in at.get("plotly_chart")]
    assert len(charts) == 2
    pruned = next(m for m in at.metric if m.label == "Pruned at this rate").value
    at.slider[0].set_value(0.5).run()
    assert not at.exception
    assert next(m for m in at.metric if m.label == "Pruned at this rate").value != pruned
    # the page removes (lists, crosses out, counts) exactly pruning_selection's units
    val = core.load_dataset("digits", "val")
    similarity = core.similarity_matrix(model, val, "conv2")
    removed = core.pruning_selection(core.cluster_filters(model, val, "conv2", similarity=similarity), 0.5)
    assert next(m for m in at.metric if m.label == "Pruned at this rate").value == f"{len(removed)} / 20"
    listed = next(m.value for m in at.markdown if m.value.startswith("**Removed:**"))
    assert listed == "**Removed:** " + ", ".join(f"unit {u}" for u in removed)
