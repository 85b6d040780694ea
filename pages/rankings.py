"""Rankings: which units of the selected layer matter, by Shapley values, switches and baselines."""
import importlib.util

import streamlit as st

import core  # first: loads the whole library at once (see explorer.py)
from core.rankings import rank
from core.rankings.agreement import compare, heatmap, top_units_table
from core.rankings.plots import scores_bar, switch_curve
from core.rankings.shapley import EXACT_LIMIT
from core.rankings.stratified import minimum_budget
from core.rankings.switches import DEFAULTS as SWITCH_DEFAULTS
from ui.rankings import known_rankings, remember_ranking
from ui.compute import heavy
from ui.explain import explain
from ui.state import friendly_errors, ray_address, selection

INTERACTIVE_EXACT = 12  # 2^12 coalitions: seconds; bigger layers use sampling in the app
METHODS = {"Shapley": "shapley", "Importance switches": "switches", "L1 norm": "l1", "L2 norm": "l2",
           "Taylor (paper B Eq. 7)": "taylor", "Mean activation": "activation", "Random": "random",
           "Banzhaf": "banzhaf", "Beta-Shapley": "beta_shapley", "Leave-one-out": "loo"}  # semivalues: issue 19

chosen = selection()  # draws the sidebar; stops the page when nothing usable is chosen
with friendly_errors():
    units = chosen.units()
    st.title(f"Rankings of {chosen.layer}")
    explain("rankings")
    st.caption(f"{units} units, scored on the {chosen.dataset} validation split (importance switches learn on "
               "the training split, as in paper A). Higher = more important. "
               "Shapley (paper A): a unit's average contribution to accuracy over coalitions of units. "
               "Switches: a learned Dirichlet probability per unit. The rest are baselines.")

    staged = chosen.engine("val").staged
    if not staged:
        st.caption("On a torchvision model every coalition and every switch update is a full pass of the network "
                   f"over {len(chosen.data('val'))} images (about a second on a CPU): Shapley, the semivalues and "
                   "the switches take minutes to hours, so the methods start at Taylor and L1, which take seconds.")
    picked = st.multiselect("Methods", list(METHODS), default=["Shapley", "Importance switches", "L1 norm"] if staged
                            else ["Taylor (paper B Eq. 7)", "L1 norm"])
    params: dict[str, dict] = {}
    if "Shapley" in picked:
        with st.expander("Shapley options"):
            estimators = ["sampled", "stratified", "truncated"] + \
                (["exact"] if units <= INTERACTIVE_EXACT else []) + (["svarm"] if importlib.util.find_spec("shapiq") else [])
            estimator = st.radio("Estimator", estimators, horizontal=True,
                                 help=f"exact: all 2^N coalitions (offered here up to {INTERACTIVE_EXACT} "
                                      f"units; the CLI goes to {EXACT_LIMIT}). truncated: removal sets of "
                                      "size <= k. sampled: permutation Monte Carlo with standard errors. "
                                      "stratified: a budget of coalitions by size, each updating every unit, "
                                      "with a regression per size; standard errors; the fewest coalitions to a "
                                      "stable top-5 on LeNet conv2 (README). svarm: shapiq's stratified SVARM "
                                      "(no standard errors).")
            shapley = {"estimator": estimator,
                       "payoff": st.radio("Payoff", ["accuracy", "loss"], horizontal=True)}
            if estimator == "sampled":
                shapley["samples"] = st.slider("Permutations", 10, 1000, 100, step=10)
                shapley["antithetic"] = st.checkbox("Antithetic pairs (each permutation with its reverse)", value=True)
                if st.checkbox("Truncate permutations (TMC)", value=False,
                               help="Stop walking a permutation once the coalition's payoff is within the "
                                    "tolerance of the whole layer's; the remaining units' marginals count as 0. "
                                    "Fewer coalitions, slightly biased."):
                    shapley["truncation"] = st.number_input("Truncation tolerance", 0.001, 0.5, 0.02, step=0.005,
                                                            format="%.3f")
                if "truncation" not in shapley:
                    images = len(chosen.engine("val").data)
                    how = st.radio("Images per coalition", ["all", "auto", "a subset"], horizontal=True,
                                   help="Evaluate each permutation pair on a fresh random subset of the validation "
                                        "images: unbiased, cheaper, with the extra error reported. auto: 8 pairs on "
                                        "all images, then the fewest images that keep the image error within half "
                                        "the permutation error.")
                    if how == "auto":
                        shapley["subset"] = "auto"
                    elif how == "a subset":
                        shapley["subset"] = st.number_input("Images", 2, max(2, images), min(images, 200), step=50)
                if st.checkbox("Stop early once the top units are separated", value=False):
                    shapley["top_k"] = st.slider("top k", 1, max(1, units - 1), min(5, units - 1),
                                                 help="Simultaneous 95% intervals (Bonferroni over units and "
                                                      "checks) must separate the top k from the rest.")
                shapley["seed"] = st.number_input("Seed", 0, 10_000, 0, key="shapley_seed")
            elif estimator == "truncated":
                shapley["k"] = st.slider("k (largest removal set)", 0, units - 1, min(2, units - 1))
            elif estimator in ("svarm", "stratified"):
                least = minimum_budget(units) if estimator == "stratified" else 100
                shapley["samples"] = st.number_input("Coalitions (budget)", least, 1_000_000, max(least, 4000),
                                                     step=500, key=f"{estimator}_budget")
                shapley["seed"] = st.number_input("Seed", 0, 10_000, 0, key=f"{estimator}_seed")
            params["Shapley"] = shapley
    if "Importance switches" in picked:
        with st.expander("Switch options"):
            default_alpha = 0.05 if chosen.meta.arch == "vgg16" else 2.0
            params["Importance switches"] = {
                "alpha0": st.number_input("Prior alpha0", 0.001, 100.0, default_alpha, format="%.3f",
                                          help="paper A: 2 for LeNet, 0.05 for VGG"),
                "epochs": st.slider("Epochs", 1, 300, SWITCH_DEFAULTS["epochs"],
                                    help="passes over the training split (paper A: 300)"),
                "split": st.radio("Learn on", ["train", "val"], horizontal=True,
                                  help="paper A trains the switches on the training split, KL weighted by "
                                       "1/(its size); accuracy is always measured on the validation split")}
    for name in ("Banzhaf", "Beta-Shapley"):  # the semivalues (docs/METHODS.md): exact or sampled, with errors
        if name in picked:
            with st.expander(f"{name} options"):
                estimators = ["sampled"] + (["exact"] if units <= INTERACTIVE_EXACT else [])
                options = {"estimator": st.radio("Estimator", estimators, horizontal=True, key=f"{name}_estimator",
                                                 help="exact: all 2^N coalitions (shared with exact Shapley and the "
                                                      "oracle). sampled: with standard errors.")}
                if name == "Beta-Shapley":
                    left, right = st.columns(2)
                    options["alpha"] = left.number_input("alpha", 0.01, 100.0, 1.0, key="beta_alpha")
                    options["beta"] = right.number_input("beta", 0.01, 100.0, 16.0, key="beta_beta",
                                                         help="beta > alpha weights nearly-full coalitions (what "
                                                              "pruning asks); alpha = beta = 1 is Shapley")
                if options["estimator"] == "sampled":
                    options["samples"] = (st.slider("Coalitions (maximum sample reuse)", 100, 20000, 2000, step=100,
                                                    key="banzhaf_samples") if name == "Banzhaf" else
                                          st.slider("Draws (N + 1 evaluations each)", 10, 1000, 100, step=10,
                                                    key="beta_samples"))
                    options["seed"] = st.number_input("Seed", 0, 10_000, 0, key=f"{name}_seed")
                params[name] = options
    if "Random" in picked:
        params["Random"] = {"seed": st.number_input("Random seed", 0, 10_000, 0, key="random_seed")}

    address = ray_address()
    on_ray = bool(address) and params.get("Shapley", {}).get("estimator") == "sampled"
    if on_ray:
        st.caption(f"Sampled Shapley runs on the Ray cluster at {address} (RAY_ADDRESS), one worker per CPU "
                   "(or GPU); the result is the same as a run here with the same seed.")
    if st.button("Compute rankings", type="primary", disabled=not picked):
        bar = st.progress(0.0, text="starting…")
        engine = chosen.engine("val")
        train = chosen.engine("train") if params.get("Importance switches", {}).get("split") == "train" else None
        with heavy("the rankings") as work:  # a compute slot; stops on Stop, a rerun or a closed tab
            for number, name in enumerate(picked):
                def progress(done: int, total: int, name=name, number=number) -> None:
                    fraction = (number + min(1.0, done / max(1, total))) / len(picked)
                    bar.progress(fraction, text=f"{name}: {done:,}/{total:,}")
                ranking = rank(chosen.model, engine.data, chosen.layer, METHODS[name], progress=work.progress(progress),
                               engine=engine, train=train if name == "Importance switches" else None,
                               ray_address=address if on_ray and name == "Shapley" else None,
                               **params.get(name, {}))
                remember_ranking(chosen, ranking)
        bar.progress(1.0, text="done")

    rankings = list(known_rankings(chosen).values())
    st.subheader("Scores per unit")
    for ranking in rankings:
        note = " (from cache)" if ranking.cached else f" ({ranking.seconds:.1f} s)"
        with st.expander(ranking.label + note, expanded=ranking.method != "l1" or len(rankings) == 1):
            st.plotly_chart(scores_bar(ranking), width="stretch", key=f"bar-{ranking.label}")
            if ranking.stderr is not None:
                drawn = {"banzhaf": "sampled coalitions", "beta_shapley": "draws"}.get(ranking.method, "permutations")
                st.caption(f"Error bars: ±1.96 standard errors over "
                           f"{ranking.extra.get('permutations', ranking.params.get('samples'))} "
                           f"{drawn}{' (stopped early)' if ranking.extra.get('stopped_early') else ''}"
                           + (f", computed on {ranking.extra['workers']} Ray workers" if "workers" in ranking.extra
                              else "") + ".")
            if "image_stderr" in ranking.extra:
                extra = ranking.extra
                st.caption(f"Each pair on {extra['subset']} random images: {extra['image_evaluations']:,} image "
                           f"evaluations instead of {extra['full_image_evaluations']:,} "
                           f"({extra['full_image_evaluations'] / extra['image_evaluations']:.1f}x fewer). Mean "
                           f"standard error from the image subsets {extra['image_stderr'].mean():.4f}, from the "
                           f"permutations {extra['permutation_stderr'].mean():.4f} (the bars include both).")
            if "likelihood" in ranking.extra:
                st.plotly_chart(switch_curve(ranking), width="stretch", key=f"curve-{ranking.label}")
                st.caption(f"Trained {ranking.params['epochs']} epochs on {ranking.extra.get('trained_on', '?')} "
                           f"({ranking.extra.get('train_images', '?')} images, KL / that number); accuracy with "
                           f"the learned switches on the validation split: {ranking.extra['switched_accuracy']:.2%}.")

    if len(rankings) >= 2:
        st.subheader("Agreement")
        k = st.slider("k (top units compared)", 1, units, min(5, units))
        st.markdown("**Top units of each method** (paper A, Table 1)")
        st.dataframe(top_units_table(rankings, k), width="stretch")
        st.markdown("**Pairs**: p(chance) is the probability that random top-k sets overlap at least this much.")
        st.dataframe(compare(rankings, k).drop(columns=["overlap"]).style.format(
            {"p(chance)": "{:.3g}", "Spearman": "{:.2f}", "Kendall": "{:.2f}"}), width="stretch",
            hide_index=True)
        metric = st.radio("Heatmap", ["overlap", "spearman", "kendall"], horizontal=True,
                          format_func={"overlap": f"top-{k} overlap", "spearman": "Spearman",
                                       "kendall": "Kendall"}.get)
        st.plotly_chart(heatmap(rankings, metric, k), width="stretch")
    else:
        st.info("Compute at least one more ranking to compare methods.")
