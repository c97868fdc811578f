"""End-to-end: the Live page streams Chromium's fake camera through the server and back.

Chromium runs with ``--use-fake-device-for-media-stream`` (a synthetic camera: a
moving pattern and a clock) and ``--use-fake-ui-for-media-stream`` (no permission
prompt), as in ``browser_support.CHROMIUM_ARGS``. The START button lives inside
streamlit-webrtc's iframe. Frames come back with the overlay when the top-left
corner carries the class label's black band, which the fake camera never shows.
"""

from __future__ import annotations

import os
import time

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, OVERLAY, SERVER_PIDS, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]
STREAM = "iframe[title*='webrtc']"

# The share of dark pixels along the left edge of the label band (top-left corner, where the
# fake camera is green) and a checksum of the whole picture.
READ_VIDEO = """() => {
  const shown = [...document.querySelectorAll('video')].filter(e => e.offsetWidth > 0);
  const v = shown.sort((a, b) => b.offsetWidth - a.offsetWidth)[0];  // the returned stream
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const corner = g.getImageData(0, 0, 4, Math.round(c.height / 10)).data;  // left edge
  let dark = 0;
  for (let i = 0; i < corner.length; i += 4)
    if (corner[i] + corner[i + 1] + corner[i + 2] < 60) dark += 1;
  const all = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < all.length; i += 97) sum = (sum * 31 + all[i]) % 1000000007;
  return {dark: dark / (corner.length / 4), sum: sum, width: c.width, height: c.height};
}"""


def start_stream(page):
    frame = page.wait_for_selector(STREAM, timeout=120_000).content_frame()
    frame.get_by_role("button", name="Start").click(timeout=60_000)
    return frame


def wait_for_overlay_frames(page, frame, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = frame.evaluate(READ_VIDEO)
        if seen and seen["dark"] > 0.4:
            return seen
        time.sleep(0.5)
    screenshot(page, "live-no-overlay")
    pytest.fail(f"no frame with the overlay's label came back: {seen}")


def metric(page, label: str) -> str:
    box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text()


def server_threads(server: str) -> int:
    """The threads of the server's process now."""
    return len(os.listdir(f"/proc/{SERVER_PIDS[server]}/task"))


def test_the_stream_comes_back_with_the_overlay_changes_and_reports_its_rate(server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page = context.new_page()
        page.goto(server + "/live")
        page.get_by_role("heading", name="Live").first.wait_for(timeout=120_000)
        page.wait_for_selector(STREAM, timeout=120_000)
        time.sleep(2)  # the page's own threads have started
        idle = server_threads(server)
        frame = start_stream(page)
        first = wait_for_overlay_frames(page, frame)
        # 4:3 like the camera's frames (the browser may lower the resolution when busy)
        assert first["width"] * 3 == first["height"] * 4, first
        sums = {first["sum"]}
        for _ in range(8):  # the picture moves (and so does its map)
            time.sleep(0.5)
            seen = frame.evaluate(READ_VIDEO)
            assert seen["dark"] > 0.4  # still overlaid
            sums.add(seen["sum"])
        assert len(sums) >= 3, sums
        page.wait_for_function(
            "() => [...document.querySelectorAll(\"[data-testid='stMetric']\")].some(m =>"
            " m.innerText.includes('Maps/s') &&"
            " parseFloat(m.querySelector(\"[data-testid='stMetricValue']\").innerText) > 0)",
            timeout=30_000)
        assert float(metric(page, "Maps/s")) > 0
        assert metric(page, "Time per map").endswith(" ms")
        assert page.locator("[data-testid='stException']").count() == 0
        screenshot(page, "live-streaming")

        page.get_by_role("button", name="Freeze and open in Explore").click()
        page.get_by_role("heading", name="Explore").first.wait_for(timeout=60_000)
        page.wait_for_selector(OVERLAY, timeout=120_000)
        assert page.get_by_text("Using your earlier file, live-").count() == 1
        assert page.locator("[data-testid='stException']").count() == 0
        screenshot(page, "live-frozen-in-explore")
        # the stream's threads (media, codecs, the map worker) end with it, not minutes later
        for _ in range(120):
            if server_threads(server) <= idle + 2:
                break
            time.sleep(0.5)
        assert server_threads(server) <= idle + 2, (idle, server_threads(server))
    finally:
        context.close()
    outside = [u for u in requests if not u.startswith((server, "data:", "blob:"))]
    assert not outside, outside  # no STUN server, fonts or anything else


@pytest.fixture(scope="module")
def asking_browser(browser):
    """A second Chromium (same Playwright) with the fake camera but without the flag that
    grants it silently, so a denied permission stays denied."""
    instance = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"])
    yield instance
    instance.close()


def test_a_denied_camera_says_what_to_do_and_the_app_keeps_working(server, asking_browser):
    context = asking_browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Browser.setPermission", {"permission": {"name": "camera"},
                                           "setting": "denied", "origin": server})
        page.goto(server + "/live")
        page.get_by_role("heading", name="Live").first.wait_for(timeout=120_000)
        frame = start_stream(page)
        message = page.get_by_text("The browser does not let this page use the camera")
        message.wait_for(timeout=30_000)
        # the page's words only: the component's raw "NotAllowedError" is hidden beside them
        frame.get_by_text("NotAllowedError").wait_for(state="hidden", timeout=10_000)
        assert page.locator("[data-testid='stException']").count() == 0
        screenshot(page, "live-camera-denied")
        page.get_by_role("link", name="Explore").click()
        page.wait_for_selector(OVERLAY, timeout=120_000)
        assert page.locator("[data-testid='stException']").count() == 0
    finally:
        context.close()


def test_a_camera_that_sends_no_picture_is_said_instead_of_starting_forever(server, browser,
                                                                             tmp_path):
    """A 1×1 virtual camera: the browser sends no video at all, and the page used to say
    "Starting" for ever."""
    one_pixel = tmp_path / "one-pixel.y4m"
    one_pixel.write_bytes(b"YUV4MPEG2 W1 H1 F15:1 Ip A1:1 C420jpeg\n"
                          + b"".join(b"FRAME\n" + bytes([8 * i, 128, 128]) for i in range(30)))
    instance = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={one_pixel}"])
    try:
        page = instance.new_context(viewport={"width": 1280, "height": 720}).new_page()
        page.goto(server + "/live")
        page.get_by_role("heading", name="Live").first.wait_for(timeout=120_000)
        start_stream(page)
        page.get_by_text("No video has reached the server in").wait_for(timeout=90_000)
        assert page.get_by_text("Starting: the first map").count() == 0
        assert page.locator("[data-testid='stException']").count() == 0
        screenshot(page, "live-no-video")
    finally:
        instance.close()
