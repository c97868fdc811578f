"""Memory soak: 200 map requests against the real app; prints server RSS as a table.

Usage (from the repository root, in the project's virtual environment, with Debian's
chromium installed):

    python bench/memory_soak.py [--requests 200] [--every 20]

Starts ``streamlit run app.py`` on a free localhost port, then opens the Explore page
``--requests`` times in headless Chromium, each time for another sample, class and
method (so most maps are new and the caches must evict), and reads the server's
resident memory from /proc. Flat memory after warm-up shows the caches are bounded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OVERLAY = "[data-testid='stPlotlyChart'] .js-plotly-plot g.hm image"
SAMPLES = ["chelsea", "coffee", "astronaut", "rocket"]
METHODS = ["vanilla", "gradient_x_input", "gradcam", "smoothgrad"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, SALIENCY_STUDIO_OFFLINE="1",
               SALIENCY_STUDIO_CACHE=tempfile.mkdtemp(prefix="soak-cache-"))
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                               "--server.port", str(port), "--server.headless", "true"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        rows = [(0, rss_mb(server.pid), 0.0)]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            start = time.monotonic()
            for i in range(1, args.requests + 1):
                query = (f"?sample={SAMPLES[i % 4]}&class={(i * 37) % 1000}"
                         f"&method={METHODS[i % len(METHODS)]}")
                page.goto(url + "/" + query)
                page.wait_for_selector(OVERLAY, timeout=120_000)
                if i % args.every == 0:
                    rows.append((i, rss_mb(server.pid), time.monotonic() - start))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{'requests':>8} {'server RSS':>11} {'elapsed':>9}")
    for count, rss, elapsed in rows:
        print(f"{count:>8} {rss:>8.0f} MB {elapsed:>7.0f} s")
    warm = [r[1] for r in rows if r[0] >= args.requests // 2]
    print(f"\nsecond half: min {min(warm):.0f} MB, max {max(warm):.0f} MB")


if __name__ == "__main__":
    main()
