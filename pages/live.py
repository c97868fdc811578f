"""Live: the camera stream with the saliency map of the current (or a pinned) class.

The stream needs the optional ``[live]`` extra (streamlit-webrtc, with aiortc and av).
Without it this page says how to install it, and every other page works.
"""

from __future__ import annotations

import time

import streamlit as st

from pages.lib import jobs, layout, own_models, page, settings
from pages.lib.image_choice import FIT_LABELS
from saliency_core.imaging import FIT_MODES
from saliency_core.labels import shorten_label
from saliency_core.live import LIVE_METHODS, LiveSettings
from saliency_core.methods import Work
from saliency_core.pipeline import batches_classes
from saliency_core.plotting import COLORMAP_LABELS, COLORMAPS
from saliency_core.safety.budget import OverBudgetError
from saliency_core.safety.limits import load_limits
from saliency_core.serve import LIVE_INSTALL

try:
    from pages.lib import live_stream
except ImportError as exc:  # the [live] extra is not installed
    live_stream = None
    MISSING = exc.name if exc.name and exc.name.replace(".", "").isidentifier() else None

FIGURES_EVERY = 5.0  # seconds between refreshes of the figures under the video
# Seconds of a started stream without a single frame before the page says so (a camera that
# sends nothing; a docstring here would be drawn on the page by Streamlit's "magic").
NO_VIDEO_AFTER = 15.0


def pick_live_class(class_names: tuple[str, ...], session: live_stream.LiveSession
                    ) -> int | None:
    """Top-1 of each frame, or a pinned class (at first the class on screen when pinned)."""
    pinned = settings.get("live_class")
    if pinned is not None and not 0 <= pinned < len(class_names):
        pinned = None
        settings.put("live_class", None)

    def toggled() -> None:
        shown = session.latest_result()
        on = st.session_state["w_live_pin"]
        settings.put("live_class", (shown.class_index if shown else 0) if on else None)

    st.session_state["w_live_pin"] = pinned is not None
    st.toggle("Pin a class", key="w_live_pin", on_change=toggled,
              help="Off, each frame's map explains that frame's top class, so the map "
                   "follows whatever the model sees. On, every frame explains one class.")
    if pinned is None:
        st.caption("Explaining each frame's **top class**.")
        return None
    return settings.bind("live_class", st.selectbox, options=list(range(len(class_names))),
                         label="Pinned class (type to search)",
                         format_func=lambda i: f"{shorten_label(class_names[i])} (#{i})")


MAPS_PER_SECOND = "Maps/s"
# The rate's label: "Maps per second" was cut off in a quarter of the page at 1280 px.


def show_measured(figures, fps, per_map, delay, dropped) -> None:
    """The stream's figures in four metric columns."""
    fps.metric(MAPS_PER_SECOND, f"{figures.fps:.1f}",
               help="Maps per second: frames explained per second over the last 5 s "
                    f"(refreshed every {FIGURES_EVERY:.0f} s; the video shows it live).")
    per_map.metric("Time per map", f"{1000 * figures.seconds_per_map:.0f} ms",
                   help="Fitting, predicting and explaining one frame.")
    delay.metric("Delay", f"{1000 * figures.delay:.0f} ms",
                 help="From a frame's arrival at the server to its map being ready.")
    dropped.metric("Frames skipped", f"{figures.dropped}",
                   help="Frames that arrived while a map was being computed and were "
                        "replaced by a newer one: the map is always of a recent frame.")


page.start_page("Live", "Point your camera at a mug, a hand or a pen: the map follows what "
                "the model looks at as the object moves.", notices=False)
if live_stream is None:
    missing = f" (the `{MISSING}` module is missing)" if MISSING else ""
    st.warning("**The Live page needs the optional camera-stream packages**, which are not "
               f"installed with this app{missing}. Install them with `{LIVE_INSTALL}` (or "
               "`pip install -r requirements.txt` in a clone of the repository), then "
               "restart the app. Every other page works without them, and Explore can "
               "still explain a single webcam snapshot.", icon=":material/videocam_off:")
    st.stop()

model = page.open_model()
model_key, classifier, token = model.key, model.classifier, model.token
session = live_stream.live_session()
frozen = live_stream.take_frozen()  # Freeze was pressed: open its frame before anything else
if frozen is not None and frozen.result is not None:
    live_stream.freeze_to_explore(frozen.result, frozen.settings)
live_limit = load_limits().max_live_frame_seconds


def check_frame(method: str, params: dict):
    """One frame's estimate, or a refusal shown in place of the stream (and the page stops).

    A vanilla frame takes its class from its own gradient call; SmoothGrad first needs a
    forward pass for the class of the clean frame (``process_frame``)."""
    extra = None if batches_classes(method) else Work(forward=1)
    try:
        return jobs.check_method(classifier, method, params, extra=extra,
                                 label="One live frame", max_seconds=live_limit)
    except OverBudgetError as exc:
        session.box.set(None)
        st.error("**This model is too slow for a live stream.** "
                 f"{layout.escape_markdown(str(exc))} Explore computes maps of single photos "
                 "with a larger time limit.", icon=":material/hourglass_disabled:")
        st.stop()


check_frame("vanilla", {})  # the lightest frame: warming up costs about as much
with st.spinner("Preparing the model for the stream…"):
    live_stream.warm_up(model_key, token, classifier)

controls, display = st.columns([1, 2], gap="large")
with controls:
    st.markdown(f"**Model:** {layout.escape_markdown(own_models.model_display_name(model_key))}"
                " (change it in the sidebar).")
    st.subheader("Class")
    pinned = pick_live_class(classifier.class_names, session)
    st.subheader("Method")
    method = settings.bind("live_method", st.radio, options=list(LIVE_METHODS),
                           label="Method", format_func=LIVE_METHODS.get,
                           help="The vanilla gradient needs one gradient per frame. "
                                "SmoothGrad averages a few noisy copies: calmer, slower. "
                                "LayerCAM (one pass to the last convolutional layer) shows "
                                "coarse regions instead of pixels. The other methods need "
                                "tens to thousands of passes per map: open the frame in "
                                "Explore for them.")
    samples = settings.get("live_samples")
    if method == "smoothgrad":
        samples = settings.bind("live_samples", st.slider, label="Samples", min_value=2,
                                max_value=8, step=1,
                                help="Noisy copies per frame; each costs about one more "
                                     "gradient (Explore uses 25).")
    st.subheader("Display")
    cmap = settings.bind("cmap", st.selectbox, options=list(COLORMAPS), label="Colour map",
                         format_func=COLORMAP_LABELS.get)
    opacity = settings.bind("opacity", st.slider, label="Opacity", min_value=0.0,
                            max_value=1.0, step=0.1,
                            help="Weight of the map; weak values fade further, so the "
                                 "picture shows through.")
    fit = settings.bind("fit", st.radio, options=list(FIT_MODES), label="What the model sees",
                        format_func=FIT_LABELS.get,
                        help="Centre crop: the map covers the largest centred region with "
                             "the model's shape and the rest is dimmed. Squash: the whole "
                             "frame, stretched to the model's shape.")

current = LiveSettings(classifier, pinned_class=pinned, method=method, samples=int(samples),
                       colormap=cmap, opacity=float(opacity), fit=fit)
with display:
    frame_cost = check_frame(method, current.params)
session.box.set((current, frame_cost))  # the media thread reads them here, not session state

with display:
    context = live_stream.render_stream(session)
    problem = live_stream.show_camera_problem(live_stream.camera_state())
    playing = context.state.playing
    if playing:
        st.session_state.setdefault("live_playing_since", time.monotonic())
    else:
        st.session_state.pop("live_playing_since", None)
    if not playing and not problem:
        st.info("Press **START** and allow the camera. Frames go to this app's server only "
                "(no other server is contacted), are explained there and come back with the "
                "map and the class drawn on them.", icon=":material/videocam:")

    # A script run holds the interpreter that the stream's worker needs (it cost about a
    # second while Streamlit still collected garbage and cleared Keras's session after every
    # run), so these figures refresh every few seconds; the video shows them on every frame.
    @st.fragment(run_every=FIGURES_EVERY if playing else None)
    def show_stream_figures() -> None:
        figures = session.worker.stats.snapshot()
        if not playing and not figures.maps and not session.worker.error:
            return  # nothing measured yet
        fps, per_map, delay, dropped = st.columns(4)
        if not figures.maps:  # starting: nothing measured yet
            for column, label in ((fps, MAPS_PER_SECOND), (per_map, "Time per map"),
                                  (delay, "Delay")):
                column.metric(label, "—")
            dropped.metric("Frames skipped", f"{figures.dropped}")
        else:
            show_measured(figures, fps, per_map, delay, dropped)
        result, worker = session.latest_result(), session.worker
        waited = time.monotonic() - st.session_state.get("live_playing_since", time.monotonic())
        if worker.error:  # said instead of "Starting" when no frame could be explained
            what = "The last frame" if result else "The camera's frames"
            st.warning(f"**{what} could not be explained.** "
                       f"{layout.escape_markdown(worker.error)}",
                       icon=":material/warning:")
        elif playing and result is None and worker.received == 0 and waited > NO_VIDEO_AFTER:
            st.warning(f"**No video has reached the server in {waited:.0f} s.** The camera "
                       "may send no picture (some virtual cameras do not), or the connection "
                       "is blocked. Press STOP, choose another camera with SELECT DEVICE and "
                       "press START again.", icon=":material/videocam_off:")
        elif playing and result is None:
            st.caption("Starting: the first map prepares the model's gradient once "
                       "(a few seconds).")

    show_stream_figures()
    st.button("Freeze and open in Explore", icon=":material/photo_camera:",
              on_click=live_stream.freeze_now, args=(session,),
              help="Send the frame on screen when you press it to Explore, with its class "
                   "and these settings, for a closer look (all methods, hover, downloads).")
    if frozen is not None:  # pressed before any frame was explained
        st.warning("There is no explained frame yet: press START first.",
                   icon=":material/info:")
