"""Saliency Studio: the router and the sidebar every page shares.

Run with ``streamlit run app.py``.
"""

from pathlib import Path

import streamlit as st

from pages.lib import layout, settings

# A local icon file: an icon name such as ":material/visibility:" makes every visitor's
# browser fetch the favicon from a font CDN (a third-party request, and a failure offline).
st.set_page_config(page_title="Saliency Studio",
                   page_icon=str(Path(__file__).parent / "pages" / "lib" / "assets" / "icon.png"),
                   layout="wide")
settings.init_state()

navigation = st.navigation([
    st.Page("pages/explore.py", title="Explore", icon=":material/visibility:", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/grid_view:"),
    st.Page("pages/audit.py", title="Audit", icon=":material/photo_library:"),
    st.Page("pages/trust.py", title="Trust", icon=":material/verified:"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
])
layout.render_sidebar()
with layout.routed(), layout.guarded():
    navigation.run()
