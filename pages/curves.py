"""Pruning curves: accuracy after removing the least important units, by each ranking, against random."""
import core  # first of all: loads the whole library at once (see explorer.py)
import hashlib
from dataclasses import replace

import numpy as np
import streamlit as st

from core.pruning.curve_sets import ALL_LAYERS, curve_set
from core.pruning.curves import MAX_SEEDS, MIN_SEEDS
from core.pruning.curve_plots import MIRROR_SUFFIX, curves_figure, sensitivity_figure
from core.pruning.network_curves import network_curves, sensitivity_grid
from core.pruning.oracle import ORACLE_LIMIT, greedy_evaluations, reference_curve
from core.pruning.report_card import report_card
from core.rankings import METHODS, method_params, rank, ran_label
from ui.rankings import known_rankings, remember_ranking
from ui.compute import heavy
from ui.explain import explain
from ui.state import friendly_errors, ray_pool, selection

# computed on demand when picked (the Rankings page offers every parameter; these are quick defaults)
ON_DEMAND = [("shapley", {"samples": 50}), ("switches", {}), ("l2", {}), ("taylor", {}), ("activation", {}),
             ("loo", {}), ("banzhaf", {"samples": 1000}), ("beta_shapley", {"samples": 50})]
QUICK_ORACLE = 12  # the oracle is drawn by default up to 2^12 coalitions (seconds); 13-20 units take minutes
MAX_SEEDS_HERE = min(MAX_SEEDS, 30)
GENERIC_POINTS = 9  # removal counts per curve on a torchvision model: 6 curves x 9 passes of ~1 s, about a minute
DEFAULT_SHAPLEY_UNITS = 32  # small layers get Shapley by default (about a second); wider ones on request

chosen = selection()  # draws the sidebar; stops the page when nothing usable is chosen


def progress_callback(bar, what: str):
    def report(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(1, total)), text=f"{what}: {done:,}/{total:,}")
    return report


def memo(key: tuple, compute):
    """Per-session memory of computed curves: clicking a point or changing a widget does not recompute."""
    store = st.session_state.setdefault("_curves_memo", {})
    if key not in store:
        if len(store) > 24:
            store.pop(next(iter(store)))
        store[key] = compute()
    return store[key]


def on_demand(engine) -> dict[str, tuple[str, dict]]:
    """label -> (method, params) of the rankings this page computes when picked (labels as core.rank gives them)."""
    return {ran_label(METHODS[m], method_params(m, p, engine)): (m, p) for m, p in ON_DEMAND}


def method_entries(layer_chosen, picked: list[str], session: dict, offered: dict) -> list:
    """Rankings for the picked labels: session rankings as they are, on-demand ones computed now (and
    remembered for the other pages)."""
    entries = []
    todo = [label for label in picked if label not in session]
    bar = st.progress(0.0, text="computing rankings…") if todo else None
    for number, label in enumerate(picked):
        if label in session:
            entries.append(session[label])
            continue
        method, params = offered[label]
        engine = layer_chosen.engine("val")

        def report(done: int, total: int, number=todo.index(label), label=label) -> None:
            bar.progress((number + min(1.0, done / max(1, total))) / len(todo), text=f"{label}: {done:,}/{total:,}")
        with heavy(label) as work:
            ranking = rank(layer_chosen.model, engine.data, layer_chosen.layer, method, progress=work.progress(report),
                           engine=engine, **params)
        remember_ranking(layer_chosen, ranking)
        entries.append(ranking)
    if bar is not None:
        bar.empty()
    return entries


def layer_curves(engine, layer: str, entries: list, seeds: int, direction: str):
    """One layer's curves in a compute slot (stopped by Stop, a rerun or a closed tab); on a torchvision model
    at GENERIC_POINTS removal counts (each point is a full pass per curve), else at every count."""
    counts = None
    if not engine.staged:
        counts = sorted({int(round(n)) for n in np.linspace(0, engine.units(layer), GENERIC_POINTS)})
    with heavy("the pruning curves"):
        return on_cluster(curve_set, engine, layer, entries, seeds=seeds, direction=direction, counts=counts)


def as_method_spec(entry) -> tuple[str, dict]:
    return entry.method, dict(entry.params)


def per_layer_methods(entries: list) -> list:
    """For whole-network curves and the sensitivity grid: each ranking's method and parameters, applied
    to every layer (computed on the validation split, disk-cached)."""
    return [as_method_spec(e) for e in entries]


def on_cluster(evaluate, engine, *args, **kwargs):
    """``evaluate(engine, ...)`` with its engine calls on the Ray cluster in RAY_ADDRESS when there is one."""
    with ray_pool(engine) as pool:
        return evaluate(engine, *args, pool=pool, **kwargs)


def across_layers(kind: str, evaluate, what: str, engine, entries: list, seeds: int, direction: str):
    """(memo key, compute) of a result over every layer (whole-network curves or the sensitivity grid): each
    ranking's method and parameters applied to every layer, then ``evaluate``d, with a progress bar."""
    specs = per_layer_methods(entries)
    key = (kind, chosen.model_key, engine.data.key, tuple((m, tuple(sorted(p.items()))) for m, p in specs),
           seeds, direction)

    def compute():
        bar = st.progress(0.0, text="ranking every layer…")
        with heavy(what) as work:
            per_layer = rankings_by_layer(specs, bar)
            result = on_cluster(evaluate, engine, per_layer, seeds=seeds, direction=direction,
                                progress=work.progress(progress_callback(bar, what)))
        bar.empty()
        return result
    return key, compute


def rankings_by_layer(specs: list[tuple[str, dict]], bar) -> list[dict]:
    layers = chosen.engine("val").layers
    out = [{} for _ in specs]
    total = len(layers) * len(specs)
    for j, layer in enumerate(layers):
        here = replace(chosen, layer=layer)
        for i, (method, params) in enumerate(specs):
            engine = here.engine("val")

            def report(done: int, count: int, step=j * len(specs) + i) -> None:
                bar.progress((step + min(1.0, done / max(1, count))) / total,
                             text=f"ranking {layer} by {method}: {done:,}/{count:,}")
            out[i][layer] = rank(here.model, engine.data, layer, method, progress=report, engine=engine, **params)
    return out


def carry(layer: str, units_off: list[int]) -> None:
    """Open the Live toggles page with these units of ``layer`` off."""
    chosen.set_units_off(units_off, layer)
    if layer != chosen.layer:
        st.session_state["_keep:layer"] = layer
    st.switch_page("pages/toggle.py")


with friendly_errors():
    layers = chosen.engine("val").layers
    st.title("Pruning curves")
    explain("curves")
    st.caption("Rankings are computed on the validation split, curves measured on the split chosen here. Grey band: "
               "lowest to highest accuracy over the random removal orders (one per seed); dashed: their mean. "
               "Hover a point for the units it removes; click it to carry that mask to Live toggles.")
    top = st.columns([1.3, 1, 1, 1])
    scope = top[0].selectbox("Layer", [*layers, ALL_LAYERS], index=layers.index(chosen.layer),
                             help="'all layers' prunes every prunable layer at the same rate at once (paper B Fig. 5).")
    split = top[1].radio("Evaluate on", ["test", "val"], horizontal=True,
                         help="Rankings are always computed on the validation split.")
    seeds = top[2].slider("Random seeds", MIN_SEEDS, MAX_SEEDS_HERE, 5,
                          help="Random removal orders drawn for the band (at least 5).")
    direction = top[3].radio("Remove first", ["least", "most"], horizontal=True,
                             format_func={"least": "least important", "most": "most important (mirror)"}.get,
                             help="The mirror curve (most important first) shows how concentrated the layer's "
                                  "function is.")

    here = replace(chosen, layer=scope if scope != ALL_LAYERS else chosen.layer)
    reference = None
    if scope != ALL_LAYERS and direction == "least":
        units_here = here.units()
        choices = ["none", "greedy"] + (["oracle"] if units_here <= ORACLE_LIMIT else [])
        default_ref = "oracle" if units_here <= QUICK_ORACLE else "none"  # wider: picked (minutes, or greedy)
        picked_ref = st.radio(
            "Reference line", choices, index=choices.index(default_ref), horizontal=True, key=f"curves_ref:{scope}",
            format_func={"none": "none", "greedy": "greedy (not an upper bound)",
                         "oracle": "oracle: best of all removals"}.get,
            help=f"oracle: for each n, the highest accuracy over every way of removing n units (all 2^{units_here} "
                 f"coalitions, up to {ORACLE_LIMIT} units; above {QUICK_ORACLE} units this takes minutes once, then "
                 f"it is cached). greedy: remove, at each step, the unit whose removal costs least "
                 f"({greedy_evaluations(units_here):,} evaluations).")
        reference = None if picked_ref == "none" else picked_ref
    session = known_rankings(here)
    offered = on_demand(here.engine("val"))
    options = [label for label in session if label not in offered] + list(offered)  # stable as rankings get computed
    default = list(session)
    quick_shapley = next(label for label, (m, _) in offered.items() if m == "shapley")
    if here.units() <= DEFAULT_SHAPLEY_UNITS and not any(r.method == "shapley" for r in session.values()):
        default.append(quick_shapley)  # paper A's question out of the box: Shapley vs L1 vs random
    picked = st.multiselect("Methods", options, default=default, key=f"curves_methods:{here.layer}",
                            help="Every ranking computed on the Rankings page for this layer, L1 always; the others "
                                 "are computed here when picked (progress bar). Random is always drawn as the band.")
    if not picked:
        st.info("Pick at least one method; random is drawn as the band.")
        st.stop()
    entries = method_entries(here, picked, session, offered)
    engine = chosen.engine(split)

    if scope == ALL_LAYERS:
        key, compute = across_layers("network", network_curves, "evaluating pruned networks", engine, entries,
                                     seeds, direction)
        result = memo(key, compute)
    else:
        key = ("layer", chosen.model_key, engine.data.key, scope,
               tuple((e.label, hashlib.sha256(e.scores.tobytes()).hexdigest()) for e in entries), seeds, direction)
        result = memo(key, lambda: layer_curves(engine, scope, entries, seeds, direction))
        if reference is not None:
            def compute_reference():
                bar = st.progress(0.0, text=f"{reference} reference…")
                with heavy(f"the {reference} reference"):
                    curve = reference_curve(engine, scope, reference,
                                            progress=progress_callback(bar, f"{reference} reference"))
                bar.empty()
                return curve
            ref_curve = memo(("reference", chosen.model_key, engine.data.key, scope, reference), compute_reference)
            result = replace(result, reference=ref_curve)

    mirror = None
    if scope != ALL_LAYERS and direction == "least" and st.checkbox(
            "Overlay the mirror curves (most important removed first, dotted)", key="curves_mirror"):
        mirror = memo(key[:-1] + ("most",), lambda: layer_curves(engine, scope, entries, seeds, "most"))
    event = st.plotly_chart(curves_figure(result, mirror), width="stretch", key="curves_chart", on_select="rerun",
                            selection_mode="points")
    st.markdown("**Summary** — area: mean accuracy over the removal range (higher = the ranking keeps more); "
                "max rate within 1 pt: how much can go before accuracy drops more than 1 point; above/below "
                "band: points outside the random band.")
    summary = result.summary()
    for column, style in (("area", "{:.3f}"), (summary.columns[2], "{:.0%}"), ("first above band", "{:.0%}")):
        summary[column] = [style.format(v) if v == v else "—" for v in summary[column]]  # NaN: never
    st.table(summary, hide_index=True)  # a plain table: its cells wrap, so it fits 1280 px with the sidebar open

    if scope != ALL_LAYERS and result.reference is not None:
        st.subheader("Report card: how close each ranking comes to the reference")
        st.caption(f"Gaps in accuracy points to **{result.reference.label}**, over the interior points (0 < n < "
                   f"{result.units}), on the {split} split; units within 1 pt: removable before accuracy drops more "
                   "than 1 point; Spearman against exact Shapley when it is among the rankings; evaluations and "
                   "seconds the ranking cost.")
        stability = st.checkbox("Stability over seeds (each sampled ranking recomputed with 3 more seeds)",
                                key="card_stability")
        card_key = ("card", key, reference, stability)

        def compute_card():
            bar = st.progress(0.0, text="stability over seeds…") if stability else None
            card = report_card(result, entries, stability_seeds=3 if stability else 0,
                               rank_engine=here.engine("val"),
                               progress=progress_callback(bar, "stability over seeds") if bar else None)
            if bar is not None:
                bar.empty()
            return card
        card = memo(card_key, compute_card)
        # a plain table (cells wrap: it fits 1280 px with the sidebar open), numbers shown to 2 decimals
        st.table(card.table.style.format(precision=2, na_rep="—"), hide_index=True)
        st.markdown(f"★ **{card.winner}**: {card.reading}.")

    if scope != ALL_LAYERS:
        st.subheader("Carry a mask to Live toggles")
        points = (event.selection.get("points") or []) if event is not None and hasattr(event, "selection") else []
        clicked = next((p for p in points if p.get("customdata")), None)
        sets = {"": result, MIRROR_SUFFIX: mirror} if mirror is not None else {"": result}
        labels = [c.label + suffix for suffix, group in sets.items() for c in group.curves]
        labels += [result.reference.label] if result.reference is not None else []
        labels += [f"Random (seed {s})" for s in result.random.seeds]

        def curve_of(name: str):
            """(curve set, label) of a picker or trace name."""
            if name.endswith(MIRROR_SUFFIX) and mirror is not None:
                return mirror, name[:-len(MIRROR_SUFFIX)]
            return result, name
        if clicked is not None and st.session_state.get("_curves:last_click") != clicked["customdata"][:2]:
            st.session_state["_curves:last_click"] = clicked["customdata"][:2]  # a new click sets the pickers below
            group, name = curve_of(clicked["customdata"][0])
            st.session_state["carry_label"] = clicked["customdata"][0]
            st.session_state["carry_n"] = group.counts_at(name, int(clicked["customdata"][1]))
        if st.session_state.get("carry_label") not in labels:
            st.session_state["carry_label"] = labels[0]
        left, middle, right = st.columns([2, 1, 1.4], vertical_alignment="bottom")
        label = left.selectbox("Curve", labels, key="carry_label", help="Or click a point of the chart.")
        if not 0 <= st.session_state.get("carry_n", -1) <= result.units:
            st.session_state["carry_n"] = min(5, result.units)
        n = middle.number_input("Units removed (n)", 0, result.units, step=1, key="carry_n")
        group, name = curve_of(label)
        units_off = group.removal(name, int(n))
        point = group.get(name)
        index = [int(c) for c in point.counts].index(int(n)) if int(n) in point.counts else None
        if index is not None:
            st.caption(f"{label}, {int(n)} removed: accuracy {point.accuracy[index]:.2%}; "
                       f"units off: {', '.join(map(str, units_off)) or 'none'}")
        else:
            st.caption(f"{label}, {int(n)} removed: units off {', '.join(map(str, units_off)) or 'none'}")
        if right.button("Open in Live toggles", type="primary", width="stretch"):
            carry(scope, units_off)
    else:
        st.caption("Whole-network points mask several layers; Live toggles works on one layer — pick a layer above "
                   "to carry a mask there.")

    st.subheader("Sensitivity: one layer at a time (paper B Fig. 4)")
    st.caption("Accuracy with only that layer pruned at each rate, the rest intact; each method's ranking is "
               "computed for every layer with the same parameters (cached on disk).")
    grid_key, compute_grid = across_layers("grid", sensitivity_grid, "evaluating", engine, entries, seeds, direction)
    if grid_key in st.session_state.get("_curves_memo", {}) or st.button("Compute the sensitivity grid"):
        grid = memo(grid_key, compute_grid)
        shown = st.radio("Method", grid.labels, horizontal=True, key="grid_method")
        st.plotly_chart(sensitivity_figure(grid, shown), width="stretch", key="sensitivity_chart")
