"""The Live page in AppTest: its controls, settings that survive navigation, the settings
handed to the stream, and freeze before any frame."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from types import SimpleNamespace

import av
import numpy as np
import pytest
from apptest_support import ROUTER
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.slow
TIMEOUT = 240


@pytest.fixture(autouse=True)
def _no_webrtc_session(monkeypatch):
    # AppTest's stand-in Runtime has no session manager; streamlit-webrtc then takes
    # its own no-runtime path (as in its unit tests) instead of failing on the stand-in.
    import streamlit_webrtc.component

    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)


def live_app() -> AppTest:
    at = AppTest.from_file(str(ROUTER), default_timeout=TIMEOUT).run()
    at.switch_page("live.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Live"
    return at


def test_controls_reach_the_stream_and_survive_a_page_switch():
    at = live_app()
    handed = at.session_state["live_session"].box.get()[0]
    assert (handed.method, handed.pinned_class, handed.fit) == ("vanilla", None, "crop")
    at.radio(key="w_live_method").set_value("smoothgrad").run()
    at.slider(key="w_live_samples").set_value(5).run()
    at.selectbox(key="w_cmap").set_value("cividis").run()
    at.toggle(key="w_live_pin").set_value(True).run()
    at.selectbox(key="w_live_class").set_value(504).run()  # coffee mug
    assert not at.exception, [e.value for e in at.exception]
    handed = at.session_state["live_session"].box.get()[0]
    assert (handed.method, handed.samples, handed.colormap, handed.pinned_class) == (
        "smoothgrad", 5, "cividis", 504)
    at.switch_page("explore.py").run()
    at.switch_page("live.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="w_live_method").value == "smoothgrad"
    assert at.slider(key="w_live_samples").value == 5
    assert at.selectbox(key="w_live_class").value == 504
    at.toggle(key="w_live_pin").set_value(False).run()
    assert at.session_state["live_session"].box.get()[0].pinned_class is None


def test_freeze_before_any_frame_says_to_start_first():
    at = live_app()
    next(b for b in at.button if "Freeze" in b.label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("press START first" in w.value for w in at.warning)
    assert at.title[0].value == "Live"


def test_freeze_opens_the_explained_frame_in_explore_and_it_stays_there():
    import av
    import numpy as np
    from PIL import Image

    from saliency_core.samples import read_sample

    at = live_app()
    at.radio(key="w_live_method").set_value("smoothgrad").run()
    session = at.session_state["live_session"]
    import io

    pixels = np.asarray(Image.open(io.BytesIO(read_sample("coffee"))).convert("RGB"))
    session.worker.submit(av.VideoFrame.from_ndarray(pixels, format="rgb24"),
                          start_thread=False)
    assert session.worker.process_next()  # what the stream's thread does with a frame
    result = session.latest_result()
    assert result.frame.shape == pixels.shape
    next(b for b in at.button if "Freeze" in b.label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Explore"
    headline = next(m.value for m in at.markdown if "for **" in m.value)
    assert "SmoothGrad" in headline and f"(class {result.class_index})" in headline, headline
    assert at.slider(key="w_smoothgrad.samples").value == 3
    at.switch_page("explore.py").run()  # AppTest stays on the page it last switched to
    at.selectbox(key="w_cmap").set_value("cividis").run()  # a later change keeps the photo
    assert not at.exception, [e.value for e in at.exception]
    assert any("Using your earlier file, live" in c.value.replace("\\", "")
               for c in at.caption)
    assert f"(class {result.class_index})" in next(m.value for m in at.markdown
                                                   if "for **" in m.value)


def sample_frame(key: str) -> av.VideoFrame:
    from PIL import Image

    from saliency_core.samples import read_sample

    pixels = np.asarray(Image.open(io.BytesIO(read_sample(key))).convert("RGB"))
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


def explain_next(session, frame: av.VideoFrame):
    """What the stream's thread does with a frame; the newest explained frame after it."""
    session.worker.submit(frame, start_thread=False)
    assert session.worker.process_next()
    return session.latest_result()


def test_freeze_opens_the_frame_on_screen_when_it_was_pressed_not_a_later_one(monkeypatch):
    """Frames keep coming while the click's script run draws the page (once for about 6 s);
    Freeze takes the frame shown when it was pressed, in the button's callback."""
    from pages.lib import live_stream
    from saliency_core.plotting import encode_png

    at = live_app()
    session = at.session_state["live_session"]
    shown = explain_next(session, sample_frame("coffee"))
    drawn = live_stream.render_stream
    later = []

    def render_while_frames_come(session):
        later.append(explain_next(session, sample_frame("astronaut")))
        return drawn(session)

    monkeypatch.setattr(live_stream, "render_stream", render_while_frames_come)
    next(b for b in at.button if "Freeze" in b.label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Explore"
    assert at.session_state["last_upload"][2] == hashlib.sha256(
        encode_png(shown.source)).hexdigest()
    assert f"(class {shown.class_index})" in next(m.value for m in at.markdown
                                                  if "for **" in m.value)
    assert all(r.class_index != shown.class_index for r in later)  # a different picture


class StandInStream:
    """streamlit-webrtc's worker as far as leaving the page is concerned."""

    def __init__(self):
        self.stopped = threading.Event()

    def stop(self, timeout: float = 1.0) -> None:
        self.stopped.set()


def test_leaving_live_while_streaming_ends_the_stream_and_its_threads():
    at = live_app()
    session = at.session_state["live_session"]
    stream = StandInStream()  # the context keeps only a weak reference
    at.session_state["live_stream"]._set_worker(stream)
    worker = session.worker
    worker.submit(sample_frame("coffee"))  # the map worker's thread starts
    assert worker.running
    at.switch_page("explore.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert stream.stopped.wait(60)
    for _ in range(600):  # the stream ends on a thread of its own, the next page does not wait
        if not worker.running and not any(t.name in ("live-saliency", "live-stream-end")
                                          for t in threading.enumerate()):
            break
        time.sleep(0.1)
    assert not worker.running
    assert not [t.name for t in threading.enumerate()
                if t.name in ("live-saliency", "live-stream-end")]
    at.switch_page("live.py").run()  # and coming back starts afresh
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["live_session"].worker is not worker


def test_a_tiny_frame_is_said_instead_of_starting_forever():
    at = live_app()
    session = at.session_state["live_session"]
    tiny = av.VideoFrame.from_ndarray(np.full((1, 1, 3), 90, np.uint8), format="rgb24")
    assert explain_next(session, tiny) is None
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = " ".join(w.value for w in at.warning)
    assert "sends 1×1 frames, too small to explain" in said.replace("\\", ""), said
    assert not any("Starting" in c.value for c in at.caption)


def test_a_camera_that_sends_nothing_is_said_after_a_while(monkeypatch):
    from pages.lib import live_stream

    monkeypatch.setattr(live_stream, "render_stream",
                        lambda session: SimpleNamespace(state=SimpleNamespace(playing=True)))
    at = live_app()
    assert any("Starting" in c.value for c in at.caption)
    at.session_state["live_playing_since"] = time.monotonic() - 20  # 20 s without a frame
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No video has reached the server in 20 s" in w.value for w in at.warning)
    assert not any("Starting" in c.value for c in at.caption)
