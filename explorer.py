"""Neuron Ranking Explorer — run with ``streamlit run explorer.py``.

Every page calls ``ui.state.selection()`` first: it draws the shared sidebar (model, dataset, layer).
"""
import streamlit as st

st.set_page_config(page_title="Neuron Ranking Explorer", page_icon=":material/neurology:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/toggle.py", title="Live toggles", icon=":material/toggle_on:"),
]

st.navigation(PAGES).run()
