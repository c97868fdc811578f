"""What every headless-Chromium test module shares: the real server and the browser.

Playwright's Python package drives Debian's ``chromium`` (found with ``shutil.which``);
Playwright's own browser download is never used. The app runs under ``streamlit run``
on a free localhost port with ``SALIENCY_STUDIO_OFFLINE=1``. Screenshots go to
``test-artifacts/``. Its fixtures (``server``, ``fresh_server``, ``browser``,
``page``) reach every test module through ``pytest_plugins`` in ``conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 # a fake webcam that needs no permission prompt, for the Camera source
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
OVERLAY = "[data-testid='stPlotlyChart'] .js-plotly-plot g.hm image"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVER_PIDS: dict[str, int] = {}
"""The process id of each running test server, by URL (for memory and CPU readings)."""
SERVER_LOGS: dict[str, Path] = {}
"""The log file of each running test server, by URL."""


def run_server(tmp_path_factory, limits_toml: str = ""):
    """Start ``streamlit run app.py`` on a free localhost port, yield its URL, stop it.

    ``limits_toml``: lines for the ``[limits]`` table of the server's config file.
    """
    port = free_port()
    folder = tmp_path_factory.mktemp("server")
    log = folder / "streamlit.log"
    env = dict(os.environ, SALIENCY_STUDIO_OFFLINE="1", PYTHONUNBUFFERED="1")
    if limits_toml:
        config = folder / "saliency_studio.toml"
        config.write_text("[limits]\n" + limits_toml + "\n")
        env["SALIENCY_STUDIO_CONFIG"] = str(config)
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
    SERVER_PIDS[url] = process.pid
    SERVER_LOGS[url] = log
    yield url
    SERVER_PIDS.pop(url, None)
    SERVER_LOGS.pop(url, None)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def launch_browser():
    """Yield a headless Chromium, skipping the test with a reason when it is missing."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free localhost port, shared by the tests of a module."""
    yield from run_server(tmp_path_factory)


@pytest.fixture
def fresh_server(tmp_path_factory):
    """A newly started app whose first request has not happened yet."""
    yield from run_server(tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, shared by the tests of a module."""
    yield from launch_browser()


@pytest.fixture
def page(browser):
    """A fresh desktop-sized browser context (downloads allowed) and its page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()
