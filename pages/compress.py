"""Compress: plan which units each layer keeps, prune for real, fine-tune in the background, compare, export."""
import core  # first of all: loads the whole library at once (see explorer.py)
import dataclasses
import tempfile
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from core.interpret.am import to_pil
from core.rankings import Ranking
from ui.compute import default_am_size, default_am_steps, heavy
from ui.jobs import Job, get_job, start_job
from ui.rankings import known_rankings
from ui.explain import explain
from ui.state import Selection, friendly_errors, ray_pool, selection

METHODS = {"L1 norm": "l1", "Shapley (sampled, 20 permutations)": "shapley", "Importance switches": "switches",
           "L2 norm": "l2", "Taylor (paper B Eq. 7)": "taylor", "Mean activation": "activation", "Random": "random"}
APP_PARAMS = {"shapley": {"samples": 20}, "random": {"seed": 0}}  # used when the session has none computed
RULES = ["Typed widths", "Pr per layer (paper B)", "FLOPs budget", "Parameter budget"]
JOB = "compress"
CROSSING_NAMES = {"first": "first crossing", "largest": "largest within Pr"}  # core.plan_from_pr(crossing=)

chosen = selection()
st.title("Compress")
explain("compress")
st.caption("Plan how many units each layer keeps, remove the others for real (a smaller network with the same "
           "outputs as the masked one), fine-tune it in the background, compare and export. The model in the "
           "sidebar is shared and never changed: pruning and fine-tuning work on a copy.")


def layer_rankings(chosen: Selection, method: str) -> dict[str, Ranking]:
    """One ranking per layer, every layer with the same settings (one label): the session's newest (Rankings
    page) when it has that setting for every layer, looked up on every run; else computed for every layer
    with the page's settings (disk-cached, with a progress bar)."""
    engine = chosen.engine("val")
    known = {layer: {label: r for label, r in known_rankings(dataclasses.replace(chosen, layer=layer)).items()
                     if r.method == method} for layer in engine.layers}
    common = [label for label in reversed(list(known[engine.layers[0]])) if all(label in k for k in known.values())]
    if common:
        return {layer: known[layer][common[0]] for layer in engine.layers}
    store = st.session_state.setdefault("_compress_rankings", {})
    key = (chosen.model_key, chosen.dataset, method)
    if key not in store:
        bar = st.progress(0.0, text=f"Ranking every layer by {method}…")
        store[key] = core.layer_rankings(chosen.model, chosen.data("val"), method, engine=engine,
                                         progress=lambda d, t: bar.progress(d / t, text=f"{method}: layer {d}/{t}"),
                                         **APP_PARAMS.get(method, {}))
        bar.empty()
    return store[key]


def layer_clusters(chosen: Selection) -> dict[str, core.Clusters]:
    """Every layer's clusters at the AM defaults of the other pages (a torchvision model: 32 steps and each
    layer's own image size), in a compute slot with a bar per layer."""
    store = st.session_state.setdefault("_compress_clusters", {})
    key = (chosen.model_key, chosen.dataset)
    if key not in store:
        engine = chosen.engine("val")
        sizes = {layer: default_am_size(chosen, layer) for layer in engine.layers}
        bar = st.progress(0.0, text="Clusters of every layer (AM images, similarity, k-means)…")
        with heavy("the clusters of every layer") as work:
            store[key] = core.layer_clusters(chosen.model, chosen.data("val"), engine=engine,
                                             steps=default_am_steps(chosen), size=sizes, progress=work.progress(
                                                 lambda d, t: bar.progress(d / t, text=f"clusters: layer {d}/{t}")))
        bar.empty()
    return store[key]


def listed(units, limit: int = 120) -> str:
    """'0, 1, 2, …' cut at a whole number when the list is longer than ``limit`` characters."""
    text = ", ".join(map(str, units))
    return text if len(text) <= limit else text[:text.rfind(", ", 0, limit)] + ", … (" + str(len(units)) + " in all)"


def make_plan(rule: str, value, rankings, clusters, empty: bool, option: str) -> core.Plan:
    """``option``: the Pr rule's crossing, or the budget's cross-layer order."""
    store = st.session_state.setdefault("_compress_plans", {})
    key = (chosen.model_key, chosen.dataset, rule, value,
           tuple((l, r.label, r.scores.tobytes()) for l, r in (rankings or {}).items()), clusters is not None, empty,
           option)
    if key not in store:
        if rule == RULES[0]:
            store[key] = core.plan_from_widths(chosen.model, value, rankings, clusters, empty)
        elif rule == RULES[1]:
            with ray_pool(chosen.engine("val")) as pool:
                store[key] = core.plan_from_pr(chosen.engine("val"), rankings, value, clusters, empty, pool=pool,
                                               crossing=option)
        else:
            kind = "flops" if rule == RULES[2] else "params"
            store[key] = core.plan_from_budget(chosen.model, rankings, value, kind, clusters, empty,
                                               cross_layer=option)
    return store[key]


def fine_tune_work(model, train, val, test, plan: core.Plan, recipe: core.Recipe, eval_every: int,
                   track: tuple[str, int] | None):
    """The background job: prune a copy, fine-tune it, export both formats into memory (atomic writes)."""
    def work(job: Job) -> dict:
        result = core.compress_model(model, train, val, plan, recipe, test=test, eval_every=eval_every,
                                     track=track, am_steps=32, progress=job.report, cancel=job.cancelled)
        files = {}
        with tempfile.TemporaryDirectory() as folder:
            if core.network.models.is_staged(result.model):
                files["checkpoint"] = core.export_checkpoint(result.model, Path(folder) / "compressed.pt",
                                                             cancel=job.cancelled).read_bytes()
            path, diff = core.export_onnx(result.model, Path(folder) / "compressed.onnx", test.images[:16],
                                          cancel=job.cancelled)
            files["onnx"], files["onnx_diff"] = path.read_bytes(), diff
        return {"result": result, "files": files}
    return work


with friendly_errors():
    engine = chosen.engine("val")
    totals = core.model_totals(chosen.model)
    widths_now = "-".join(str(engine.units(l)) for l in engine.layers)

    st.subheader("1. Plan")
    left, mid, right = st.columns([2, 2, 2])
    rule = left.radio("Plan by", RULES, key="compress_rule",
                      help="Typed widths: kept units per layer. Pr: paper B's layer level — each layer loses the "
                           "most units whose removal (that layer alone, no retraining) costs at most Pr accuracy "
                           "points. Budget: remove the least important units across layers (the cross-layer order "
                           "below says how scores of different layers are compared) until the share is reached.")
    if rule == RULES[0]:
        half = "-".join(str(max(1, engine.units(l) // 2)) for l in engine.layers)
        value = mid.text_input("Kept widths", value=half, key="compress_widths",
                               help=f"One number per prunable layer, separated by '-'. Now: {widths_now}")
    elif rule == RULES[1]:
        value = mid.number_input("Pr: tolerated drop per layer (accuracy points)", 0.0, 100.0, 0.5, 0.25,
                                 key="compress_pr")
    else:
        value = mid.slider("Share to keep", 0.05, 1.0, 0.5, 0.05, key="compress_share")
    option = ""
    if rule == RULES[1]:
        option = {name: key for key, name in CROSSING_NAMES.items()}[mid.radio(
            "Units removed per layer", list(CROSSING_NAMES.values()), horizontal=True, key="compress_crossing",
            help="First crossing: the count just before the layer's cost curve first exceeds Pr. Largest within "
                 "Pr: the largest count anywhere on the curve within Pr (a noisy curve's luckiest point).")]
    elif rule in RULES[2:]:
        option = mid.selectbox("Cross-layer order", ["auto", "raw", "normalized"], key="compress_cross_layer",
                               help="raw: the scores as they are (Shapley values are accuracy points of the whole "
                                    "network, one scale in every layer); normalized: each layer's scores shifted to 0 "
                                    "and divided by its mean (every layer loses its lowest unit before any loses a "
                                    "second); auto: raw for Shapley, normalized otherwise.")
    method_label = right.selectbox("Ranking", list(METHODS), key="compress_method",
                                   help="Which units go inside a layer: the lowest of this ranking (not used "
                                        "when cluster-aware). Rankings computed on the Rankings page are reused.")
    cluster_aware = right.checkbox("Cluster-aware (paper B)", key="compress_clusters",
                                   help="Each cluster of similar filters gives a share proportional to its size, "
                                        "lowest contribution index first; singleton (locked) filters stay. The "
                                        "clusters of every layer are computed first (as on Similar filters): on a "
                                        "torchvision model about a minute per layer on one CPU thread (ResNet-18: "
                                        "20 layers).")
    empty = right.checkbox("Allow emptying whole clusters", key="compress_empty", disabled=not cluster_aware,
                           help="Paper B's 'prune B': in wide layers whole clusters may go (said below).")

    clusters = layer_clusters(chosen) if cluster_aware else None
    rankings = None if cluster_aware else layer_rankings(chosen, METHODS[method_label])  # clusters need none
    plan = make_plan(rule, value, rankings, clusters, empty and cluster_aware, option)
    used = plan.method if cluster_aware else f"{plan.method} (the same settings in every layer)"
    st.caption(f"Units go by: **{used}**"
               + (f" · cross-layer order: **{plan.details['cross_layer']}**" if "cross_layer" in plan.details else "")
               + (f" · Pr rule: **{CROSSING_NAMES[plan.details['crossing']]}**" if "crossing" in plan.details else ""))
    groups = engine.coupled_groups()
    if groups:
        st.info("Coupled layers (their channels meet in a residual add, so a unit can only go from all of them "
                "at once; masking one here masks the whole group, and pruning removes it from the group): "
                + "; ".join(" + ".join(g) for g in groups))

    test_engine = chosen.engine("test")  # the split of the comparison table below
    masked = test_engine.evaluate(plan.off)  # the masked network = the pruned one (tested)
    pruned_totals = core.pruning.budgets.totals_for_widths(chosen.model, list(plan.widths.values())) \
        if core.network.models.is_staged(chosen.model) else core.model_totals(core.prune(chosen.model, plan))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Kept widths", plan.widths_string(), help=f"Original: {widths_now}")
    m2.metric("Parameters", f"{pruned_totals['params']:,}",
              f"{pruned_totals['params'] / totals['params'] - 1:+.1%}", delta_color="off")
    m3.metric("FLOPs (multiply-adds)", f"{pruned_totals['flops']:,}",
              f"{pruned_totals['flops'] / totals['flops'] - 1:+.1%}", delta_color="off")
    base = test_engine.evaluate().accuracy
    m4.metric("Accuracy after pruning", f"{masked.accuracy:.2%}", f"{(masked.accuracy - base) * 100:+.2f} pts",
              help="On the test split (the comparison table's), before any fine-tuning.")
    costs = plan.details.get("layers", {})
    if "plan_accuracy" in plan.details:
        st.caption(f"Pr search on the validation split: each layer's cost alone is in the table; the whole plan "
                   f"(all layers together, no retraining) costs "
                   f"{(plan.details['base_accuracy'] - plan.details['plan_accuracy']) * 100:+.2f} pts there "
                   f"and {(base - masked.accuracy) * 100:+.2f} pts on the test split (the comparison table's).")
    table = [{"layer": " + ".join(members), "units": plan.units[members[0]], "kept": plan.widths[members[0]],
              "removed": len(plan.off.get(members[0], [])),
              **({"cost alone (val pts)": round(costs[members[0]]["cost_points"], 3)} if members[0] in costs else {}),
              "units removed": listed(plan.off.get(members[0], []))}
             for members in plan.planning_units()]  # a coupled group is one row: its members keep the same units
    st.table(table, hide_index=True)  # plain tables wrap long cells: they fit 1280 px with the sidebar open
    for note in plan.notes:
        st.warning(note)

    st.subheader("2. Fine-tune (background job)")
    a, b, c, d = st.columns(4)
    recipe_name = a.selectbox("Recipe", list(core.RECIPES), key="compress_recipe",
                              help="paper-a: SGD momentum 0.9, wd 5e-4, lr 0.1 → 0.001, early stopping on "
                                   "validation. paper-b: constant lr 0.001, 20 epochs, flip + crop on CIFAR-style data.")
    preset = core.RECIPES[recipe_name]
    epochs = b.number_input("Epochs", 1, 200, min(preset.epochs, 5), key="compress_epochs")
    lr = c.number_input("Learning rate", 1e-5, 1.0, preset.lr, format="%.4f", key=f"compress_lr_{recipe_name}")
    eval_every = d.number_input("Record accuracy every N iterations", 1, 10_000, 10, key="compress_every")
    kept = {layer: [u for u in range(units) if u not in plan.off.get(layer, [])] for layer, units in plan.units.items()}
    e, f = st.columns(2)
    track_layer = e.selectbox("Follow one kept unit's AM image (paper B Figs. 7-8): layer",
                              ["(none)"] + list(kept), index=min(2, len(kept)), key="compress_track_layer")
    track = None
    if track_layer != "(none)":
        unit = f.selectbox("unit (original index)", kept[track_layer], key=f"compress_track_unit_{track_layer}")
        track = (track_layer, int(unit))
    recipe = core.make_recipe(recipe_name, epochs=int(epochs), lr=float(lr))
    key = (chosen.model_key, chosen.dataset, plan.widths_string(), plan.method, plan.rule, str(plan.target),
           plan.cluster_aware, recipe, int(eval_every), track)
    job = get_job(JOB)
    start, stop = st.columns([1, 1])
    if start.button("Start fine-tuning", type="primary", disabled=bool(job and job.running), key="compress_start"):
        job = start_job(JOB, key, fine_tune_work(chosen.model, chosen.data("train"), chosen.data("val"),
                                                 chosen.data("test"), plan, recipe, int(eval_every), track))
    if stop.button("Cancel", disabled=not (job and job.running), key="compress_cancel"):
        job.cancel()
        stopped = job.wait(30)


@st.fragment(run_every=1.0 if (get_job(JOB) and get_job(JOB).running) else None)
def job_panel() -> None:
    """Progress of the background job; reruns itself every second while it runs."""
    job = get_job(JOB)
    if job is None:
        st.caption("No fine-tuning job yet in this session.")
        return
    if job.running and job.queued_ahead:  # the compute policy: one fine-tune at a time on this server
        st.info(f"Queued: {job.queued_ahead} fine-tuning job(s) ahead of yours on this server; it starts when they "
                "finish.", icon=":material/hourglass_top:")
    elif job.running:
        st.progress(job.fraction, text=f"Fine-tuning: iteration {job.done} of {job.total or '…'}"
                    + (f" — validation accuracy {job.stats['val_accuracy']:.2%}" if "val_accuracy" in job.stats else ""))
    elif job.status == "cancelled":
        st.warning("Fine-tuning was cancelled; nothing was kept or written.")
    elif job.status == "failed":
        st.error(f"Fine-tuning failed: {job.error}")
    else:
        st.success("Fine-tuning finished" + (" (cached result for these settings)" if job.stats.get("cached") else "")
                   + ".")
    curves = st.session_state.setdefault("_compress_histories", {})
    if job.status == "done":
        row = job.result["result"].row
        curves[job.key] = (f"{row.method} → {row.widths}", job.result["result"].finetune.history)
    shown = [(label, h) for k, (label, h) in curves.items() if k[:2] == job.key[:2]]
    if job.running and job.history:
        shown.append(("running", job.history))
    if shown:  # every finished run of this model: compare recoveries (e.g. cluster-aware vs L1 at the same rate)
        figure = go.Figure([go.Scatter(x=[h["iteration"] for h in history], y=[h["val_accuracy"] for h in history],
                                       mode="lines+markers", name=label) for label, history in shown])
        figure.update_layout(title="Accuracy recovery while fine-tuning (paper B Fig. 6)", height=320,
                             xaxis_title="iteration", yaxis_title="validation accuracy", margin=dict(t=40, b=40),
                             legend=dict(orientation="h", y=-0.3))
        st.plotly_chart(figure, width="stretch", key="compress_recovery")
    if job.status == "done":
        tuned = job.result["result"].finetune
        if tuned.am_frames:
            original = job.key[-1][1] if job.key[-1] else tuned.tracked[1]
            st.markdown(f"**AM image of {tuned.tracked[0]} unit {original} (unit {tuned.tracked[1]} of the pruned "
                        f"layer) while fine-tuning** — drift from iteration 0 (AM pattern distance: 0 = same "
                        f"pattern, 2 = opposite). Paper B Figs. 7-8: does the filter keep its function? AM's own noise "
                        f"(two seeds on the same weights): {tuned.drift_floor:.2f}.")
            columns = st.columns(min(8, len(tuned.am_frames)))
            step = max(1, len(tuned.am_frames) // len(columns))
            for column, i in zip(columns, range(0, len(tuned.am_frames), step)):
                iteration, image = tuned.am_frames[i]
                column.image(to_pil(image), caption=f"it {iteration}: drift {tuned.drift[i]:.2f}")
        rows = st.session_state.setdefault("_compress_rows", {})
        rows[job.key] = job.result["result"].row
    if job.finished and not job.running and st.session_state.get("_compress_shown") != (job.key, job.status):
        st.session_state["_compress_shown"] = (job.key, job.status)
        st.rerun()  # once, so the comparison table below shows the finished row


with friendly_errors():
    job_panel()
    st.subheader("3. Compare and export")
    rows = [r for k, r in st.session_state.get("_compress_rows", {}).items() if k[:2] == (chosen.model_key, chosen.dataset)]
    if not rows:
        st.caption("Finished fine-tuning runs appear here, one row each (paper A Table 2 / paper B Tables 1-4).")
    else:
        st.table(core.pruning.report.report_table(rows), hide_index=True)
        st.caption("FLOPs are multiply-adds per image (torch's FlopCounterMode counts each as 2 FLOPs). Accuracies "
                   "on the test split; fine-tuning's early stopping uses the validation split.")
        x, y = st.columns(2)
        x.download_button("Table as CSV", core.report_csv(rows), "compression.csv", "text/csv", key="compress_csv")
        y.download_button("Table as Markdown", core.report_markdown(rows), "compression.md", "text/markdown",
                          key="compress_md")
    job = get_job(JOB)
    if job is not None and job.status == "done":
        files = job.result["files"]
        p, q = st.columns(2)
        if "checkpoint" in files:
            p.download_button("Download checkpoint (.pt)", files["checkpoint"], "compressed.pt",
                              key="compress_dl_pt", help="Loads back in the sidebar (Upload) and the CLI; "
                                                        "metadata: parent hash, widths, method, plan, recipe, accuracies.")
        q.download_button("Download ONNX", files["onnx"], "compressed.onnx", key="compress_dl_onnx",
                          help=f"Checked with onnxruntime: largest logit difference {files['onnx_diff']:.1e}.")
