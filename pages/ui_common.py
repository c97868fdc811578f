"""Shared UI state, cached wrappers around the core, and the shared sidebar.

Pages stay thin: they collect widget values, call the cached wrappers below,
and render what the pure core returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from saliency_core.imaging import FIT_MODES, ImageError, LoadedImage, load_image
from saliency_core.methods import METHODS, Target
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
from saliency_core.samples import DEFAULT_SAMPLE, SAMPLES
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
    "model": lambda v: v in MODELS,
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
                 **kwargs) -> Any:
    """Render ``widget`` bound to the view setting ``name``.

    The widget's own key may be dropped by Streamlit when another page is shown;
    the setting survives in ``prefs`` and re-seeds the widget when it returns.
    """
    key = f"w_{name}"
    if options is not None:
        kwargs["options"] = options
    if key not in st.session_state or (options is not None
                                       and st.session_state[key] not in options):
        current = pref(name)
        st.session_state[key] = current if options is None or current in options else options[0]
    value = widget(key=key, **kwargs)
    st.session_state[PREFS][name] = value
    return value


def sync_query_params(include_sample: bool) -> None:
    """Write the view settings to the URL so the view can be shared as a link."""
    wanted = {name: str(pref(name)) for name in VIEW_DEFAULTS
              if pref(name) is not None and (name != "sample" or include_sample)}
    current = {k: st.query_params.get(k) for k in st.query_params.keys()}
    if current != wanted:
        st.query_params.from_dict(wanted)


# ----------------------------------------------------------------- cached core calls


def weights_token(model_key: str) -> str:
    """Changes whenever the weights a model would load change (e.g. a new upload)."""
    if model_key == DEFAULT_MODEL_KEY:
        return "bundled"
    try:
        source = find_local_weights(get_spec(model_key))
    except WeightsUnavailableError as exc:
        return f"error:{exc}"
    if source is None:
        return "download"
    stat = source.path.stat()
    return f"{source.path}:{stat.st_mtime_ns}:{stat.st_size}"


@st.cache_resource(max_entries=3, show_spinner=False)
def get_classifier(model_key: str, token: str) -> tuple[KerasClassifier, str]:
    """Load a registered model once per (model, weights) and share it between sessions."""
    classifier, source = load_classifier(model_key)
    return classifier, source.origin


@st.cache_data(max_entries=16, show_spinner=False)
def decode_upload(digest: str, _data: bytes) -> LoadedImage:
    """Decode image bytes, cached by their SHA-256 (``_data`` is not hashed)."""
    return load_image(_data)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_predictions(digest: str, model_key: str, token: str, fit: str,
                       _classifier: KerasClassifier, _model_input: np.ndarray) -> list[Prediction]:
    """Top-5 predictions keyed by image hash, model, weights and fit."""
    return predict(_classifier, _model_input, k=5)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_explanation(digest: str, model_key: str, token: str, fit: str, method: str,
                       class_index: int, score: str, _classifier: KerasClassifier,
                       _model_input: np.ndarray) -> Explanation:
    """An attribution keyed by image hash + model + weights + fit + method + class + score."""
    return explain(_classifier, _model_input, Target(class_index, score=score), method)


def load_bytes(data: bytes) -> tuple[LoadedImage | None, str | None]:
    """Decode bytes through the cache; return ``(image, None)`` or ``(None, error)``."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        return decode_upload(digest, data), None
    except ImageError as exc:
        return None, str(exc)


def classifier_for(model_key: str) -> KerasClassifier | None:
    """The loaded classifier, or ``None`` after showing why it cannot be loaded.

    A failure is remembered for the session (no repeated download attempts on
    every rerun) until the user asks to try again.
    """
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
            classifier, _origin = get_classifier(model_key, token)
    except WeightsUnavailableError as exc:
        errors[model_key] = str(exc)
        st.rerun()
    return classifier


# --------------------------------------------------------------------------- sidebar


def render_sidebar() -> None:
    """The sidebar every page shares: the model picker and a short explanation."""
    with st.sidebar:
        st.markdown("### Model")
        bound_widget("model", st.selectbox, options=list(MODELS), label="Classifier",
                     format_func=lambda k: MODELS[k].display_name,
                     help="EfficientNet-Lite0 works offline. The others need their ImageNet "
                          "weights: see the Models page.")
        spec = get_spec(pref("model"))
        st.caption(spec.summary)
        st.divider()
        st.caption(
            "Saliency Studio shows which pixels a classifier's score depends on: the "
            "gradient of the class score with respect to the image (Simonyan et al. 2013, "
            "[arXiv:1312.6034](https://arxiv.org/abs/1312.6034)).")
