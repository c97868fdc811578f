"""End-to-end: the Audit page under ``streamlit run`` in headless Chromium.

The server and browser fixtures follow ``tests/test_browser.py``: the real app on a
free port with ``SALIENCY_STUDIO_OFFLINE=1``, Debian's ``chromium`` through
Playwright's Python package.
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
from saliency_core.samples import SAMPLES, read_sample

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
OVERLAY = "[data-testid='stPlotlyChart'] .js-plotly-plot g.hm image"
CARD = "[class*='st-key-card_']"


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


def card_names(page) -> list[str]:
    """Each card's file name (the line after its border share)."""
    names = []
    for text in page.locator(CARD).all_inner_texts():
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        at = next(i for i, line in enumerate(lines) if line.startswith("Border share"))
        names.append(lines[at + 1])
    return names


def card_shares(page) -> list[float]:
    return [float(text.split("Border share ")[1].split()[0])
            for text in page.locator(CARD).all_inner_texts()]


def test_five_photos_give_five_cards_sorting_reorders_and_a_card_opens_explore(
        server, page, tmp_path):
    photos = []
    for key in SAMPLES:  # four bundled photos and a mirrored cat
        path = tmp_path / SAMPLES[key][1]
        path.write_bytes(read_sample(key))
        photos.append(path)
    from PIL import Image, ImageOps

    mirrored = tmp_path / "mirrored.png"
    ImageOps.mirror(Image.open(photos[0])).crop((0, 0, 300, 300)).save(mirrored)
    photos.append(mirrored)

    page.goto(server)  # the router first, as a visitor would (see layout.page_setup)
    page.wait_for_selector(OVERLAY, timeout=180_000)
    page.get_by_role("link", name="Audit").first.click()
    page.get_by_role("heading", name="Audit").first.wait_for(timeout=120_000)
    uploader = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    uploader.wait_for(state="attached", timeout=180_000)  # drawn once the model is loaded
    uploader.set_input_files([str(p) for p in photos])
    page.wait_for_function(f"document.querySelectorAll(\"{CARD}\").length === 5",
                           timeout=180_000)
    assert page.locator("[data-testid='stException']").count() == 0
    before, shares = card_names(page), card_shares(page)
    assert before == [p.name for p in photos]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "audit-gallery.png"), full_page=True)

    page.get_by_role("combobox", name="Sort by").click()
    page.get_by_role("option", name="Border share, highest first").first.click()
    expected = [name for _, name in sorted(zip(shares, before, strict=True),
                                           key=lambda pair: -pair[0])]
    page.wait_for_function(
        "([sel, first]) => { const c = document.querySelectorAll(sel);"
        " return c.length === 5 && c[0].innerText.includes(first); }",
        arg=[CARD, expected[0]], timeout=60_000)
    assert card_names(page) == expected and expected != before
    assert card_shares(page) == sorted(shares, reverse=True)

    first = page.locator(CARD).first
    label = first.inner_text().strip().splitlines()[0].split(" · ")[0]
    first.get_by_role("button", name="Open in Explore").click()
    page.get_by_role("heading", name="Explore").first.wait_for(timeout=60_000)
    page.wait_for_selector(OVERLAY, timeout=120_000)
    assert page.get_by_text(f"Using your earlier file, {expected[0]}").count() == 1
    assert label in page.locator("[data-testid='stMarkdown']").filter(
        has_text="Vanilla gradient").first.inner_text()
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "audit-opened-in-explore.png"), full_page=True)
