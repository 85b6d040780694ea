"""Similar filters & clusters (paper B): which units of the layer do the same job, and which to prune."""
import core  # first of all: loads the whole library at once (see explorer.py)
import streamlit as st

from core.interpret.similarity import cluster_rows_image
from ui.compute import am_size_input, default_am_steps, heavy
from ui.explain import explain
from ui.state import friendly_errors, selection

chosen = selection()
st.title(f"Similar filters & clusters — {chosen.layer}")
explain("similarity")
st.caption("Two units are similar when their activation-maximization patterns look alike and they push the same "
           "classes up and down (class contributions γ). k-means groups similar units; a unit alone in its cluster "
           "is **locked** (it has no twin, so it is never pruned). Inside a cluster, units are ranked by their "
           "contribution index (paper B Eq. 7) and pruning takes the lowest first.")


def analysis(steps: int, seed: int, definition: str, combine: str,
             size: int | None) -> tuple[core.Similarity, core.Clusters]:
    """SD matrix and clusters for the selected layer: kept for the session, cached on disk by core. Each part
    (AM, γ, the contribution index, k-means) shows its own progress."""
    store = st.session_state.setdefault("_clusters", {})
    key = (chosen.model_key, chosen.dataset, chosen.layer, steps, seed, definition, combine, size)
    if key not in store:
        bar = st.progress(0.0, text="Optimizing activation-maximization images…")
        with heavy("similarity and clusters") as work:
            core.am_images(chosen.model, chosen.layer, steps=steps, seed=seed, size=size, progress=work.progress(
                lambda done, total: bar.progress(done / total, text=f"AM step {done}/{total}")))
            engine, data = chosen.engine("val"), chosen.data("val")
            bar.progress(0.0, text="Class contributions γ…")
            core.class_contributions(chosen.model, data, chosen.layer, engine=engine, definition=definition,
                                     progress=work.progress(lambda done, total: bar.progress(
                                         done / total, text=f"Class contributions γ: batch {done}/{total}")))
            bar.progress(0.0, text="Contribution index (Taylor)…")
            core.rank(chosen.model, data, chosen.layer, "taylor", engine=engine, progress=work.progress(
                lambda done, total: bar.progress(done / total, text=f"Contribution index: {done}/{total} images")))
            similarity = core.similarity_matrix(chosen.model, data, chosen.layer, steps, seed, engine=engine,
                                                gamma_definition=definition, combine=combine, size=size)
            clusters = core.cluster_filters(chosen.model, data, chosen.layer, steps, seed,
                                            similarity=similarity, engine=engine,
                                            progress=work.progress(lambda done, total: bar.progress(
                                                done / total, text=f"k-means: trying k = {done + 1} of {total + 1}")))
        bar.empty()
        store[key] = (similarity, clusters)
    return store[key]


def interaction_controls(units: int) -> core.Interactions | None:
    """Estimator choice and a compute button; the interactions of this layer once computed (kept per session)."""
    if not chosen.engine("val").staged:
        st.caption(f"Not offered on a torchvision model: every coalition is a full pass of the network, and even the "
                   f"sampled estimator needs 2·n² = {2 * units * units:,} of them per order of the units (hours on a "
                   f"CPU). The command line runs it where there is time: `python -m core interactions --checkpoint "
                   f"{chosen.link_params()['model'] or 'MODEL'} --layer {chosen.layer} --estimator sampled`.")
        return None
    exact_ok = units <= core.rankings.game.EXACT_LIMIT
    a, b, c = st.columns([2, 1, 1])
    options = ["exact", "sampled"] if exact_ok else ["sampled"]
    estimator = a.radio("Interaction estimator", options, horizontal=True,
                        index=0 if exact_ok and units <= 12 else len(options) - 1,
                        help=f"exact: all 2^{units} coalitions (up to {core.rankings.game.EXACT_LIMIT} units); "
                             "sampled: random orders per unit, 2·n² evaluations each, with standard errors")
    samples = b.number_input("Orders per unit", min_value=2, max_value=1000, value=20, step=10,
                             disabled=estimator == "exact")
    seed = c.number_input("Interaction seed", min_value=0, max_value=10_000, value=0, disabled=estimator == "exact")
    store = st.session_state.setdefault("_interactions", {})
    key = (chosen.model_key, chosen.dataset, chosen.layer, estimator, int(samples), int(seed))
    slot = st.empty()  # the button, then the progress bar, then nothing
    if key not in store and slot.button("Compute interactions", key="compute_interactions"):
        bar = slot.progress(0.0, text="Evaluating coalitions…")
        store[key] = core.interactions(chosen.model, chosen.data("val"), chosen.layer, estimator=estimator,
                                       samples=int(samples), seed=int(seed), engine=chosen.engine("val"),
                                       progress=lambda done, total: bar.progress(
                                           done / total, text=f"Interactions: {done:,} / {total:,}"))
        slot.empty()
    return store.get(key)


with friendly_errors():
    a, b, c = st.columns([2, 1, 1])
    rate = a.slider("Pruning rate", 0.0, 0.9, 0.3, 0.05,
                    help="Share of the layer's units to remove: each cluster gives a share proportional to its "
                         "size, lowest contribution index first; locked units and each cluster's last unit stay.")
    steps = b.number_input("AM steps", min_value=16, max_value=2048, value=default_am_steps(chosen), step=64)
    seed = c.number_input("Seed", min_value=0, max_value=10_000, value=0)
    size = am_size_input(chosen, int(steps))
    d, e = st.columns(2)
    definition = d.radio("Class contributions γ", ["gate", "paper"], horizontal=True,
                         format_func={"gate": "gate: dP/d(strength of the whole map)",
                                      "paper": "paper B literal: mean dP/dA"}.get,
                         help="gate: derivative w.r.t. a gate scaling the filter's activation (= grad × act "
                              "summed over positions; switching the unit off changes P by about -γ). paper: "
                              "the plain derivative dP/dA averaged over images and positions.")
    combine = e.radio("SD combines the two distances by", ["sum", "product"], horizontal=True,
                      help="Paper B's text adds the AM and γ distances; its printed Eq. 3 multiplies them.")
    similarity, clusters = analysis(int(steps), int(seed), definition, combine, size)
    removed = core.pruning_selection(clusters, rate)

    units = len(clusters.labels)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Clusters (k)", clusters.k, help="Best silhouette on SD over k = 2 … I/2; k = 1 when none reaches "
                                               f"{core.interpret.similarity.MIN_SILHOUETTE}.")
    best = max(clusters.silhouette.values(), default=float("nan"))
    m2.metric("Best silhouette", f"{best:.2f}")
    m3.metric("Locked units", len(clusters.locked))
    m4.metric("Pruned at this rate", f"{len(removed)} / {units}")

    st.subheader("Clusters (paper B Fig. 3)")
    st.caption("One row per cluster; AM images ordered by contribution index, highest on the left. "
               "Crossed out in red: the units this pruning rate removes.")
    st.image(cluster_rows_image(similarity.am.images, clusters, removed))
    if removed:
        st.markdown("**Removed:** " + ", ".join(f"unit {u}" for u in removed))

    st.subheader("Are similar filters redundant? (unit interactions)")
    st.caption("The Shapley interaction index of two units (Grabisch & Roubens 1999) averages how much switching "
               "both off costs beyond switching each off alone, over the coalitions of the other units: negative = "
               "**redundant** (either unit does the job), positive = **synergistic** (they matter only together). "
               "It is drawn beside SD, in the same order; paper B's similar pairs would be red there.")
    interactions = interaction_controls(units)
    gamma_chart = core.gamma_figure(similarity.gamma, chosen.data("val").class_names, clusters.order(),
                                    title="Class contributions γ (paper B Eq. 2), units by cluster")
    left, right = st.columns(2)
    left.plotly_chart(core.sd_figure(similarity, clusters), width="stretch", key="sd")
    if interactions is None:
        right.plotly_chart(gamma_chart, width="stretch", key="gamma")
    else:
        right.plotly_chart(core.interaction_figure(interactions, clusters), width="stretch", key="interactions")
        agreement = core.similarity_vs_interactions(similarity, interactions)
        i1, i2, i3 = st.columns(3)
        i1.metric("Spearman(SD, I) over pairs", f"{agreement.spearman:+.2f}",
                  help="Positive: similar pairs (small SD) tend to be redundant (negative I). p-value: "
                       f"{agreement.p_value:.2g}; Pearson {agreement.pearson:+.2f}.")
        i2.metric(f"Top-{agreement.k} similar pairs among top-{agreement.k} redundant",
                  f"{agreement.overlap} / {agreement.k}",
                  help=f"Chance of this overlap or more: {agreement.p_overlap:.2g}")
        i3.metric("Interaction evaluations", f"{interactions.evaluations:,}",
                  help=f"{interactions.label}; {interactions.seconds:.1f} s when computed")
        st.caption(agreement.sentence())
        below_left, below_right = st.columns(2)
        below_left.plotly_chart(gamma_chart, width="stretch", key="gamma")
        below_right.plotly_chart(core.sd_interaction_scatter(similarity, interactions), width="stretch",
                                 key="sd_vs_interactions")
    operator = "+" if similarity.combine == "sum" else "×"
    dead = [int(u) for u in similarity.dead.nonzero()[0]] if similarity.dead is not None else []
    st.caption(f"SD = AM-pattern distance {operator} class-contribution distance (γ definition: "
               f"**{similarity.gamma_definition}**), each divided by its mean over the layer's pairs "
               f"({'≈ 2' if similarity.combine == 'sum' else '≈ 1'} is a typical pair, 0 = identical). "
               "Red boxes: clusters. γ: red = the unit raises the class's probability, blue = lowers it."
               + (f" Dead units (silent on every image; at distance 0 from each other): "
                  f"{', '.join(map(str, dead))}." if dead else ""))
