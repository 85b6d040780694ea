"""'What am I looking at?' — a short explanation at the top of every page: what it shows, the formula where
there is one, and how to read each chart. Open on a session's first visit to a page whose headline content still
fits a 1280x720 screen with it open, collapsed otherwise and after."""
from __future__ import annotations

import streamlit as st

TEXTS: dict[str, tuple[str, list[str], list[str]]] = {  # page -> (what, formulas, how to read)
    "overview": (
        "A trained network: its layers, how big each is, and how well it does on the test images. A *unit* is one "
        "filter of a conv layer (it makes one feature map) or one neuron of an fc layer; the other pages ask which "
        "units matter.", [],
        ["The table lists the layers you can study; FLOPs are multiply-adds for one image.",
         "Each sample image shows the model's guess: ✓ right, ✗ wrong (with the true class)."]),
    "toggle": (
        "Switch units of one layer off and the whole network is re-evaluated at once. Switching a unit off is "
        "the same as cutting it out of the network (its channel becomes zero where it enters the next layer). "
        "If accuracy barely moves, the unit was not needed; if it drops, it mattered.", [],
        ["Each switch is one unit (a conv filter or an fc neuron). Conv thumbnails: the filter's mean feature map "
         "over the evaluation images (yellow = strong). fc thumbnails: one bar per class, the neuron's mean "
         "activation on that class's images (class 0 at the left).",
         "The accuracy's small print is the change from the full network, in percentage points.",
         "Per-class bars: the grey outline is the full network, blue is with your units off.",
         "Confusion matrix: row = true class, column = predicted; a bright off-diagonal cell is a new mistake."]),
    "rankings": (
        "Several ways to score every unit of the layer. Shapley (paper A) treats units as players of a game whose "
        "payoff v(C) is the accuracy with only the units in C on, and averages a unit's marginal contribution over "
        "all coalitions. Importance switches learn a probability per unit that scales its output. The rest are "
        "quick baselines: weight norms, Taylor (gradient × activation), mean activation, random.",
        [r"\phi_i = \sum_{C \subseteq N \setminus \{i\}} \frac{|C|!\,(|N|-|C|-1)!}{|N|!}\,\bigl(v(C \cup \{i\}) - v(C)\bigr)",
         r"s \sim \mathrm{Dir}(\phi),\ \ \phi = \mathrm{softplus}(p),\ \ \max_p\ \mathbb{E}_q[\log p(D \mid s)] - "
         r"\mathrm{KL}\bigl(q(s)\,\|\,\mathrm{Dir}(\alpha_0 \mathbf{1})\bigr)"],
        ["Bars: one per unit, most important first; sampled Shapley has ±1.96 standard-error bars.",
         "Table 1 layout: each method's top units. Pairs: how much two methods agree (overlap, Spearman, Kendall) "
         "and the chance that random top-k sets would overlap that much."]),
    "feature_maps": (
        "What each unit of the layer sees in one image: its feature map (paper A Fig. 1), ordered by a ranking so "
        "you can compare what the top and the bottom units respond to.", [],
        ["Each square is one unit's map on this image; white = strong response, black = none.",
         "▲ marks the top of the ranking, ▼ the bottom."]),
    "am_gallery": (
        "For each unit, the picture that makes it fire most (activation maximization, paper B Eq. 1), grown from "
        "noise by gradient ascent with small random shifts, zooms and rotations so that it stays natural.",
        [r"V(F_i) = \arg\max_X\ \bar{A}_i(X) \quad (\bar{A}_i = \text{mean of unit } i\text{'s feature map})"],
        ["Units are ordered by the chosen ranking: rank 1 is the most important.",
         "Up close: the AM image, the real images that drive the unit most, and its maps on them."]),
    "similarity": (
        "Which units do the same job (paper B). Two units are similar when their AM patterns look alike and they "
        "push the same classes up and down (class contributions γ). k-means groups similar units; pruning removes "
        "units from within a group, lowest contribution index first, and never a unit alone in its group.",
        [r"\gamma_{ij} = \mathbb{E}_x\Bigl[\frac{\partial P(y_j \mid x)}{\partial g_i}\Bigr]_{g=1}",
         r"SD_{ij} = \frac{D_{AM}(i,j)}{\overline{D_{AM}}} + \frac{D_\gamma(i,j)}{\overline{D_\gamma}}",
         r"I(F_i) = \mathbb{E}_x\Bigl|\frac{\partial Z}{\partial A_i} A_i\Bigr|",
         r"I_{ij} = \sum_{S \subseteq N \setminus \{i,j\}} \frac{|S|!\,(n-|S|-2)!}{(n-1)!}"
         r"\bigl[v(S{\cup}ij) - v(S{\cup}i) - v(S{\cup}j) + v(S)\bigr]"],
        ["Cluster rows: AM images of each cluster, the units a pruning rate removes crossed out in red.",
         "SD heatmap (a distance): yellow = similar, the same function (0 on the diagonal); dark = different; "
         "boxes are the clusters.",
         "γ heatmap: red = the unit raises that class's probability, blue = lowers it, white = no effect.",
         "Interaction heatmap (Shapley interaction index, Grabisch & Roubens): red = a redundant pair (either unit "
         "does the job: losing one costs little while the other stays), blue = a synergistic pair (they matter only "
         "together). If paper B's similar pairs were the redundant ones, small SD would go with red."]),
    "curves": (
        "What a ranking costs when you act on it: the accuracy after switching off the n least important units, "
        "for every n, without retraining (paper A Fig. 2, paper B Figs. 4-5). Random orders over several seeds "
        "are the control: a ranking is informative only where its curve stays above the random band.", [],
        ["x: units (or share of units) removed; y: accuracy. The shaded band is the random orders' range.",
         "The sensitivity heatmap: each layer pruned alone at each rate; darker = more accuracy lost."]),
    "compress": (
        "Turn a ranking into a smaller real network: choose how many units each layer keeps, cut the others out, "
        "fine-tune, and compare size, speed and accuracy with other rankings; export the result.", [],
        ["The table compares methods: kept widths, parameters, FLOPs, accuracy before and after fine-tuning.",
         "The recovery curve shows accuracy during fine-tuning."]),
    "by_hand": (
        "A Shapley value made by hand. Three units are the players; every other unit stays on. All 8 coalitions "
        "are evaluated (only the units in the coalition on); in each of the 6 orders the players could join, a "
        "player's marginal contribution is what it adds when it joins. Its Shapley value is the average over the "
        "orders, and the values add up to v(all three) − v(none).",
        [r"\phi_i = \frac{1}{3!} \sum_{\text{orders } \pi} \bigl(v(\text{players before } i \text{ in } \pi \cup \{i\}) "
         r"- v(\text{players before } i \text{ in } \pi)\bigr)"],
        ["Coalitions: the accuracy with only those players on (the other units of the layer are always on).",
         "Orders: one row per order, the marginal of each player; the last row is their average.",
         "The full layer's sampled Shapley gives the same units other values: there, every other unit is a "
         "player too."]),
}


# Pages whose headline content stays on a 1280x720 projector screen (sidebar open) with the box open, so it
# opens on a session's first visit there. Elsewhere an open box pushes the headline (Live toggles' switches and
# accuracy, Shapley by hand's coalitions, the charts and images) below the screen: it starts collapsed.
# tests/test_browser.py measures both.
OPEN_ON_FIRST_VISIT = {"overview"}


def explain(page: str) -> None:
    """The page's explanation in an expander: open on this session's first visit to a page that still fits
    1280x720 with it open (``OPEN_ON_FIRST_VISIT``), collapsed otherwise."""
    what, formulas, reading = TEXTS[page]
    seen = st.session_state.setdefault("_explained", set())
    with st.expander("What am I looking at?", expanded=page in OPEN_ON_FIRST_VISIT and page not in seen,
                     icon=":material/help:"):
        st.markdown(what)
        for formula in formulas:
            st.latex(formula)
        st.markdown("\n".join(f"- {line}" for line in reading))
    seen.add(page)
