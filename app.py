"""Saliency Studio: the router and the sidebar every page shares.

Run with ``streamlit run app.py``.
"""


from pages.lib import layout, own_models, settings

layout.configure_page()
own_models.preload_default_model()
settings.init_state()

navigation = layout.make_navigation()
layout.render_sidebar()
with layout.routed(), layout.guarded():
    navigation.run()
