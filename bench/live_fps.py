"""Live page throughput: frames per second and delay with 1 and 2 streaming sessions.

Usage (from the repository root, in the project's virtual environment, with Debian's
chromium installed):

    python bench/live_fps.py [--sessions 1 2] [--seconds 30]

Starts ``streamlit run app.py`` on a free localhost port and, for each count in
``--sessions``, opens that many Live pages in one headless Chromium (one browser
context each, so each is its own Streamlit session) with Chromium's fake camera
(``--use-fake-device-for-media-stream``, 640×480 at up to 15 frames/s as the page
asks), presses START in each, waits until maps come back, then reads the page's own
figures (maps per second, time per map, delay; each over a 5-s window, refreshed every
5 s) every 5 s for ``--seconds`` and prints their medians per session. The default
model (EfficientNet-Lite0), vanilla gradient, top-1 class. The browser runs on the
same machine as the server, so its video work (camera, encoding, decoding) takes CPU
from the model too; the 1-minute load average is printed with each row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream"]
FIGURES = ("Frames per second", "Time per map", "Delay")


def read_figures(page) -> dict[str, float]:
    """The page's figures as numbers (fps, ms, ms)."""
    values = {}
    for label in FIGURES:
        box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
        text = box.locator("[data-testid='stMetricValue']").inner_text()
        values[label] = float(text.replace("ms", "").strip())
    return values


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, SALIENCY_STUDIO_OFFLINE="1",
               SALIENCY_STUDIO_CACHE=tempfile.mkdtemp(prefix="live-bench-cache-"))
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                               "--server.port", str(port), "--server.address", "127.0.0.1",
                               "--server.headless", "true"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("streamlit did not start")


def run(browser, url: str, sessions: int, seconds: float) -> list[tuple]:
    contexts, pages = [], []
    for _ in range(sessions):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(url + "/live")
        frame = page.wait_for_selector("iframe[title*='webrtc']",
                                       timeout=180_000).content_frame()
        frame.get_by_role("button", name="Start").click(timeout=60_000)
        contexts.append(context)
        pages.append(page)
    for page in pages:  # until maps come back everywhere
        page.wait_for_function(
            "() => [...document.querySelectorAll(\"[data-testid='stMetric']\")].some(m =>"
            " m.innerText.includes('Frames per second') &&"
            " parseFloat(m.querySelector(\"[data-testid='stMetricValue']\").innerText) > 0)",
            timeout=180_000)
    time.sleep(5)
    samples: list[list[dict]] = [[] for _ in pages]
    loads = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(5)
        loads.append(os.getloadavg()[0])
        for i, page in enumerate(pages):
            samples[i].append(read_figures(page))
    for context in contexts:
        context.close()
    rows = []
    for i, taken in enumerate(samples):
        rows.append((sessions, i + 1,
                     *(statistics.median(s[label] for s in taken) for label in FIGURES),
                     statistics.mean(loads)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    server, url = start_server()
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                                 args=ARGS)
            for count in args.sessions:
                rows.extend(run(browser, url, count, args.seconds))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"Live page, EfficientNet-Lite0, vanilla gradient, fake camera 640x480, "
          f"{os.cpu_count()} CPUs, medians over {args.seconds:.0f} s")
    print(f"{'sessions':>8} {'session':>7} {'maps/s':>7} {'ms per map':>10} "
          f"{'delay ms':>9} {'load (1 min)':>12}")
    for sessions, index, fps, per_map, delay, load in rows:
        print(f"{sessions:>8} {index:>7} {fps:>7.1f} {per_map:>10.0f} {delay:>9.0f} "
              f"{load:>12.1f}")


if __name__ == "__main__":
    main()
