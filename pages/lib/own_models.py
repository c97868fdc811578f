"""Models the user brings: own ``.keras`` classifiers and uploaded weights.

Both belong to one browser session. Names, files, the loaded own models and
weights uploads are kept in that session's state (weights in a folder named by
its random token), so no visitor changes what another one sees, unless the
operator allows shared weights uploads in ``saliency_studio.toml``. A session's
own models stay loaded until the session ends or it adds more than its own cap:
another visitor can never push them out. All sessions' own models together are
bounded by ``Limits.max_own_models_bytes``; above it a new one is refused, with
the reason. Checking a model is a job in the admission queue (cancelled, and its
checking process killed, when the visitor leaves).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import weakref

import streamlit as st

from pages.lib import caching, jobs
from pages.lib.settings import CUSTOM_PREFIX, put
from saliency_core.models.custom import (
    CustomModel,
    CustomModelError,
    load_custom_model,
    make_classifier,
)
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.models.registry import (
    DEFAULT_MODEL_KEY,
    MODELS,
    WeightsUnavailableError,
    find_local_weights,
    get_spec,
    remove_session_uploads,
    shared_uploads_allowed,
)
from saliency_core.safety.jobs import Estimate
from saliency_core.safety.limits import format_bytes, load_limits
from saliency_core.tf_adapter import KerasClassifier

MAX_OWN_MODELS = 3
"""Own models one browser session keeps at once; adding one more removes the oldest."""
MAX_OWN_MODEL_BYTES = 400 * 1024 * 1024
"""Their total file size per session (the files stay in memory for the session)."""


class _SessionFiles:
    """Kept in a session's state: when the session ends (its state is dropped), its
    private weights folder is deleted, and not before."""

    def __init__(self, token: str):
        self.token = token
        weakref.finalize(self, remove_session_uploads, token)


def session_token() -> str:
    """A random token for this browser session (names its private uploads folder, which
    is deleted when the session ends)."""
    if "session_token" not in st.session_state:
        token = secrets.token_hex(12)
        st.session_state["session_token"] = token
        st.session_state["session_files"] = _SessionFiles(token)
    return st.session_state["session_token"]


def weights_scope() -> str | None:
    """Where this session's weights uploads go: its own folder, or the shared one."""
    return None if shared_uploads_allowed() else session_token()


def custom_models() -> dict[str, dict]:
    """This session's uploaded models: key -> {name, data, labels, preprocessing, …}."""
    return st.session_state.setdefault("custom_models", {})


def model_options() -> list[str]:
    """Keys for the model picker: the registered models, then this session's own."""
    return list(MODELS) + list(custom_models())


def model_display_name(key: str) -> str:
    """What the model picker shows for ``key``: own models by this session's file name."""
    if key.startswith(CUSTOM_PREFIX):
        entry = custom_models().get(key)
        name = entry["name"] if entry else key[len(CUSTOM_PREFIX):]
        return f"Your model: {name}"
    return MODELS[key].display_name


_LIVE_LOCK = threading.Lock()
_LIVE_BYTES: dict[int, int] = {}


def _forget_live(ident: int) -> None:
    with _LIVE_LOCK:
        _LIVE_BYTES.pop(ident, None)


def _register_live(custom: CustomModel, size: int) -> None:
    """Count a loaded own model until it is garbage collected (its session ended)."""
    with _LIVE_LOCK:
        _LIVE_BYTES[id(custom)] = size
    weakref.finalize(custom, _forget_live, id(custom))


def live_own_model_bytes() -> int:
    """File bytes of every own model loaded in this server, in all sessions."""
    with _LIVE_LOCK:
        return sum(_LIVE_BYTES.values())


def _entry_bytes(entry: dict) -> int:
    return len(entry["data"]) + len(entry["labels"] or b"")


def add_custom_model(name: str, data: bytes, labels: bytes | None,
                     preprocessing: str) -> tuple[str, list[str]]:
    """Validate an uploaded ``.keras`` model and add it to this session's models.

    A session keeps at most :data:`MAX_OWN_MODELS` models and
    :data:`MAX_OWN_MODEL_BYTES` of model files; the oldest are removed to make room.
    The check runs as a job in the admission queue.

    Returns:
        ``(key, names of the models removed to make room)``.

    Raises:
        CustomModelError: the model cannot be used (the message says why).
    """
    digests = (hashlib.sha256(data).hexdigest(), hashlib.sha256(labels or b"").hexdigest())
    # the labels are part of the key: two sessions with one model file but different
    # labels never share cached predictions (with their names)
    key = f"{CUSTOM_PREFIX}{digests[0][:12]}-{digests[1][:8]}-{preprocessing}"
    models = custom_models()
    limits = load_limits()
    staying = {k: m for k, m in models.items() if k != key}
    evicted = []
    while staying and (len(staying) >= MAX_OWN_MODELS or sum(
            _entry_bytes(m) for m in staying.values()) + len(data) > MAX_OWN_MODEL_BYTES):
        evicted.append(next(iter(staying)))
        staying.pop(evicted[-1])
    freed = sum(_entry_bytes(models[k]) for k in evicted) + (
        _entry_bytes(models[key]) if key in models else 0)
    if live_own_model_bytes() - freed + len(data) > limits.max_own_models_bytes:
        raise CustomModelError(
            "The server is holding many visitors' own models right now (at most "
            f"{format_bytes(limits.max_own_models_bytes)} together), so yours cannot be "
            "loaded at the moment. Try again in a few minutes; models are freed when their "
            "visitors leave.")
    timeout = limits.isolation_walk_timeout_seconds + limits.isolation_timeout_seconds
    custom = jobs.run_job(("own model", jobs.session_id(), *digests), "checking your model",
                          Estimate(seconds=timeout, peak_bytes=2 * len(data)),
                          lambda progress: load_custom_model(data, labels))
    _register_live(custom, len(data) + len(labels or b""))
    removed = [models.pop(k)["name"] for k in evicted]
    models.pop(key, None)  # the same model again moves to the end
    models[key] = {"name": name, "data": data, "labels": labels, "digests": digests,
                   "preprocessing": preprocessing, "note": custom.head_note,
                   "classes": len(custom.class_names), "custom": custom, "classifier": None}
    return key, removed


def weights_token(model_key: str) -> str:
    """Changes whenever the weights a model would load change (e.g. a new upload)."""
    if model_key == DEFAULT_MODEL_KEY:
        return "bundled"
    if model_key.startswith(CUSTOM_PREFIX):
        return model_key
    try:
        source = find_local_weights(get_spec(model_key), weights_scope())
    except WeightsUnavailableError as exc:
        return f"error:{exc}"
    if source is None:
        return "download"
    stat = source.path.stat()
    return f"{source.path}:{stat.st_mtime_ns}:{stat.st_size}"


def _show_weights_error(model_key: str, message: str) -> None:
    errors: dict[str, str] = st.session_state["weights_errors"]
    st.error(message, icon=":material/cloud_off:")
    col1, col2 = st.columns(2)
    if col1.button("Try again", key=f"retry_{model_key}"):
        errors.pop(model_key, None)
        st.rerun()
    col2.button("Use the default model", key=f"default_{model_key}",
                on_click=put, args=("model", DEFAULT_MODEL_KEY))


def classifier_for(model_key: str) -> tuple[KerasClassifier | None, str]:
    """The loaded classifier and its weights token, or ``(None, "")`` after showing
    why it cannot be loaded.

    A failure is remembered for the session (no repeated download attempts on
    every rerun) until the user asks to try again.
    """
    if model_key.startswith(CUSTOM_PREFIX):
        entry = custom_models().get(model_key)
        if entry is None:
            st.error("Your own model is not loaded in this browser session (own models last "
                     "only as long as the session). Upload it again on the Models page.")
            return None, ""
        if entry["classifier"] is None:
            entry["classifier"] = make_classifier(entry["custom"],
                                                  get_preprocessor(entry["preprocessing"]))
        return entry["classifier"], model_key
    errors: dict[str, str] = st.session_state["weights_errors"]
    if model_key in errors:
        _show_weights_error(model_key, errors[model_key])
        return None, ""
    token = weights_token(model_key)
    spec = get_spec(model_key)
    try:
        with st.spinner(f"Loading {spec.display_name}…"):
            scope = None if model_key == DEFAULT_MODEL_KEY else weights_scope()
            return caching.get_classifier(model_key, token, scope), token
    except WeightsUnavailableError as exc:
        errors[model_key] = str(exc)
        _show_weights_error(model_key, str(exc))
        return None, ""
