"""Shared UI state, cached wrappers around the core, and the shared sidebar.

Pages stay thin: they collect widget values, call the cached wrappers below,
and render what the pure core returns.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import streamlit as st

from saliency_core.imaging import FIT_MODES, ImageError, LoadedImage, fit_to_model, load_image
from saliency_core.methods import METHODS, Target
from saliency_core.models.custom import load_custom_model, make_classifier
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.models.registry import (
    DEFAULT_MODEL_KEY,
    MODELS,
    WeightsUnavailableError,
    find_local_weights,
    get_spec,
)
from saliency_core.pipeline import Explanation, Prediction, explain, load_classifier, predict
from saliency_core.plotting import COLORMAPS
from saliency_core.postprocess import REDUCTIONS
from saliency_core.samples import DEFAULT_SAMPLE, SAMPLES, read_sample
from saliency_core.tf_adapter import KerasClassifier

# View settings that live in the URL, with their defaults and validators.
VIEW_DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL_KEY,
    "sample": DEFAULT_SAMPLE,
    "class": None,  # None: the top-1 class
    "method": "vanilla",
    "cmap": "jet",
    "reduction": "max_abs",
    "score": "logit",
    "fit": "crop",
}
_VALID: dict[str, Callable[[str], bool]] = {
    "model": lambda v: v in MODELS,  # a custom model is never in a shared link
    "sample": lambda v: v in SAMPLES,
    "class": lambda v: v.isdigit() and 0 <= int(v) < 100_000,
    "method": lambda v: v in METHODS,
    "cmap": lambda v: v in COLORMAPS,
    "reduction": lambda v: v in REDUCTIONS,
    "score": lambda v: v in ("logit", "probability"),
    "fit": lambda v: v in FIT_MODES,
}
# Session-only settings (not in the URL).
LOCAL_DEFAULTS: dict[str, Any] = {"source": "Sample", "clip": 99.5, "opacity": 0.5}
PREFS = "prefs"
_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#+-.!|~$:")


def escape_markdown(text: str) -> str:
    """Escape user-supplied text (e.g. a file name) so Markdown shows it literally."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


def init_state() -> None:
    """Initialise session state once per session, reading the URL's view settings."""
    if PREFS in st.session_state:
        return
    prefs = dict(VIEW_DEFAULTS)
    for name, valid in _VALID.items():
        raw = st.query_params.get(name)
        if raw is not None and valid(raw):
            prefs[name] = int(raw) if name == "class" else raw
    prefs.update(LOCAL_DEFAULTS)
    st.session_state[PREFS] = prefs
    st.session_state["weights_errors"] = {}


def pref(name: str) -> Any:
    """The current value of a view setting."""
    return st.session_state[PREFS][name]


def set_pref(name: str, value: Any) -> None:
    """Change a view setting (and so the URL).

    Call it from a widget callback (or before the bound widget is drawn) so the
    widget shows the new value too.
    """
    st.session_state[PREFS][name] = value
    st.session_state[f"w_{name}"] = value


def bound_widget(name: str, widget: Callable[..., Any], options: list | None = None,
                 default: Any = None, **kwargs) -> Any:
    """Render ``widget`` bound to the setting ``name`` (``default`` if never set).

    The widget's own key may be dropped by Streamlit when another page is shown;
    the setting survives in ``prefs`` and re-seeds the widget when it returns.
    """
    key = f"w_{name}"
    multi = widget is st.multiselect
    if options is not None:
        kwargs["options"] = options

    def valid(value: Any) -> bool:
        if options is None:
            return True
        if multi:
            return isinstance(value, list) and all(v in options for v in value)
        return value in options

    if key not in st.session_state or not valid(st.session_state[key]):
        current = st.session_state[PREFS].get(name, default)
        if not valid(current):
            current = default if valid(default) else ([] if multi else options[0])
        st.session_state[key] = current
    value = widget(key=key, **kwargs)
    st.session_state[PREFS][name] = value
    return value


def sync_query_params(include_sample: bool) -> None:
    """Write the view settings to the URL so the view can be shared as a link."""
    wanted = {name: str(pref(name)) for name in VIEW_DEFAULTS
              if pref(name) is not None and (name != "sample" or include_sample)
              and not str(pref(name)).startswith(CUSTOM_PREFIX)}
    current = {k: st.query_params.get(k) for k in st.query_params.keys()}
    if current != wanted:
        st.query_params.from_dict(wanted)


# ----------------------------------------------------------------- cached core calls


CUSTOM_PREFIX = "custom:"


def custom_models() -> dict[str, dict]:
    """This session's uploaded models: key -> {name, data, labels, preprocessing}."""
    return st.session_state.setdefault("custom_models", {})


def model_options() -> list[str]:
    """Keys for the model picker: the registered models, then this session's own."""
    return list(MODELS) + list(custom_models())


_CUSTOM_NAMES: dict[str, str] = {}  # key -> file name; keys are content hashes


def model_display_name(key: str) -> str:
    """What the model picker shows for ``key`` (no session state: format functions may
    run outside a script run)."""
    if key.startswith(CUSTOM_PREFIX):
        return f"Your model: {_CUSTOM_NAMES.get(key, key[len(CUSTOM_PREFIX):])}"
    return MODELS[key].display_name


def add_custom_model(name: str, data: bytes, labels: bytes | None,
                     preprocessing: str) -> str:
    """Validate an uploaded ``.keras`` model and add it to this session's models.

    Raises:
        CustomModelError: the model cannot be used (the message says why).
    """
    digests = (hashlib.sha256(data).hexdigest(), hashlib.sha256(labels or b"").hexdigest())
    custom = get_custom_model(*digests, data, labels)
    key = f"{CUSTOM_PREFIX}{custom.digest[:12]}-{preprocessing}"
    _CUSTOM_NAMES[key] = name
    custom_models()[key] = {"name": name, "data": data, "labels": labels, "digests": digests,
                            "preprocessing": preprocessing, "note": custom.head_note,
                            "classes": len(custom.class_names)}
    return key


@st.cache_resource(max_entries=4, show_spinner=False)
def get_custom_model(digest: str, labels_digest: str, _data: bytes, _labels: bytes | None):
    """Load an uploaded model once per (file, labels), shared by sessions that upload it."""
    return load_custom_model(_data, _labels)


def weights_token(model_key: str) -> str:
    """Changes whenever the weights a model would load change (e.g. a new upload)."""
    if model_key == DEFAULT_MODEL_KEY:
        return "bundled"
    if model_key.startswith(CUSTOM_PREFIX):
        return model_key
    try:
        source = find_local_weights(get_spec(model_key))
    except WeightsUnavailableError as exc:
        return f"error:{exc}"
    if source is None:
        return "download"
    stat = source.path.stat()
    return f"{source.path}:{stat.st_mtime_ns}:{stat.st_size}"


@st.cache_resource(max_entries=3, show_spinner=False)
def get_classifier(model_key: str, token: str) -> KerasClassifier:
    """Load a registered model once per (model, weights) and share it between sessions."""
    return load_classifier(model_key)[0]


@st.cache_data(max_entries=16, show_spinner=False)
def decode_upload(digest: str, _data: bytes) -> LoadedImage:
    """Decode image bytes, cached by their SHA-256 (``_data`` is not hashed)."""
    return load_image(_data)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_predictions(digest: str, model_key: str, token: str, fit: str,
                       _classifier: KerasClassifier, _model_input: np.ndarray) -> list[Prediction]:
    """Top-5 predictions keyed by image hash, model, weights and fit."""
    return predict(_classifier, _model_input, k=5)


def prepare_image(model_key: str, classifier: KerasClassifier, image: LoadedImage, fit: str
                  ) -> tuple[np.ndarray, np.ndarray, str, list[Prediction]]:
    """Fit ``image`` to the model and predict: ``(model_input, view, weights token, top-5)``."""
    model_input, view = fit_to_model(image.pixels, classifier.input_size, fit)
    token = weights_token(model_key)
    return model_input, view, token, cached_predictions(image.digest, model_key, token, fit,
                                                        classifier, model_input)


class BoundedStore:
    """A thread-safe least-recently-used dict with at most ``max_entries`` items."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@st.cache_resource
def explanation_store() -> BoundedStore:
    """Maps shared by all sessions, bounded to 64 entries.

    Not ``st.cache_data``: a cached function may not update a progress bar drawn
    outside it, and sampling methods report progress while they run.
    """
    return BoundedStore(max_entries=64)


def run_explanation(label: str, digest: str, model_key: str, token: str, fit: str, method: str,
                    params: tuple, class_index: int, contrast_index: int | None, score: str,
                    classifier: KerasClassifier, model_input: np.ndarray) -> Explanation:
    """An attribution, cached by image hash + model + weights + fit + method + its
    parameters + target; a progress bar shows while a sampling method runs."""
    key = (digest, model_key, token, fit, method, params, class_index, contrast_index, score)
    store = explanation_store()
    cached = store.get(key)
    if cached is not None:
        return cached
    target = Target(class_index, contrast_index=contrast_index, score=score)
    if METHODS[method].sampling:
        bar = st.progress(0.0, text=f"Computing {label}…")
        try:
            result = explain(classifier, model_input, target, method, dict(params),
                             lambda f: bar.progress(f, text=f"Computing {label}…"))
        finally:
            bar.empty()
    else:
        with st.spinner(f"Computing {label}…"):
            result = explain(classifier, model_input, target, method, dict(params))
    store.put(key, result)
    return result


def method_params(method: str, classifier: KerasClassifier) -> dict:
    """The parameters last chosen for ``method`` (on any page), else its defaults."""
    prefs = st.session_state[PREFS]
    values = {}
    for param in METHODS[method].params:
        value = prefs.get(f"{method}.{param.name}", param.default)
        if param.name == "layer" and value not in classifier.spatial_layer_names():
            value = classifier.default_cam_layer()  # chosen for another model
        values[param.name] = value
    return values


def render_method_params(method: str, classifier: KerasClassifier) -> dict:
    """Controls for ``method``'s parameters; returns their values (remembered per method)."""
    values = {}
    for param in METHODS[method].params:
        name = f"{method}.{param.name}"
        if param.name == "layer":
            layers = classifier.spatial_layer_names()
            values["layer"] = bound_widget(name, st.selectbox, options=layers,
                                           default=classifier.default_cam_layer(),
                                           label=param.label, help=param.help)
        elif param.options:
            values[param.name] = bound_widget(name, st.selectbox, options=list(param.options),
                                              default=param.default, label=param.label,
                                              format_func=lambda v, p=param: p.labels.get(v, v),
                                              help=param.help)
        else:
            kind = int if isinstance(param.default, int) else float
            values[param.name] = bound_widget(
                name, st.slider, default=param.default, label=param.label, help=param.help,
                min_value=kind(param.minimum), max_value=kind(param.maximum),
                step=kind(param.step))
    return values


def load_bytes(data: bytes, digest: str) -> tuple[LoadedImage | None, str | None]:
    """Decode bytes (SHA-256 ``digest``) through the cache: ``(image, None)`` or
    ``(None, error)``."""
    try:
        return decode_upload(digest, data), None
    except ImageError as exc:
        return None, str(exc)


def classifier_for(model_key: str) -> KerasClassifier | None:
    """The loaded classifier, or ``None`` after showing why it cannot be loaded.

    A failure is remembered for the session (no repeated download attempts on
    every rerun) until the user asks to try again.
    """
    if model_key.startswith(CUSTOM_PREFIX):
        entry = custom_models().get(model_key)
        if entry is None:
            st.error("Your uploaded model is no longer in this session; upload it again on the "
                     "Models page.")
            return None
        custom = get_custom_model(*entry["digests"], entry["data"], entry["labels"])
        return _custom_classifier(model_key, custom, entry["preprocessing"])
    errors: dict[str, str] = st.session_state["weights_errors"]
    spec = get_spec(model_key)
    if model_key in errors:
        st.error(errors[model_key], icon=":material/cloud_off:")
        col1, col2 = st.columns(2)
        if col1.button("Try again", key=f"retry_{model_key}"):
            errors.pop(model_key)
            st.rerun()
        col2.button("Use the default model", key=f"default_{model_key}",
                    on_click=set_pref, args=("model", DEFAULT_MODEL_KEY))
        return None
    token = weights_token(model_key)
    try:
        with st.spinner(f"Loading {spec.display_name}…"):
            classifier = get_classifier(model_key, token)
    except WeightsUnavailableError as exc:
        errors[model_key] = str(exc)
        st.rerun()
    return classifier


# --------------------------------------------------------------------------- image input

SOURCES = ["Sample", "Upload", "Camera"]
PHOTO_MAX_MB = 50


KeptFile = tuple[str, bytes, str]  # (file name, bytes, SHA-256)


@functools.lru_cache(maxsize=len(SAMPLES))
def _sample_file(key: str) -> KeptFile:
    data = read_sample(key)
    return SAMPLES[key][1], data, hashlib.sha256(data).hexdigest()


def _persisted_file(widget_key: str, store_key: str, draw) -> KeptFile | None:
    """Keep the last upload/snapshot across page switches.

    Streamlit forgets a widget's state when another page is shown, so the file
    is also kept in session state. If the widget is new in this run (we came back
    from another page), the kept file is reused; if the widget existed and is now
    empty, the user removed the file, and the kept copy is dropped too.
    """
    returning = widget_key not in st.session_state
    uploaded = draw()
    if uploaded is not None:
        if st.session_state.get(f"{store_key}_id") != uploaded.file_id:  # copy and hash once
            data = uploaded.getvalue()
            st.session_state[store_key] = (uploaded.name, data, hashlib.sha256(data).hexdigest())
            st.session_state[f"{store_key}_id"] = uploaded.file_id
    elif not returning:
        st.session_state.pop(store_key, None)
        st.session_state.pop(f"{store_key}_id", None)
    kept = st.session_state.get(store_key)
    if kept is not None and uploaded is None:
        st.caption(f"Using your earlier file, {escape_markdown(kept[0])}.")
    return kept


def _choose_file() -> KeptFile | None:
    source = bound_widget("source", st.radio, options=SOURCES, label="Image source",
                          horizontal=True)
    if source == "Sample":
        key = bound_widget("sample", st.selectbox, options=list(SAMPLES),
                           label="Sample photo", format_func=lambda k: SAMPLES[k][0])
        return _sample_file(key)
    if source == "Upload":
        return _persisted_file("upload_widget", "last_upload", lambda: st.file_uploader(
            "Upload a photo", key="upload_widget", max_upload_size=PHOTO_MAX_MB,
            help="JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF, up to 50 megapixels."))
    return _persisted_file("camera_widget", "last_snapshot",
                           lambda: st.camera_input("Take a snapshot", key="camera_widget"))


def choose_image() -> LoadedImage | None:
    """The image picker every page shares (sample, upload or snapshot).

    Returns the decoded image, or ``None`` after telling the user what to do (no
    file yet) or why their file cannot be used.
    """
    chosen = _choose_file()
    if chosen is None:
        st.info("Upload a photo (or take a snapshot) to begin, or pick a sample. Photos: JPEG, "
                f"PNG, WebP, BMP, GIF or TIFF, up to {PHOTO_MAX_MB} MB and 50 megapixels; a "
                "file marked in red was refused (hover it to see why).")
        return None
    file_name, data, digest = chosen
    image, error = load_bytes(data, digest)
    if error:
        st.error(f"**{escape_markdown(file_name)}** could not be used. "
                 f"{escape_markdown(error)}", icon=":material/error:")
        return None
    for note in image.notes:
        st.caption(f"Note: {note}.")
    return image


@st.cache_resource(max_entries=4, show_spinner=False)
def _custom_classifier(key: str, _custom, preprocessing: str) -> KerasClassifier:
    return make_classifier(_custom, get_preprocessor(preprocessing))


# --------------------------------------------------------------------------- sidebar


_router = threading.local()  # each script run has its own thread


@contextmanager
def routed() -> Iterator[None]:
    """Mark the current script run as started by app.py's router (which drew the sidebar)."""
    _router.active = True
    try:
        yield
    finally:
        _router.active = False


def page_setup() -> None:
    """Call first on every page: state exists and the sidebar is drawn exactly once.

    Normally app.py runs the page through ``st.navigation`` and has drawn the
    sidebar already. Because the project has a ``pages/`` folder, Streamlit runs
    the very first request after the server starts in its folder-based mode when
    that request asks for a page other than the main one: the page runs without
    app.py, and draws the sidebar itself.
    """
    init_state()
    if not getattr(_router, "active", False):
        render_sidebar()


def render_sidebar() -> None:
    """The sidebar every page shares: the model picker and a short explanation."""
    if "pending_model" in st.session_state:  # chosen elsewhere, e.g. after an upload
        set_pref("model", st.session_state.pop("pending_model"))
    with st.sidebar:
        st.markdown("### Model")
        key = bound_widget("model", st.selectbox, options=model_options(), label="Classifier",
                           format_func=model_display_name,
                           help="EfficientNet-Lite0 works offline. The others need their "
                                "ImageNet weights; your own .keras model can be uploaded. "
                                "See the Models page.")
        if key.startswith(CUSTOM_PREFIX):
            entry = custom_models()[key]
            st.caption(f"{entry['classes']} classes; {entry['note']}.")
        else:
            st.caption(get_spec(key).summary)
        st.divider()
        st.caption(
            "Saliency Studio shows which pixels a classifier's score depends on: the "
            "gradient of the class score with respect to the image (Simonyan et al. 2013, "
            "[arXiv:1312.6034](https://arxiv.org/abs/1312.6034)).")
