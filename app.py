"""Saliency Studio: the router and the sidebar every page shares.

Run with ``streamlit run app.py``.
"""

import streamlit as st

from pages.lib import layout, settings

st.set_page_config(page_title="Saliency Studio", page_icon=":material/visibility:",
                   layout="wide")
settings.init_state()

navigation = st.navigation([
    st.Page("pages/explore.py", title="Explore", icon=":material/visibility:", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/grid_view:"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
])
layout.render_sidebar()
with layout.routed():
    navigation.run()
