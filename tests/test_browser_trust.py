"""End-to-end: the Trust page under `streamlit run`, driven in headless Chromium.

The server and browser fixtures come from ``tests/browser_support.py``: Debian's ``chromium``
(found with ``shutil.which``) through Playwright's Python package, the app on a free
localhost port with ``SALIENCY_STUDIO_OFFLINE=1``. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import pytest
from browser_support import screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]
CHART = "[data-testid='stPlotlyChart'] .js-plotly-plot"





def assert_no_exception(page) -> None:
    shown = page.locator("[data-testid='stException']")
    assert shown.count() == 0, shown.all_inner_texts()


def test_trust_page_runs_the_cascading_check_and_shows_figure_and_verdict(server, page):
    page.goto(server)  # as a user: the app's front page, then the Trust entry of the menu
    page.get_by_role("heading", name="Explore").first.wait_for(timeout=120_000)
    page.locator("[data-testid='stSidebarNav']").get_by_text("Trust", exact=True).click()
    page.get_by_role("heading", name="Trust").first.wait_for(timeout=120_000)
    page.get_by_text("Edge-detector control").first.wait_for(timeout=120_000)
    # the cheap checks appear by themselves: the edge control and the random classes
    page.get_by_text("(mean Spearman", exact=False).first.wait_for(timeout=120_000)
    assert page.locator(CHART).count() == 2
    assert_no_exception(page)
    screenshot(page, "trust-cheap-checks")

    page.get_by_role("button", name="Run the cascading randomisation").click()
    verdict = page.get_by_text("when the model is randomised (Spearman", exact=False).first
    verdict.wait_for(timeout=120_000)
    assert verdict.inner_text().rstrip(".").endswith(("passes", "fails"))
    page.wait_for_function(f"document.querySelectorAll(\"{CHART}\").length >= 3",
                           timeout=60_000)
    figure = page.locator(CHART).nth(2)
    assert "blocks randomised, from the output down" in figure.inner_text()
    assert figure.locator("g.hm").count() == 10  # the original map and 9 steps (Lite0)
    assert_no_exception(page)
    figure.scroll_into_view_if_needed()
    screenshot(page, "trust-cascading")

    page.get_by_role("button", name="Run deletion and insertion").click()
    page.get_by_text("than a random order (AUC", exact=False).first.wait_for(timeout=180_000)
    page.get_by_text("Step 8 of 32", exact=False).first.wait_for(timeout=30_000)
    assert_no_exception(page)
    screenshot(page, "trust-faithfulness")
