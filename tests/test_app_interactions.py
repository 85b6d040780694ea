"""AppTest: the interaction heatmap beside SD on the Similar filters page shows core.interactions' numbers."""
from __future__ import annotations

import json

import numpy as np

import core
from tests.conftest import open_page, turn_off_lowest
from tests.test_app_curves import values


def test_similarity_page_draws_the_interaction_heatmap_beside_sd(model, digits_val):
    at = open_page("pages/similarity.py", layer="conv1")
    assert len(at.get("plotly_chart")) == 2  # SD, gamma: nothing computed yet
    radio = next(r for r in at.radio if r.label == "Interaction estimator")
    assert radio.value == "exact"  # 10 units: exact by default
    next(b for b in at.button if b.label == "Compute interactions").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # SD | interactions, gamma | SD-vs-I scatter
    similarity = core.similarity_matrix(model, digits_val, "conv1")
    clusters = core.cluster_filters(model, digits_val, "conv1", similarity=similarity)
    found = core.interactions(model, digits_val, "conv1")
    expected = core.interaction_figure(found, clusters)
    shown = json.loads(charts[1].proto.spec)["data"][0]
    assert shown["x"] == list(expected.data[0].x)
    assert np.allclose(values(shown["z"]), np.array(expected.data[0].z))
    agreement = core.similarity_vs_interactions(similarity, found)
    assert next(m for m in at.metric if m.label == "Spearman(SD, I) over pairs").value == f"{agreement.spearman:+.2f}"
    assert next(m for m in at.metric if m.label.startswith("Top-5 similar")).value == f"{agreement.overlap} / 5"
    assert next(m for m in at.metric if m.label == "Interaction evaluations").value == "1,024"


def test_a_wide_layer_offers_only_the_sampled_interactions():
    at = open_page("pages/similarity.py", layer="fc1")
    radio = next(r for r in at.radio if r.label == "Interaction estimator")
    assert radio.options == ["sampled"]


def test_rankings_page_offers_shapiq_svarm(model, digits_val):
    import pytest

    pytest.importorskip("shapiq")
    at = open_page("pages/rankings.py", layer="conv1")
    at.multiselect[0].set_value(["Shapley"]).run()
    radio = next(r for r in at.radio if r.label == "Estimator")
    assert "svarm" in radio.options
    radio.set_value("svarm").run()
    next(n for n in at.number_input if n.label == "Coalitions (budget)").set_value(500).run()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    off = turn_off_lowest(at, "Shapley (shapiq SVARM, 500 coalitions)", 3)
    lowest = core.rank(model, digits_val, "conv1", "shapley", estimator="svarm", samples=500, seed=0).lowest(3)
    assert off == sorted(lowest)
