"""The Live page in AppTest: its controls, settings that survive navigation, the settings
handed to the stream, and freeze before any frame."""

from __future__ import annotations

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
