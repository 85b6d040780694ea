"""Neuron Ranking Explorer — run with ``streamlit run explorer.py``."""
import streamlit as st

from ui.state import friendly_errors, sidebar

st.set_page_config(page_title="Neuron Ranking Explorer", page_icon="🧠", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon="🏠", default=True),
    st.Page("pages/toggle.py", title="Live toggles", icon="🎛️"),
]

navigation = st.navigation(PAGES)
with friendly_errors():
    chosen = sidebar()
    if chosen is not None:
        st.session_state["_selection"] = chosen
        navigation.run()
