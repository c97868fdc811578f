"""End-to-end: the Trust page under `streamlit run`, driven in headless Chromium.

The server and browser fixtures follow ``tests/test_browser.py``: Debian's ``chromium``
(found with ``shutil.which``) through Playwright's Python package, the app on a free
localhost port with ``SALIENCY_STUDIO_OFFLINE=1``. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
CHART = "[data-testid='stPlotlyChart'] .js-plotly-plot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``streamlit run app.py`` on a free localhost port; stopped afterwards."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = dict(os.environ, SALIENCY_STUDIO_OFFLINE="1", PYTHONUNBUFFERED="1")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    break
        except OSError:
            time.sleep(0.5)
        if process.poll() is not None:
            pytest.fail(f"streamlit exited early:\n{log.read_text()}")
    else:
        process.kill()
        pytest.fail(f"streamlit did not start:\n{log.read_text()}")
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


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
