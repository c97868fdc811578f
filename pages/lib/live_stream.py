"""The Live page's parts: one worker per browser session, the WebRTC stream, the camera check.

The stream's frame callback runs on streamlit-webrtc's own thread, never in a
script run, so it must not touch ``st.session_state``. Each browser session gets
one :class:`LiveSession` (kept in its session state, created by the script); the
callback closes over that object only. The page hands the current settings to it
through a :class:`saliency_core.live.SettingsBox` on every run.

The callback does no work itself: it offers the newest frame to the session's
worker (which drops a frame still waiting) and returns the newest finished
overlay at once, so frames never queue and the delay stays at about one map's
compute time. streamlit-webrtc's own ``async_processing`` is off because the
worker already takes the work off the media thread.

Each frame's map is a job in the server's admission queue, like every other
model pass: the page checks one frame's cost against ``Limits.max_live_frame_seconds``
before the stream starts, and the worker waits for the frame's job (a live frame
is light, so it does not wait behind long jobs of other visitors).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import streamlit as st
import streamlit.components.v2  # noqa: F401  (registers st.components.v2)
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from pages.lib import image_choice, jobs, settings
from saliency_core.live import (
    LatestFrameWorker,
    LiveResult,
    LiveSettings,
    SettingsBox,
    process_frame,
)
from saliency_core.live.frames import draw_label
from saliency_core.live.network import read_ice_servers
from saliency_core.plotting import encode_png

STREAM_KEY = "live_stream"
MEDIA_CONSTRAINTS = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480},
                               "frameRate": {"ideal": 15, "max": 15}},
                     "audio": False}
"""640×480 at 15 frames/s: maps come at a few per second on a CPU, and every frame
sent costs the server a video decode and encode, so more would only take CPU from
the model."""
CHECK_KEY = "live_camera_check"
_JS = (Path(__file__).parent / "assets" / "camera_check.js").read_text(encoding="utf-8")
_camera_check = st.components.v2.component("saliency_camera_check", js=_JS)

CAMERA_MESSAGES = {
    "denied": ("**The browser does not let this page use the camera.** Allow camera access "
               "for this site (the camera icon in the address bar, or the site settings), "
               "then press START again. The other pages work without a camera."),
    "unavailable": ("**No camera can be used.** None is connected, or another program is "
                    "using it. Connect or free a camera and press START again; meanwhile the "
                    "Explore page takes uploads and samples."),
    "insecure": ("**This browser only gives a camera to pages served over HTTPS or from "
                 "localhost.** Open the app at http://localhost on this machine, or serve it "
                 "over HTTPS (see docs/guide.md, *Live across a network*)."),
}


@dataclass(frozen=True)
class StreamOutput:
    """The worker's result for one frame: the video frame to send back, and its facts."""

    frame: av.VideoFrame
    result: LiveResult


@dataclass
class LiveSession:
    """Everything one browser session's stream needs, shared with the media thread.

    Attributes:
        box: the current ``(LiveSettings, Estimate)`` of one frame, replaced by each
            script run (``None`` while the settings are above the budget).
        worker: explains the newest frame on its own thread.
        session_id: the browser session, for its slot in the admission queue.
    """

    box: SettingsBox = field(default_factory=SettingsBox)
    worker: LatestFrameWorker = field(init=False)
    session_id: str = ""

    def __post_init__(self):
        self.worker = LatestFrameWorker(self._process)
        self._frames = itertools.count()

    def _process(self, frame: av.VideoFrame) -> StreamOutput | None:
        boxed = self.box.get()
        if boxed is None:
            return None
        current, estimate = boxed
        pixels = frame.to_ndarray(format="rgb24")
        queue = jobs.queue()
        job = queue.submit(("live", id(self), next(self._frames)), self.session_id,
                           "a live frame", estimate,
                           lambda progress: process_frame(pixels, current))
        try:
            job.wait()
        finally:
            queue.leave(job)
        result = job.outcome()
        figures = self.worker.stats.snapshot()
        shown = result.frame
        if figures.maps:  # the live figures ride on the video: a page rerun is costly
            shown = draw_label(shown, f"{figures.fps:.1f} maps/s · "
                                      f"{1000 * figures.seconds_per_map:.0f} ms per map · "
                                      f"delay {1000 * figures.delay:.0f} ms", bottom=True)
        return StreamOutput(av.VideoFrame.from_ndarray(shown, format="rgb24"), result)

    def frame_callback(self, frame: av.VideoFrame) -> av.VideoFrame:
        """streamlit-webrtc's callback: offer ``frame``, return the newest overlay at once."""
        self.worker.submit(frame)
        output = self.worker.latest()
        return frame if output is None else output.frame

    def latest_result(self) -> LiveResult | None:
        """The newest explained frame, or ``None``."""
        output = self.worker.latest()
        return None if output is None else output.result

    def end(self) -> None:
        """The stream ended: end the map worker's thread now (not after its idle timeout);
        the next stream starts with a fresh worker and fresh figures."""
        ended, self.worker = self.worker, LatestFrameWorker(self._process)
        ended.stop()


@dataclass(frozen=True)
class Frozen:
    """What Freeze took when it was pressed: the explained frame on screen (``None``
    before the first one) and the settings it was explained with."""

    result: LiveResult | None
    settings: LiveSettings | None


FROZEN_KEY = "live_frozen"


def freeze_now(session: LiveSession) -> None:
    """The Freeze button's callback: take the frame on screen at once.

    A callback runs before the script of the click's run; the page's body (the model
    checks, the stream component) takes a while, during which newer frames come (once
    about 6 s of them), so the body only acts on what was taken here."""
    boxed = session.box.get()
    st.session_state[FROZEN_KEY] = Frozen(session.latest_result(),
                                          None if boxed is None else boxed[0])


def take_frozen() -> Frozen | None:
    """What Freeze took in this run's callback, once; ``None`` if it was not pressed."""
    return st.session_state.pop(FROZEN_KEY, None)


def end_stream() -> threading.Thread | None:
    """Stop this session's stream when the visitor is on another page: the WebRTC peer
    connection (its media and codec threads) and the map worker.

    The stream component is gone from the page, but its server side would otherwise wait
    for the browser to close the connection, or for the network to time out. The work
    runs on a thread of its own, so the next page does not wait; it is returned (tests
    join it), or ``None`` when nothing runs.
    """
    context = st.session_state.get(STREAM_KEY)
    # streamlit-webrtc has no public way to stop a stream whose component is not drawn
    webrtc = None if context is None else context._get_worker()  # noqa: SLF001
    session = st.session_state.get("live_session")
    if webrtc is None and (session is None or not session.worker.running):
        return None

    def stop() -> None:
        if webrtc is not None:
            webrtc.stop()  # first: no frame reaches the map worker afterwards
        if session is not None:
            session.end()

    thread = threading.Thread(target=stop, name="live-stream-end", daemon=True)
    thread.start()
    return thread


def live_session() -> LiveSession:
    """This browser session's :class:`LiveSession` (created on first use)."""
    if "live_session" not in st.session_state:
        st.session_state["live_session"] = LiveSession(session_id=jobs.session_id())
    return st.session_state["live_session"]


@st.cache_resource(max_entries=3, show_spinner=False)
def warm_up(model_key: str, token: str, _classifier) -> bool:
    """Trace the model's prediction and gradient once (a few seconds), before the stream
    starts, so the first frames do not wait for it. Once per model and weights."""
    process_frame(np.zeros((48, 64, 3), np.uint8), LiveSettings(_classifier))
    return True


def render_stream(session: LiveSession):
    """The WebRTC component: the camera goes up, the overlay comes back.

    No STUN server by default (``iceServers`` empty): on localhost and a local network
    the peers connect directly; ``[live] ice_servers`` in the config adds a TURN server.
    """
    ice = {"iceServers": read_ice_servers()}
    return webrtc_streamer(
        key=STREAM_KEY, mode=WebRtcMode.SENDRECV, rtc_configuration=ice,
        media_stream_constraints=MEDIA_CONSTRAINTS,
        video_frame_callback=session.frame_callback, async_processing=False,
        video_html_attrs={"autoPlay": True, "controls": False, "muted": True,
                          "style": {"width": "100%"}})


def camera_state() -> str | None:
    """Mount the camera check; the last state the browser reported, or ``None`` yet."""
    _camera_check(key=CHECK_KEY, height=0, on_camera_change=lambda: None)
    state = st.session_state.get(CHECK_KEY)
    return None if state is None else state.get("camera")


def show_camera_problem(state: str | None) -> bool:
    """Say what to do when the camera cannot be used; ``True`` if a problem was shown."""
    message = CAMERA_MESSAGES.get(state or "")
    if message is None:
        return False
    st.error(message, icon=":material/videocam_off:")
    return True


def freeze_to_explore(result: LiveResult, current: LiveSettings | None) -> None:
    """Send the explained frame to Explore with the same class, method, colours and fit
    (``current``: the settings it was explained with; ``None`` keeps Explore's)."""
    data = encode_png(result.source)
    digest = hashlib.sha256(data).hexdigest()
    name = f"live-{time.strftime('%Y%m%d-%H%M%S')}.png"
    image_choice.keep_as_upload(name, data, digest)
    if current is not None:
        settings.put("method", current.method)
        if current.method == "smoothgrad":
            settings.put(settings.param_setting_name("smoothgrad", "samples"),
                         current.samples)
        settings.put("fit", current.fit)
        settings.put("cmap", current.colormap)
        settings.put("opacity", current.opacity)
    settings.put("score", "logit")
    settings.put("class", result.class_index)
    settings.put("contrast", None)
    st.session_state["class_context"] = None  # keep this class for the new image
    st.switch_page("explore.py")
