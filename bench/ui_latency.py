"""What a user waits for, measured in headless Chromium against a real server; prints a table.

Usage (from the repository root, in the project's virtual environment with the dev
requirements, and Debian's ``chromium``):

    python bench/ui_latency.py [--repeats 3]

Starts ``streamlit run app.py`` on a free localhost port (offline, MobileNetV2's
weights from ../shared/models when present) and times, from the browser's side:

* cold start: from starting the server to the first overlay, with the browser asking
  as soon as the server answers its health check (the first visitor arrives at once),
  next to its floor: a fresh Python importing Streamlit and TensorFlow, the fastest
  of 3, measured in the same run;
* a warm reload of the page to its overlay;
* upload to overlay (a second photo);
* class switch (the second class of the top 5) to the new map;
* method switch (to Grad-CAM, and to SmoothGrad with 25 samples) to the new map;
* the Compare grid (4 methods x 3 classes), first visit and a revisit;
* model switch to MobileNetV2 (first time: build, weights, tracing) to the new map.

Each step ends when the overlay's heat map in the page has new values (or, for
Compare, when the grid's 12 heat maps are drawn). Medians over ``--repeats`` where a
step can be repeated; the first-time steps are measured once.

Then, without a browser, the server's own time for a class switch: an AppTest rerun
of Explore after picking another of the top 5 classes (the map computed, and again
from the cache), which is the script run the server does between click and figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser_support import CHROMIUM, CHROMIUM_ARGS, OVERLAY, free_port  # noqa: E402
from test_browser import choose  # noqa: E402

FINGERPRINT = """() => {
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    const fig = plots.find(p => p.layout && p.layout.sliders && p.layout.sliders.length
                                && (p.data || []).some(t => t.type === 'heatmap'));
    if (!fig) return null;
    const z = fig.data.find(t => t.type === 'heatmap').z;
    return z.bdata || JSON.stringify(z).slice(0, 5000);
}"""
NEW_MAP = f"(before) => {{ const now = ({FINGERPRINT})(); return now !== null && now !== before; }}"
GRID_DRAWN = """(cells) => Array.from(document.querySelectorAll('.js-plotly-plot')).reduce(
    (n, p) => n + (p.data || []).filter(t => t.type === 'heatmap').length, 0) >= cells
    && !document.querySelector('[data-testid="stProgress"]')"""
"""Compare draws one small figure per cell (a heat map each, plus the colour bar's own)."""


def start_server(port: int, log: Path) -> tuple[subprocess.Popen, float]:
    """``streamlit run app.py``; returns the process and the time its health check answered."""
    env = dict(os.environ, SALIENCY_STUDIO_OFFLINE="1", PYTHONUNBUFFERED="1")
    weights = ROOT.parent / "shared" / "models" / "mobilenet_v2_1.0_224_dequant.weights.h5"
    if weights.is_file():
        env.setdefault("SALIENCY_WEIGHTS_MOBILENET_V2", str(weights))
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                        timeout=2) as response:
                if response.read() == b"ok":
                    return process, time.perf_counter()
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            break
    process.kill()
    raise SystemExit(f"streamlit did not start:\n{log.read_text()}")


def import_floor(runs: int = 3) -> float:
    """Seconds for a fresh Python to import Streamlit and TensorFlow (the fastest of
    ``runs``): what any server start pays before it can compute a map."""
    code = ("from saliency_core.quiet_tensorflow import import_tensorflow; "
            "import streamlit; import_tensorflow()")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def wait_new_map(page, before, timeout_s: float = 300) -> None:
    page.wait_for_function(NEW_MAP, arg=before, timeout=timeout_s * 1000, polling=50)


def timed_change(page, action, timeout_s: float = 300) -> float:
    """Seconds from ``action()`` to a new overlay map in the page."""
    before = page.evaluate(FINGERPRINT)
    start = time.perf_counter()
    action()
    wait_new_map(page, before, timeout_s)
    return time.perf_counter() - start


def click_class(page, nth: int) -> None:
    radio = page.locator("[data-testid='stRadio']").filter(has_text="Class to explain")
    radio.locator("label").filter(has_text="%").nth(nth).click()


def measure_server_class_switch(repeats: int) -> list[tuple[str, float, str]]:
    """Seconds of an Explore rerun after a class change, in-process with AppTest."""
    import numpy as np
    from apptest_support import new_app

    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.pipeline import load_classifier, predict
    from saliency_core.samples import read_sample

    clf = load_classifier("efficientnet_lite0")[0]
    x, _ = fit_to_model(load_image(read_sample("chelsea")).pixels, clf.input_size)
    top = [p.index for p in predict(clf, np.asarray(x))]
    at = new_app(300)
    fresh, cached = [], []
    for n in range(4 + max(2, repeats)):  # 4 classes computed, then cached ones
        target = top[1 + n % 4] if n < 4 else top[1 + n % 2]
        start = time.perf_counter()
        at.radio(key="w_class_pick").set_value(target).run()
        (fresh if n < 4 else cached).append(time.perf_counter() - start)
        if at.exception:
            raise SystemExit(at.exception[0].value)
    return [("server: Explore rerun after a class switch (map computed)",
             statistics.median(fresh), f"median of {len(fresh)}, AppTest"),
            ("server: Explore rerun after a class switch (map cached)",
             statistics.median(cached), f"median of {len(cached)}, AppTest")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if CHROMIUM is None:
        raise SystemExit("Debian's chromium is needed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from saliency_core.samples import read_sample

    photo = Path(tempfile.mkdtemp(prefix="ui-latency-")) / "coffee.png"
    photo.write_bytes(read_sample("coffee"))
    log = photo.parent / "streamlit.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    floor = import_floor()
    launched = time.perf_counter()
    process, answered = start_server(port, log)
    rows: list[tuple[str, float, str]] = [("server start to health check", answered - launched,
                                           "once")]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector(OVERLAY, timeout=300_000)
            wait_new_map(page, None)
            rows.append(("cold start: server answers → first overlay",
                         time.perf_counter() - answered, "once"))
            rows.append(("server start → first overlay", time.perf_counter() - launched,
                         "once"))
            rows.append(("floor: a fresh Python imports Streamlit and TensorFlow", floor,
                         "fastest of 3"))

            reloads = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                page.reload()
                page.wait_for_selector(OVERLAY, timeout=120_000)
                wait_new_map(page, None)
                reloads.append(time.perf_counter() - start)
            rows.append(("warm reload → overlay", statistics.median(reloads),
                         f"median of {args.repeats}"))

            switches = [timed_change(page, lambda n=n: click_class(page, 1 + n % 2))
                        for n in range(args.repeats)]
            rows.append(("class switch → new map", statistics.median(switches),
                         f"median of {args.repeats}"))

            for method in ("Grad-CAM", "SmoothGrad"):
                first = timed_change(page, lambda m=method: choose(page, "Method", m))
                rows.append((f"method switch to {method} → new map", first, "once"))
                back = timed_change(page, lambda: choose(page, "Method", "Vanilla gradient"))
                rows.append(("method switch back to vanilla (cached) → map", back, "once"))

            page.get_by_text("Upload", exact=True).click()
            page.get_by_text("Upload a photo to begin").wait_for(timeout=30_000)
            start = time.perf_counter()
            page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
                str(photo))
            page.wait_for_selector(OVERLAY, timeout=300_000)
            wait_new_map(page, None)
            rows.append(("upload → overlay (new photo)", time.perf_counter() - start, "once"))

            for visit in ("first visit", "revisit"):
                start = time.perf_counter()
                page.goto(f"{url}/compare")
                page.wait_for_function(GRID_DRAWN, arg=12, timeout=600_000, polling=100)
                rows.append((f"Compare grid, 4 methods × 3 classes ({visit})",
                             time.perf_counter() - start, "once"))

            page.goto(url)
            page.wait_for_selector(OVERLAY, timeout=120_000)
            wait_new_map(page, None)
            rows.append(("model switch to MobileNetV2 (first time) → map",
                         timed_change(page, lambda: choose(page, "Classifier", "MobileNetV2"),
                                      600), "once"))
            rows.append(("model switch back to EfficientNet-Lite0 → map",
                         timed_change(page, lambda: choose(
                             page, "Classifier", "EfficientNet-Lite0")),  # the picker's name
                         "once"))
            browser.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    rows += measure_server_class_switch(args.repeats)
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'step':<{width}} | seconds | |\n|{'-' * (width + 2)}|---:|---|")
    for step, seconds, note in rows:
        print(f"| {step:<{width}} | {seconds:.2f} | {note} |")
    print(f"\n{os.cpu_count()} CPUs; load average at the start {load}, at the end "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
