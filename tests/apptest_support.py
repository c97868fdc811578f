"""What every AppTest module shares: pages run through the router, as on the live server."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from conftest import ROOT

ROUTER = ROOT / "pages" / "router.py"
"""The navigation script that ``app.py``'s ``st.App`` serves (AppTest runs scripts, not apps)."""


def new_app(timeout: float = 180, **query) -> AppTest:
    """The app with ``query`` as its URL parameters, after its first run."""
    at = AppTest.from_file(str(ROUTER), default_timeout=timeout)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()
