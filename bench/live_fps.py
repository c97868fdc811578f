"""Live page throughput against its floor: maps per second with 1 and 2 streaming sessions.

Usage (from the repository root, in the project's virtual environment, with Debian's
chromium installed):

    python bench/live_fps.py [--sessions 1 2] [--seconds 30] [--fresh-cache]

In one run it measures:

* **the floor**: the forward + backward rate of the default model (EfficientNet-Lite0)
  at batch 1, raw TensorFlow on the app's own graph (the model's preprocessing and
  pre-softmax head, traced once), the fastest of 30 calls, in this process before the
  server starts and again after it stops (the faster counts: other processes can
  only add time);
* **a frame's own work**: the page's frame processor on a 640×480 frame (fit, the
  one model call, the map's colours, the labels), without video or browser;
* **the admission queue's cost per frame**: every Live frame is a job in the
  server's queue (a thread per job); a job that does nothing, against a plain call;
* **the page**: ``streamlit run app.py`` on a free localhost port, then for each count
  in ``--sessions`` that many Live pages in one headless Chromium (one browser context
  each, so each is its own Streamlit session) with Chromium's fake camera
  (``--use-fake-device-for-media-stream``, 640×480 at up to 15 frames/s as the page
  asks); it presses START in each, times how long until an overlay frame comes back
  (the class label's dark band in the top-left corner, which the fake camera never
  shows), then reads the page's own figures (maps per second, time per map, delay;
  each over a 5-s window, refreshed every 5 s) every 5 s for ``--seconds`` and prints
  their medians per session, next to the floor.

Vanilla gradient, each frame's top-1 class. The browser runs on the same machine as the
server, so its video work (the fake camera, VP8 encoding and decoding) takes CPU from the
model too; the load average is printed at the start and with each row. The server uses
the user's cache folder (the converted default model is reused); ``--fresh-cache`` gives
it an empty one, so the time to the first map includes converting the weights.
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
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SALIENCY_STUDIO_OFFLINE", "1")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream"]
FIGURES = ("Maps/s", "Time per map", "Delay")
WARM_LINE = "the default model is loaded and traced"
STREAM = "iframe[title*='webrtc']"
# The share of dark pixels along the left edge of the returned video's top-left corner,
# where the overlay writes the class on a black band (as tests/test_browser_live.py).
READ_VIDEO = """() => {
  const shown = [...document.querySelectorAll('video')].filter(e => e.offsetWidth > 0);
  const v = shown.sort((a, b) => b.offsetWidth - a.offsetWidth)[0];
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const corner = g.getImageData(0, 0, 4, Math.round(c.height / 10)).data;
  let dark = 0;
  for (let i = 0; i < corner.length; i += 4)
    if (corner[i] + corner[i + 1] + corner[i + 2] < 60) dark += 1;
  return dark / (corner.length / 4);
}"""


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def measure_floor(calls: int = 30) -> tuple[float, float]:
    """``(forward + backward calls per second at batch 1, frames per second of the page's
    own frame work)``, each from its fastest call.

    The first is raw TensorFlow on the app's graph; the second is
    :func:`saliency_core.live.process_frame` on a 640×480 frame (fit, the model call,
    the map's colours, the labels), with no video and no browser.
    """
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.live import LiveSettings, process_frame
    from saliency_core.models.registry import DEFAULT_MODEL_KEY
    from saliency_core.pipeline import load_classifier
    from saliency_core.samples import read_sample

    classifier, _ = load_classifier(DEFAULT_MODEL_KEY, allow_download=False)
    spec = tf.TensorSpec((None, *classifier.input_size, 3), tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec((), tf.int32)])
    def backward(x, c):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.gather(classifier.logit_model(classifier.preprocess(x), training=False),
                              c, axis=1)
        return tape.gradient(score, x)

    photo = load_image(read_sample("chelsea")).pixels
    frame = np.asarray(Image.fromarray(photo).resize((640, 480)))
    x, _ = fit_to_model(frame, classifier.input_size)
    batch = tf.constant(x[None].astype(np.float32))
    settings = LiveSettings(classifier)

    def fastest(fn) -> float:
        fn()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    floor = fastest(lambda: backward(batch, tf.constant(281)).numpy())
    frame_work = fastest(lambda: process_frame(frame, settings))
    return 1.0 / floor, 1.0 / frame_work


def measure_queue(jobs: int = 300) -> tuple[float, float]:
    """``(microseconds per job through the admission queue, per plain call)`` for a job that
    does nothing, submitted, waited for and left as a Live frame's is."""
    from saliency_core.safety.jobs import AdmissionQueue, Estimate

    queue = AdmissionQueue()
    estimate = Estimate(seconds=0.05)

    def nothing(progress):
        return None

    start = time.perf_counter()
    for i in range(jobs):
        job = queue.submit(("live", i), "bench", "a live frame", estimate, nothing)
        try:
            job.wait()
        finally:
            queue.leave(job)
        job.outcome()
    queued = (time.perf_counter() - start) / jobs
    start = time.perf_counter()
    for _ in range(jobs):
        nothing(None)
    plain = (time.perf_counter() - start) / jobs
    return queued * 1e6, plain * 1e6


def start_server(fresh_cache: bool) -> tuple[subprocess.Popen, str, Path, float]:
    """``(process, url, log file, seconds from start until the model was warm)``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, SALIENCY_STUDIO_OFFLINE="1", PYTHONUNBUFFERED="1")
    if fresh_cache:
        env["SALIENCY_STUDIO_CACHE"] = tempfile.mkdtemp(prefix="live-bench-cache-")
    log = Path(tempfile.mkdtemp(prefix="live-bench-")) / "streamlit.log"
    started = time.monotonic()
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                                   "--server.port", str(port), "--server.address", "127.0.0.1",
                                   "--server.headless", "true",
                                   "--browser.gatherUsageStats", "false"],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    healthy = False
    while time.monotonic() < deadline:  # healthy, then warm (the lifespan's log line)
        if server.poll() is not None:
            raise SystemExit(f"streamlit exited:\n{log.read_text()}")
        if not healthy:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                healthy = True
            except OSError:
                pass
        if healthy and WARM_LINE in log.read_text(errors="replace"):
            return server, url, log, time.monotonic() - started
        time.sleep(0.25)
    server.kill()
    raise SystemExit(f"the server did not warm up within 300 s:\n{log.read_text()}")


def read_figures(page) -> dict[str, float] | None:
    """The page's figures as numbers (maps/s, ms, ms), or ``None`` while not yet measured."""
    values = {}
    for label in FIGURES:
        box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
        if not box.count():
            return None
        text = box.locator("[data-testid='stMetricValue']").inner_text(timeout=10_000)
        try:
            values[label] = float(text.replace("ms", "").strip())
        except ValueError:  # "—" before the first map
            return None
    return values


def open_stream(browser, url: str) -> tuple:
    """Open the Live page in a new context and press START; ``(context, page, frame,
    seconds from opening until START was pressed)``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    opened = time.monotonic()
    page.goto(url + "/live")
    frame = page.wait_for_selector(STREAM, timeout=180_000).content_frame()
    frame.get_by_role("button", name="Start").click(timeout=60_000)
    return context, page, frame, time.monotonic() - opened


def wait_for_overlay(frame, timeout: float = 180.0) -> float:
    """Seconds until a frame with the overlay's label comes back."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        dark = frame.evaluate(READ_VIDEO)
        if dark is not None and dark > 0.4:
            return time.monotonic() - start
        time.sleep(0.1)
    raise SystemExit(f"no overlay frame came back within {timeout:.0f} s")


def run(browser, url: str, sessions: int, seconds: float) -> list[dict]:
    streams = [open_stream(browser, url) for _ in range(sessions)]
    first_maps = [wait_for_overlay(frame) for _, _, frame, _ in streams]
    time.sleep(6)  # a full 5-s window of maps before the first reading
    samples: list[list[dict]] = [[] for _ in streams]
    loads = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(5)
        loads.append(os.getloadavg()[0])
        for i, (_, page, _, _) in enumerate(streams):
            figures = read_figures(page)
            if figures is not None:
                samples[i].append(figures)
    for context, _, _, _ in streams:
        context.close()
    rows = []
    for i, taken in enumerate(samples):
        rows.append({"sessions": sessions, "session": i + 1, "start": streams[i][3],
                     "first map": first_maps[i], "load": statistics.mean(loads),
                     **{label: (statistics.median(s[label] for s in taken) if taken
                                else float("nan")) for label in FIGURES}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fresh-cache", action="store_true",
                        help="an empty cache folder for the server (weights converted anew)")
    args = parser.parse_args()
    from saliency_core.quiet_tensorflow import import_tensorflow

    start_load = load()
    import_tensorflow()
    floor_before, frames_before = measure_floor()
    queued_us, plain_us = measure_queue()
    print(f"floor before: {floor_before:.1f} forward + backward per second at batch 1, "
          f"{frames_before:.1f} frames per second of frame work; queue: {queued_us:.0f} µs "
          f"per job (plain call {plain_us:.1f} µs)", flush=True)
    from playwright.sync_api import sync_playwright

    server, url, _log, warm = start_server(args.fresh_cache)
    print(f"server warm {warm:.1f} s after its start", flush=True)
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
    floor_after, frames_after = measure_floor()
    floor, frames = max(floor_before, floor_after), max(frames_before, frames_after)
    print()
    print(f"Live page, EfficientNet-Lite0, vanilla gradient, top-1 class, Chromium's fake "
          f"camera 640x480, {os.cpu_count()} CPUs, medians over {args.seconds:.0f} s")
    print(f"Load average (1, 5, 15 min) at the start: {start_load}; at the end: {load()}")
    print(f"Floor: {floor:.1f} maps/s (forward + backward at batch 1, fastest call; "
          f"{floor_before:.1f} before the page runs, {floor_after:.1f} after)")
    print(f"A frame's own work (fit, one model call, colours, labels; no video, no browser): "
          f"{frames:.1f} frames/s, {frames / floor:.2f} × the floor")
    print(f"Admission queue: {queued_us:.0f} µs per frame's job (a plain call: "
          f"{plain_us:.1f} µs)")
    print(f"Server warm (default model loaded and traced) {warm:.1f} s after its start")
    print()
    print("| sessions | session | START after | first map after START | maps/s | floor maps/s "
          "| × floor | ms per map | delay ms | load (1 min) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rate = row["Maps/s"]
        print(f"| {row['sessions']} | {row['session']} | {row['start']:.1f} s | "
              f"{row['first map']:.1f} s | {rate:.1f} | {floor:.1f} | {rate / floor:.2f} | "
              f"{row['Time per map']:.0f} | {row['Delay']:.0f} | {row['load']:.1f} |")


if __name__ == "__main__":
    main()
