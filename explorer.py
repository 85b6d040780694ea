"""Neuron Ranking Explorer — run with ``streamlit run explorer.py``.

Every page calls ``ui.state.selection()`` first: it draws the shared sidebar (model, dataset, layer).
"""
import sys
from pathlib import Path

import streamlit as st

# a local icon: a material or emoji page icon is fetched from the internet, which fails in an offline classroom
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
st.set_page_config(page_title="Neuron Ranking Explorer", page_icon=str(ICON), layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/toggle.py", title="Live toggles", icon=":material/toggle_on:"),
    st.Page("pages/rankings.py", title="Rankings", icon=":material/leaderboard:"),
    st.Page("pages/by_hand.py", title="Shapley by hand", icon=":material/calculate:"),
    st.Page("pages/curves.py", title="Pruning curves", icon=":material/trending_down:"),
    st.Page("pages/feature_maps.py", title="Ranked feature maps", icon=":material/grid_view:"),
    st.Page("pages/am_gallery.py", title="AM gallery", icon=":material/image:"),
    st.Page("pages/similarity.py", title="Similar filters & clusters", icon=":material/hub:"),
    st.Page("pages/compress.py", title="Compress", icon=":material/compress:"),
]
page = st.navigation(PAGES)  # before the slow import: the first paint shows the real menu, not pages/ files

# The library is imported here, whole, before any page runs, and by a plain top-level ``import core``
# (as the first import of our code in every page too). Streamlit's fast reruns start a new script
# thread while the last one still runs; a thread that imports a submodule (``from core.x import y``)
# first takes that submodule's import lock and then the half-loaded parent, the opposite order of a
# thread loading ``core`` itself, and Python resolves the deadlock with a half-initialized module that
# stays broken for every session. A plain ``import core`` waits until the package is complete.
starting = st.empty()
if "ui.rankings" not in sys.modules:  # the first visit to a fresh server: torch takes seconds to load
    starting.info("Starting the explorer: loading PyTorch and the model (a few seconds, once per server)…",
                  icon=":material/hourglass_top:")
import core  # noqa: E402,F401
import ui.rankings  # noqa: E402,F401
import ui.state  # noqa: E402,F401
import ui.compute  # noqa: E402

ui.compute.apply_policy()  # torch threads per computation: the server's compute policy (README, Sharing one machine)

starting.empty()


page.run()
