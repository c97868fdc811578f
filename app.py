"""Saliency Studio: the router and the sidebar every page shares.

Run with ``streamlit run app.py``.
"""

import streamlit as st

from pages.lib import layout, own_models, settings

layout.configure_page()
own_models.preload_default_model()
settings.init_state()

navigation = st.navigation([
    st.Page("pages/explore.py", title="Explore", icon=":material/visibility:", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/grid_view:"),
    st.Page("pages/live.py", title="Live", icon=":material/videocam:"),
    st.Page("pages/audit.py", title="Audit", icon=":material/photo_library:"),
    st.Page("pages/trust.py", title="Trust", icon=":material/verified:"),
    st.Page("pages/how_it_works.py", title="How it works", icon=":material/school:"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
])
layout.render_sidebar()
with layout.routed(), layout.guarded():
    navigation.run()
