"""Saliency Studio's navigation: the page menu, the sidebar every page shares, the guard.

``app.py`` serves this script through its ``st.App``; run the app with
``streamlit run app.py``. It lives inside ``pages/`` so that Streamlit never
switches to its folder-based page mode (which looks for a ``pages/`` folder next
to the main script and would show the raw file names as a menu): every request,
deep links included, runs through this router.
"""

import streamlit as st

from pages.lib import layout, settings

layout.configure_page()
settings.init_state()

navigation = layout.make_navigation()
if "live_session" in st.session_state and navigation.url_path != "live":
    from pages.lib import live_stream  # only there when the [live] extra is

    live_stream.end_stream()  # left Live while streaming: its threads end now
layout.render_sidebar()
with layout.guarded():
    navigation.run()
