"""A tiny Streamlit component (no visible UI) that links the overlay to the server.

The overlay's opacity slider is Plotly's, so it moves the map instantly in the
browser. The component listens to it and reports the value the user settles on,
so there is only one opacity: the PNG download, the next figure and the shared
link follow it. On narrow screens it also scrolls a new result into view.
The JavaScript is ``assets/overlay_bridge.js``; it is trusted project code.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit.components.v2  # noqa: F401  (registers st.components.v2)

from pages.lib import settings

_JS = (Path(__file__).parent / "assets" / "overlay_bridge.js").read_text(encoding="utf-8")
_bridge = st.components.v2.component("saliency_overlay_bridge", js=_JS)
KEY = "overlay_bridge"


def _opacity_changed() -> None:
    value = st.session_state[KEY].get("opacity")
    if isinstance(value, int | float) and 0.0 <= value <= 1.0:
        settings.put("opacity", settings.snap_opacity(value))


def mount_overlay_bridge(scroll_token: str) -> None:
    """Mount the bridge; ``scroll_token`` changes when a new image is explained."""
    _bridge(key=KEY, data={"scroll_token": scroll_token}, height=0,
            on_opacity_change=_opacity_changed)
