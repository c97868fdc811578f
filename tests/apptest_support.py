"""What every AppTest module shares: runs through app.py's router, as the live server."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from conftest import ROOT


def use_navigation_mode(monkeypatch) -> None:
    """Run every AppTest rerun through app.py's st.navigation, as the live server does.

    AppTest resets ``PagesManager.uses_pages_directory`` before each run and, because
    this project has a ``pages/`` folder, would rerun a page script directly (the old
    folder-based multipage mode), skipping app.py and its sidebar. The live server
    clears that flag for good on the first ``st.navigation`` call; this does the same.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


def new_app(timeout: float = 180, **query) -> AppTest:
    """The app with ``query`` as its URL parameters, after its first run."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()
