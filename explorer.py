"""Neuron Ranking Explorer — run with ``streamlit run explorer.py``.

Every page calls ``ui.state.selection()`` first: it draws the shared sidebar (model, dataset, layer).
"""
import streamlit as st

st.set_page_config(page_title="Neuron Ranking Explorer", page_icon=":material/neurology:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/toggle.py", title="Live toggles", icon=":material/toggle_on:"),
    st.Page("pages/rankings.py", title="Rankings", icon=":material/leaderboard:"),
    st.Page("pages/feature_maps.py", title="Ranked feature maps", icon=":material/grid_view:"),
    st.Page("pages/am_gallery.py", title="AM gallery", icon=":material/image:"),
    st.Page("pages/similarity.py", title="Similar filters & clusters", icon=":material/hub:"),
]

st.navigation(PAGES).run()
