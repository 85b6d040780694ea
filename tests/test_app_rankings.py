"""AppTest: the rankings page computes and compares rankings; the feature-maps page orders by them."""
from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

import core
from core.rankings.plots import feature_map_grid, feature_maps
from tests.conftest import open_page, turn_off_lowest

def charts(at: AppTest) -> list[dict]:
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def test_rankings_page_computes_shapley_switches_and_compares(model, digits_val):
    at = open_page("pages/rankings.py", layer="conv1")
    assert at.title[0].value == "Rankings of conv1"
    # README: the app offers exact Shapley up to 12 units (conv1: 10 units; conv2: 20)
    assert "exact" in next(r for r in at.radio if r.label == "Estimator").options
    at.sidebar.selectbox(key="layer").set_value("conv2").run()
    assert "exact" not in next(r for r in at.radio if r.label == "Estimator").options
    at.sidebar.selectbox(key="layer").set_value("conv1").run()
    assert [c["layout"]["title"]["text"] for c in charts(at)] == ["L1 norm — conv1"]  # L1 is always there
    at.multiselect[0].set_value(["Shapley", "Importance switches", "L1 norm"])
    at.run()
    next(s for s in at.slider if s.label == "Permutations").set_value(20)
    next(s for s in at.slider if s.label == "Epochs").set_value(2)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert "Shapley (sampled, 20 perms) — conv1" in titles and "Switch training — conv1" in titles
    shapley_bar = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("Shapley"))
    assert shapley_bar["data"][0]["error_y"]["visible"]  # error bars for sampled Shapley
    expected = core.rank(model, digits_val, "conv1", "shapley", samples=20)  # same numbers, from the cache
    assert expected.cached and shapley_bar["data"][0]["x"] == [f"unit {i}" for i in expected.order()]
    table = at.dataframe[0].value
    assert set(table.index) == {"L1 norm", "Shapley (sampled, 20 perms)", "Switches (alpha0=2) [epochs=2]"}  # the label says what ran
    assert any(c["data"][0]["type"] == "heatmap" for c in charts(at))


def test_feature_maps_page_orders_units_by_a_ranking(model, digits_val):
    at = open_page("pages/feature_maps.py", layer="conv2")
    assert at.title[0].value == "Feature maps of conv2, ordered by a ranking"
    grid = charts(at)[-1]
    l1 = core.rank(model, digits_val, "conv2", "l1")
    names = [a["text"] for a in grid["layout"]["annotations"]]
    assert len(names) == 20
    assert f"#1 · unit {l1.order()[0]}<br>▲ top" in names and f"#20 · unit {l1.order()[-1]}<br>▼ bottom" in names
    assert f"#10 · unit {l1.order()[9]}" in names
    at.sidebar.selectbox(key="layer").set_value("fc1")
    at.run()
    assert not at.exception and not at.error
    assert charts(at)[-1]["data"][0]["type"] == "bar"  # fc units: activations in ranking order
    # the upload path: any size and colour mode, converted as image_to_tensor says, then the same grid
    import io

    from PIL import Image

    from core.data import image_to_tensor

    picture = Image.new("RGB", (50, 36), (200, 30, 30))
    picture.paste((255, 255, 255), (10, 8, 30, 28))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    at.sidebar.selectbox(key="layer").set_value("conv2")
    at.radio[0].set_value("Upload a PNG/JPEG").run()
    at.file_uploader[0].upload("red.png", buffer.getvalue(), "image/png").run()
    assert not at.exception and not at.error
    tensor, conversion = image_to_tensor(Image.open(io.BytesIO(buffer.getvalue())), model.meta.input_shape)
    assert f"Conversion: {conversion}" in [c.value for c in at.caption]
    expected = feature_map_grid(feature_maps(model, "conv2", tensor.unsqueeze(0))[0], l1)
    grid = charts(at)[-1]
    assert len(grid["layout"]["annotations"]) == 20
    assert grid["data"][0]["z"] == json.loads(expected.to_json())["data"][0]["z"]  # the maps of this image


def test_live_toggles_turn_off_the_k_lowest_by_a_ranking_computed_on_the_rankings_page(model, digits_val, digits_test):
    at = open_page("pages/rankings.py", layer="conv1")
    at.multiselect[0].set_value(["Shapley", "L1 norm"])
    at.run()
    next(s for s in at.slider if s.label == "Permutations").set_value(20)
    at.button[0].click()
    at.run()
    off = turn_off_lowest(at, "Shapley (sampled, 20 perms)", 3)
    lowest = core.rank(model, digits_val, "conv1", "shapley", samples=20).lowest(3)
    assert off == sorted(lowest)
    shown = next(m for m in at.metric if m.label.startswith("Accuracy")).value
    assert shown == f"{core.evaluate(model, digits_test, off={'conv1': lowest}).accuracy:.2%}"


def _compute_sampled_shapley(at: AppTest, images: str) -> dict:
    at.multiselect[0].set_value(["Shapley"]).run()
    next(s for s in at.slider if s.label == "Permutations").set_value(20)
    next(r for r in at.radio if r.label == "Images per coalition").set_value(images)
    at.run()
    if images == "a subset":
        next(n for n in at.number_input if n.label == "Images").set_value(120)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("Shapley"))


def test_rankings_page_evaluates_coalitions_on_an_image_subset_and_says_what_it_cost(model, digits_val):
    at = open_page("pages/rankings.py", layer="conv2")
    bar = _compute_sampled_shapley(at, "a subset")
    assert bar["layout"]["title"]["text"] == "Shapley (sampled, 20 perms, 120 images) — conv2"
    expected = core.rank(model, digits_val, "conv2", "shapley", samples=20, subset=120)
    assert expected.cached and bar["data"][0]["x"] == [f"unit {i}" for i in expected.order()]
    captions = " ".join(c.value for c in at.caption)
    assert "Each pair on 120 random images" in captions and "from the permutations" in captions
    assert f"instead of {expected.extra['full_image_evaluations']:,}" in captions


def test_rankings_page_runs_sampled_shapley_on_the_ray_cluster_in_ray_address(model, digits_val, monkeypatch,
                                                                           local_ray):
    monkeypatch.setenv("RAY_ADDRESS", local_ray.get_runtime_context().gcs_address)
    at = open_page("pages/rankings.py", layer="conv1")
    at.multiselect[0].set_value(["Shapley"]).run()
    assert "runs on the Ray cluster at" in " ".join(c.value for c in at.caption)
    next(s for s in at.slider if s.label == "Permutations").set_value(30)
    at.number_input(key="shapley_seed").set_value(977)  # a seed no other test uses: never a cache hit
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "computed on 2 Ray workers" in " ".join(c.value for c in at.caption)
    bar = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("Shapley"))
    local = core.rank(model, digits_val, "conv1", "shapley", samples=30, seed=977, cache=False)
    assert bar["data"][0]["x"] == [f"unit {i}" for i in local.order()]
    curves = open_page("pages/curves.py", layer="conv1")  # its engine calls go to the same cluster
    assert len(charts(curves)) >= 1 and not curves.warning


def test_rankings_page_computes_the_semivalues_with_their_options(model, digits_val):
    """Issue 19: Banzhaf (exact here on conv1), Beta-Shapley (alpha, beta, sampled with error bars) and
    leave-one-out are computed on the page and equal core.rank's."""
    at = open_page("pages/rankings.py", layer="conv1")
    at.multiselect[0].set_value(["Banzhaf", "Beta-Shapley", "Leave-one-out"])
    at.run()
    next(r for r in at.radio if r.key == "Banzhaf_estimator").set_value("exact")
    next(n for n in at.number_input if n.key == "beta_beta").set_value(8.0)
    next(s for s in at.slider if s.key == "beta_samples").set_value(30)
    at.run()
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    bars = {c["layout"]["title"]["text"]: c for c in charts(at)}
    beta = core.rank(model, digits_val, "conv1", "beta_shapley", beta=8.0, samples=30)
    assert beta.cached and beta.label == "Beta-Shapley (α=1, β=8, sampled, 30 draws)"
    assert bars[f"{beta.label} — conv1"]["data"][0]["x"] == [f"unit {i}" for i in beta.order()]
    assert bars[f"{beta.label} — conv1"]["data"][0]["error_y"]["visible"]
    exact = core.rank(model, digits_val, "conv1", "banzhaf", estimator="exact")
    assert exact.cached and f"{exact.label} — conv1" in bars and "Leave-one-out — conv1" in bars
    assert any("30 draws" in c.value for c in at.caption)
