"""AppTest of the Compress page: plan, a short background fine-tuning job, cancel, the comparison table."""
from __future__ import annotations

import time

import core
from core.rankings import weights_digest
from tests.conftest import open_page

PAGE = "pages/compress.py"


def metric(at, label: str) -> str:
    return next(m for m in at.metric if m.label == label).value


def job_of(at):
    return at.session_state["_jobs"]["compress"]


def run_until(at, done, timeout: float = 120.0) -> None:
    """Rerun the page (as the browser's fragment timer would) until ``done()``."""
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        time.sleep(0.5)
        at.run()
    assert done()


def test_plan_fine_tune_and_compare(model):
    before = weights_digest(model)
    at = open_page(PAGE)
    assert at.title[0].value == "Compress"
    at.text_input(key="compress_widths").set_value("5-7-45-20").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, "Kept widths") == "5-7-45-20"
    assert metric(at, "Parameters") == "7,227" and metric(at, "FLOPs (multiply-adds)") == "134,140"
    plan_table = at.table[0].value
    assert list(plan_table["kept"]) == [5, 7, 45, 20] and list(plan_table["removed"]) == [5, 13, 55, 5]
    masked = core.Engine(model, core.load_dataset("digits", "test")).evaluate(  # the comparison table's split
        core.plan_from_widths(model, "5-7-45-20", core.layer_rankings(model, core.load_dataset("digits", "val"))).off)
    assert metric(at, "Accuracy after pruning") == f"{masked.accuracy:.2%}"

    at.number_input(key="compress_epochs").set_value(1)
    at.selectbox(key="compress_track_layer").set_value("conv2")
    at.button(key="compress_start").click().run()
    assert job_of(at).wait(120)
    run_until(at, lambda: len(at.table) >= 2)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert job_of(at).status == "done"
    assert any("Fine-tuning finished" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 1  # the recovery curve (paper B Fig. 6)
    table = at.table[1].value
    assert list(table["kept widths"]) == ["5-7-45-20"] and list(table["params"]) == ["7,227"]
    row = job_of(at).result["result"].row
    assert row.accuracy_finetuned > row.accuracy_pruned
    assert list(table["after fine-tuning"]) == [f"{row.accuracy_finetuned:.2%}"]
    assert len(job_of(at).result["files"]["checkpoint"]) > 1000 and job_of(at).result["files"]["onnx_diff"] <= 1e-4
    frames = [img.caption for e in at.get("image") for img in e.proto.imgs]
    assert frames and frames[0].startswith("it 0: drift 0.00")
    assert weights_digest(model) == before  # the shared cached model is untouched

    # the same settings again: the finished result is reused at once
    at.button(key="compress_start").click().run()
    assert job_of(at).stats.get("cached") is True
    assert any("cached result" in s.value for s in at.success)


def test_cancel_stops_the_job_and_keeps_nothing():
    at = open_page(PAGE)
    at.text_input(key="compress_widths").set_value("3-5-20-10").run()
    at.number_input(key="compress_epochs").set_value(200)
    at.button(key="compress_start").click().run()
    job = job_of(at)
    assert job.running
    at.button(key="compress_cancel").click().run()
    assert job.wait(60) and job.status == "cancelled" and job.result is None
    at.run()
    assert any("cancelled" in w.value for w in at.warning)
    assert len(at.table) == 1  # the plan only: no comparison row, no download buttons
    assert not at.get("download_button")


def listed(units, limit: int = 120) -> str:
    """The page's 'units removed' cell: the list, cut at a whole number past ``limit`` characters."""
    text = ", ".join(map(str, units))
    return text if len(text) <= limit else text[:text.rfind(", ", 0, limit)] + f", … ({len(units)} in all)"


def test_compress_uses_the_sessions_newest_ranking_with_one_setting_in_every_layer_and_says_which(model):
    """Issue 23 item 8: a ranking computed on the Rankings page after the Compress page's first run is used
    (the same setting in every layer) and the caption names what was used."""
    at = open_page(PAGE)
    at.selectbox(key="compress_method").set_value("Random").run()
    assert any("Random (seed 0) (the same settings in every layer)" in c.value for c in at.caption)
    val = core.load_dataset("digits", "val")
    store = at.session_state["rankings"]
    model_key, dataset = next(iter(store))[:2]
    newer = {layer: core.rank(model, val, layer, "random", seed=7) for layer in core.network.models.layer_names(model)}
    for layer, ranking in newer.items():
        store.setdefault((model_key, dataset, layer), {})[ranking.label] = ranking
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Random (seed 7) (the same settings in every layer)" in c.value for c in at.caption)
    expected = core.plan_from_widths(model, "5-10-50-12", newer)
    assert list(at.table[0].value["removed"]) == [len(expected.off[l]) for l in expected.units]
    assert list(at.table[0].value["units removed"]) == [listed(expected.off[l]) for l in expected.units]
    # only one layer has seed 3: settings are never mixed across layers (seed 7 stays)
    store[(model_key, dataset, "conv1")]["Random (seed 3)"] = core.rank(model, val, "conv1", "random", seed=3)
    at.run()
    assert any("Random (seed 7) (the same settings in every layer)" in c.value for c in at.caption)


def test_pr_plan_shows_layer_costs_and_the_whole_plans_cost_on_the_comparison_split(model):
    """Issue 23 item 4: the Pr rule's crossing is a choice, and the accuracy after pruning is on the test split
    (the comparison table's) beside the per-layer costs of the search (validation)."""
    at = open_page(PAGE)
    at.radio(key="compress_rule").set_value("Pr per layer (paper B)").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    val, test = core.load_dataset("digits", "val"), core.load_dataset("digits", "test")
    engine = core.Engine(model, val)
    plan = core.plan_from_pr(engine, core.layer_rankings(model, val, engine=engine), 0.5)
    assert plan.details["crossing"] == "first"
    assert any("Pr rule: **first crossing**" in c.value for c in at.caption)
    pruned = core.Engine(model, test).evaluate(plan.off).accuracy
    assert metric(at, "Accuracy after pruning") == f"{pruned:.2%}"
    table = at.table[0].value
    assert list(table["cost alone (val pts)"]) == [round(plan.details["layers"][l]["cost_points"], 3) for l in plan.units]
    assert any("whole plan" in c.value and "on the test split" in c.value for c in at.caption)
    at.radio(key="compress_crossing").set_value("largest within Pr").run()
    assert any("Pr rule: **largest within Pr**" in c.value for c in at.caption)
    at.radio(key="compress_rule").set_value("FLOPs budget").run()
    assert any("cross-layer order: **normalized**" in c.value for c in at.caption)  # L1: auto -> normalized


def test_a_cluster_aware_plan_uses_every_layers_clusters_at_the_am_defaults(model):
    """Cluster-aware: the clusters of every layer (computed in a compute slot at the other pages' AM defaults,
    256 steps on LeNet) give the plan core gives with the same clusters."""
    at = open_page(PAGE)
    at.text_input(key="compress_widths").set_value("5-10-50-20").run()
    at.checkbox(key="compress_clusters").check().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    val = core.load_dataset("digits", "val")
    clusters = core.layer_clusters(model, val, steps=256)  # the disk cache: the page's own clusters
    plan = core.plan_from_widths(model, "5-10-50-20", None, clusters)
    assert list(at.table[0].value["kept"]) == [5, 10, 50, 20]
    masked = core.Engine(model, core.load_dataset("digits", "test")).evaluate(plan.off)
    assert metric(at, "Accuracy after pruning") == f"{masked.accuracy:.2%}"
