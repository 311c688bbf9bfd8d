"""Pruning Explorer: the router. Shared state and sidebar live here; pages live in pages/."""

from pathlib import Path

import streamlit as st

from pages._common import init_state, sidebar

# a local image: a ":material/...:" page icon makes the browser fetch the tab icon from fonts.gstatic.com
st.set_page_config(page_title="Pruning Explorer", page_icon=str(Path(__file__).parent / "assets" / "icon.png"),
                   layout="wide")
init_state()
page = st.navigation([
    st.Page("pages/model.py", title="Model", icon=":material/memory:", default=True),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/grid_on:"),
    st.Page("pages/sensitivity.py", title="Sensitivity", icon=":material/tune:"),
    st.Page("pages/prune.py", title="Prune", icon=":material/content_cut:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/graph.py", title="Graph", icon=":material/account_tree:"),
])
sidebar()
page.run()
