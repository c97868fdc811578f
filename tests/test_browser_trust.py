"""End-to-end: the Trust page under `streamlit run`, driven in headless Chromium.

The server and browser fixtures come from ``tests/browser_support.py``: Debian's ``chromium``
(found with ``shutil.which``) through Playwright's Python package, the app on a free
localhost port with ``SALIENCY_STUDIO_OFFLINE=1``. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re

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
    page.get_by_text("over 5 classes, from", exact=False).first.wait_for(timeout=120_000)
    assert page.locator(CHART).count() == 2
    assert_no_exception(page)
    screenshot(page, "trust-cheap-checks")

    page.get_by_role("button", name="Run the cascading randomisation").click()
    verdict = page.get_by_text("when the model is randomised (Spearman", exact=False).first
    verdict.wait_for(timeout=120_000)
    assert verdict.inner_text().rstrip(".").endswith(("passes", "fails", "undecided"))
    page.wait_for_function(f"document.querySelectorAll(\"{CHART}\").length >= 3",
                           timeout=60_000)
    page.wait_for_function(f"document.querySelectorAll(\"{CHART}\").length >= 4",
                           timeout=60_000)
    figure = page.locator(CHART).nth(2)
    assert "… + stage 1" in figure.inner_text()  # steps: blocks from the output down
    assert page.locator(CHART).nth(3).locator("g.hm").count() == 10  # original + 9 (Lite0)
    assert_no_exception(page)
    figure.scroll_into_view_if_needed()
    screenshot(page, "trust-cascading")

    page.get_by_role("button", name="Run deletion and insertion").click()
    page.get_by_text("of 20 random orders (AUC", exact=False).first.wait_for(timeout=180_000)
    page.get_by_text("Step 8 of 32", exact=False).first.wait_for(timeout=30_000)
    assert_no_exception(page)
    screenshot(page, "trust-faithfulness")


def _red(locator) -> bool:
    """Whether the alert holding ``locator`` is drawn in red (Streamlit's error style):
    its background, or failing that its text, is clearly more red than green or blue."""
    colours = locator.evaluate(
        "e => { const box = e.closest(\"[data-testid='stAlertContainer']\") || e;"
        " return [getComputedStyle(box).backgroundColor, getComputedStyle(e).color]; }")
    for colour in colours:
        red, green, blue = (float(v) for v in re.findall(r"[0-9.]+", colour)[:3])
        if red > green + 20 and red > blue + 20:
            return True
    raise AssertionError(f"not red: {colours}")


def test_guided_backprop_fails_in_red_and_plain_words_on_desktop_and_phone(server, browser):
    """The method that fails on purpose, as a teacher would show it: Trust, Guided
    Backpropagation, the cascading randomisation; at 1280×720 and at 390×844."""
    for name, viewport, touch in (("desktop", {"width": 1280, "height": 720}, False),
                                  ("phone", {"width": 390, "height": 844}, True)):
        context = browser.new_context(viewport=viewport, has_touch=touch)
        page = context.new_page()
        try:
            page.goto(f"{server}/trust?method=guided_backprop")
            page.get_by_role("heading", name="Trust").first.wait_for(timeout=120_000)
            page.get_by_text("is here on purpose", exact=False).first.wait_for(timeout=120_000)
            verdict = page.locator("[data-testid='stAlertContentError']").filter(
                has_text="this map looks convincing, but it barely depends on the model")
            if name == "desktop":  # the phone's session finds the result computed already
                page.get_by_role("button", name="Run the cascading randomisation").click()
            verdict.first.wait_for(timeout=180_000)
            text = verdict.first.inner_text()
            assert text.rstrip().endswith("fails.") and "over 3 draws" in text, text
            assert _red(verdict.first)
            assert page.get_by_text("Rule: fails when the map stays almost unchanged",
                                    exact=False).first.is_visible()
            assert_no_exception(page)
            # the similarity figure, once Plotly has drawn it, names the Sobel baseline
            page.locator(CHART).filter(has_text="Sobel edges, no model").first.wait_for(
                timeout=60_000)
            verdict.first.scroll_into_view_if_needed()
            screenshot(page, f"trust-guided-backprop-{name}")
        finally:
            context.close()


def test_starting_another_check_says_it_stopped_the_running_one(server, page):
    """Starting deletion and insertion while the randomisation runs stops the
    randomisation at once, and the page says so (a toast), instead of silently."""
    page.goto(f"{server}/trust?method=smoothgrad")
    page.get_by_role("heading", name="Trust").first.wait_for(timeout=120_000)
    page.get_by_text("Edge-detector control").first.wait_for(timeout=120_000)
    # the SmoothGrad map first (the page runs until then; its layout still moves)
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stStatusWidget']\")"
        " || !document.querySelector(\"[data-testid='stStatusWidget']\").innerText"
        ".includes('Running')", timeout=180_000)
    page.get_by_role("button", name="Run the cascading randomisation").click(timeout=120_000)
    page.wait_for_function("() => document.body.innerText.includes('Computing randomising')",
                           timeout=60_000)  # its progress bar: it runs
    page.get_by_role("button", name="Run deletion and insertion").click(timeout=120_000)
    said = page.get_by_text("Stopped randomising", exact=False)
    said.first.wait_for(timeout=120_000)  # beside the new result (and in a passing toast)
    text = said.first.inner_text()
    assert "you asked for" in text and "random" in text.lower(), text
    page.get_by_text("of 20 random orders (AUC", exact=False).first.wait_for(timeout=300_000)
    assert page.get_by_text("when the model is randomised (Spearman", exact=False).count() == 0
    assert_no_exception(page)
