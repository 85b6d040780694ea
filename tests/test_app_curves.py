"""AppTest of the Pruning curves page: methods, seeds, carrying a mask to Live toggles, all layers, sensitivity."""
from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

import core
from tests.conftest import open_page


def charts(at: AppTest) -> list[dict]:
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def values(v) -> np.ndarray:
    """A plotly array from the chart JSON: a list, or plotly's typed-array form {"dtype", "bdata"[, "shape"]}."""
    if isinstance(v, dict):
        array = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return array.reshape([int(d) for d in str(v["shape"]).split(",")]) if "shape" in v else array
    return np.array(v)


def ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_curves_page_methods_seeds_and_carry_to_live_toggles(model, digits_val, digits_test):
    at = open_page("pages/curves.py", layer="conv2")
    assert at.title[0].value == "Pruning curves"
    names = [t["name"] for t in charts(at)[0]["data"]]
    assert names == ["random max", "random band (min-max of 5 seeds)", "Random (mean of 5 seeds)", "L1 norm",
                     "Shapley (sampled, 50 perms)"]  # small layers: Shapley by default

    methods = next(m for m in at.multiselect if m.label == "Methods")
    methods.set_value(["L1 norm", "Taylor (grad x act)"])  # computed on demand
    next(s for s in at.slider if s.label == "Random seeds").set_value(7)
    at.run()
    ok(at)
    figure = charts(at)[0]
    names = [t["name"] for t in figure["data"]]
    assert "random band (min-max of 7 seeds)" in names and "Taylor (grad x act)" in names
    test_engine = core.Engine(model, digits_test)
    taylor = core.rank(model, digits_val, "conv2", "taylor")
    line = next(t for t in figure["data"] if t["name"] == "Taylor (grad x act)")
    expected = core.layer_curve(test_engine, "conv2", taylor)
    assert np.allclose(values(line["y"]), expected.accuracy * 100, atol=1e-7)  # the test split, every point
    band = core.random_band(test_engine, "conv2", seeds=7)
    assert np.allclose(values(figure["data"][0]["y"]), band.hi * 100) and np.allclose(values(figure["data"][1]["y"]), band.lo * 100)
    summary = at.table[0].value
    assert list(summary["method"]) == ["L1 norm", "Taylor (grad x act)", "Random (mean of 7 seeds)"]

    next(s for s in at.selectbox if s.label == "Curve").set_value("Taylor (grad x act)")
    next(n for n in at.number_input if n.label == "Units removed (n)").set_value(4)
    at.run()
    ok(at)
    next(b for b in at.button if b.label == "Open in Live toggles").click()
    at.run()
    ok(at)
    assert at.title[0].value == "Live toggles — conv2"
    off = sorted(taylor.lowest(4))
    assert [i for i, t in enumerate(at.toggle) if not t.value] == off
    shown = next(m for m in at.metric if m.label.startswith("Accuracy")).value
    assert shown == f"{test_engine.evaluate({'conv2': off}).accuracy:.2%}" == f"{expected.accuracy[4]:.2%}"
    ranking_box = next(s for s in at.selectbox if s.label == "Ranking")
    assert "Taylor (grad x act)" in ranking_box.options  # the on-demand ranking is remembered for the session


def test_curves_page_other_layer_all_layers_and_sensitivity(model, digits_val):
    at = open_page("pages/curves.py", layer="conv2")
    next(s for s in at.selectbox if s.label == "Layer").set_value("fc2")
    at.run()
    ok(at)
    assert charts(at)[0]["layout"]["xaxis"]["title"]["text"] == "units removed (of 25)"
    at.checkbox(key="curves_mirror").check()
    at.run()
    ok(at)
    assert any(t["name"] == "L1 norm (most important first)" and t["line"]["dash"] == "dot" for t in charts(at)[0]["data"])
    next(s for s in at.selectbox if s.label == "Curve").set_value("L1 norm (most important first)")
    next(n for n in at.number_input if n.label == "Units removed (n)").set_value(3)
    at.run()
    l1 = core.rank(model, digits_val, "fc2", "l1")
    caption = next(c.value for c in at.caption if "units off:" in c.value)
    assert caption.endswith("units off: " + ", ".join(map(str, l1.top(3))))  # the mirror removes the top units
    next(s for s in at.selectbox if s.label == "Curve").set_value("Random (seed 3)")
    next(n for n in at.number_input if n.label == "Units removed (n)").set_value(10)
    at.run()
    next(b for b in at.button if b.label == "Open in Live toggles").click()
    at.run()
    ok(at)
    assert at.title[0].value == "Live toggles — fc2"  # the page's layer goes with the mask
    random3 = core.rank(model, digits_val, "fc2", "random", seed=3)
    assert [i for i, t in enumerate(at.toggle) if not t.value] == sorted(random3.lowest(10))

    at.switch_page("pages/curves.py")
    at.run()
    next(s for s in at.selectbox if s.label == "Layer").set_value("all layers")
    at.run()
    ok(at)
    figure = charts(at)[0]
    assert figure["layout"]["xaxis"]["title"]["text"] == "pruning rate of every layer (%)"
    line = next(t for t in figure["data"] if t["name"] == "L1 norm")
    assert values(line["x"])[0] == 0
    assert values(line["y"])[0] == core.evaluate(model, core.load_dataset("digits", "test")).accuracy * 100
    next(b for b in at.button if b.label == "Compute the sensitivity grid").click()
    at.run()
    ok(at)
    heat = charts(at)[-1]
    assert heat["data"][0]["type"] == "heatmap" and heat["data"][0]["y"] == ["conv1", "conv2", "fc1", "fc2"]
    assert values(heat["data"][0]["z"]).shape == (4, 9)  # layers x rates 10%..90%


def test_curves_page_oracle_line_report_card_and_the_semivalues(model, digits_val, digits_test):
    """Issue 19: on a small layer the oracle line is drawn by default and equals core.oracle_curve on the test
    split; the report card's gaps are the oracle minus each curve; the semivalues are offered and drawn;
    the greedy reference on a wide layer equals core.greedy_curve."""
    at = open_page("pages/curves.py", layer="conv1")
    names = [t["name"] for t in charts(at)[0]["data"]]
    assert "Oracle (best of all removals)" in names
    methods = next(m for m in at.multiselect if m.label == "Methods")
    methods.set_value(["L1 norm", "Leave-one-out", "Banzhaf (MSR, 1000 coalitions)",
                       "Beta-Shapley (α=1, β=16, sampled, 50 draws)"])
    at.run()
    ok(at)
    figure = charts(at)[0]
    test_engine = core.Engine(model, digits_test)
    oracle = core.oracle_curve(test_engine, "conv1")
    line = next(t for t in figure["data"] if t["name"] == "Oracle (best of all removals)")
    assert np.allclose(values(line["y"]), oracle.accuracy * 100, atol=1e-6)
    loo = core.rank(model, digits_val, "conv1", "loo")
    loo_curve = core.layer_curve(test_engine, "conv1", loo)
    drawn = next(t for t in figure["data"] if t["name"] == "Leave-one-out")
    assert np.allclose(values(drawn["y"]), loo_curve.accuracy * 100, atol=1e-6)
    assert {"Banzhaf (MSR, 1000 coalitions)", "Beta-Shapley (α=1, β=16, sampled, 50 draws)"} <= {t["name"] for t in figure["data"]}

    card = next(t.value for t in at.table if "mean gap (pts)" in t.value.columns)
    row = card.set_index("ranking").loc["Leave-one-out"]
    gap = (oracle.accuracy - loo_curve.accuracy)[1:-1] * 100
    assert abs(row["mean gap (pts)"] - gap.mean()) < 1e-6
    assert abs(row["largest gap (pts)"] - gap.max()) < 1e-6 and row["evaluations"] == 11
    assert card.iloc[0, 0] == "★" and any("★" in m.value and "conv1" in m.value for m in at.markdown)

    at.sidebar.selectbox(key="layer").set_value("fc2")
    at.run()
    next(r for r in at.radio if r.key == "curves_ref:fc2").set_value("greedy")
    at.run()
    ok(at)
    line = next(t for t in charts(at)[0]["data"] if t["name"] == "Greedy reference (not an upper bound)")
    assert np.allclose(values(line["y"]), core.greedy_curve(test_engine, "fc2").accuracy * 100, atol=1e-6)
