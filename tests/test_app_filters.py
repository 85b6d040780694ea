"""AppTest: the AM gallery and the similarity & clusters pages render on the shipped LeNet-5."""
from __future__ import annotations

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
