"""Small cached wrappers around the core: models, decoded images, predictions, maps.

Models are shared resources (``st.cache_resource``); arrays are cached data
(``st.cache_data``), each bounded with ``max_entries``. Maps live in a bounded
LRU store instead of ``st.cache_data`` because a cached function may not drive a
progress bar drawn outside it, and sampling methods report progress.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import streamlit as st

from saliency_core.imaging import LoadedImage, fit_to_model, load_image
from saliency_core.methods import METHODS, Target
from saliency_core.pipeline import (
    Explanation,
    Prediction,
    batches_classes,
    explain,
    explain_classes,
    load_classifier,
    predict,
)
from saliency_core.tf_adapter import KerasClassifier

TOP_K = 5


def keep_keras_session() -> None:
    """Stop Streamlit from clearing the Keras session after every script run.

    Streamlit calls ``keras.backend.clear_session()`` after each run, which runs a
    full garbage collection over TensorFlow's objects: about half a second per
    rerun, on every click, for nothing (the models are shared cached resources
    that must live on). ``runner.postScriptGC = false`` in ``.streamlit/config.toml``
    drops Streamlit's second full collection; Python's own collector still runs.
    """
    from streamlit.runtime.scriptrunner import script_runner

    script_runner._clean_problem_modules = lambda: None  # noqa: SLF001 - no public switch


keep_keras_session()


@st.cache_resource(max_entries=3, show_spinner=False)
def get_classifier(model_key: str, token: str, _scope: str | None = None) -> KerasClassifier:
    """Load a registered model once per (model, weights) and share it between sessions.

    ``token`` names the weights file (path, time, size), so sessions that use the
    same file share one model; ``_scope`` is the browser session whose own
    uploaded weights come first (``None``: shared only; not part of the key).
    """
    return load_classifier(model_key, scope=_scope)[0]


@st.cache_data(max_entries=16, show_spinner=False)
def decode_upload(digest: str, _data: bytes) -> LoadedImage:
    """Decode image bytes, cached by their SHA-256 (``_data`` is not hashed)."""
    return load_image(_data)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_predictions(digest: str, model_key: str, token: str, fit: str,
                       _classifier: KerasClassifier, _model_input: np.ndarray
                       ) -> list[Prediction]:
    """Top predictions keyed by image hash, model, weights and fit."""
    return predict(_classifier, _model_input, k=min(TOP_K, len(_classifier.class_names)))


@dataclass(frozen=True)
class PreparedImage:
    """An image fitted to a model, with the model's top predictions.

    Attributes:
        model_input: ``(h, w, 3)`` float32 in 0-255, what the model sees.
        view: ``(H, W, 3)`` uint8, the part of the photo the model sees.
        token: the weights token of the model (a cache key).
        predictions: the top-k classes, best first (k = 5, or fewer classes).
    """

    model_input: np.ndarray
    view: np.ndarray
    token: str
    predictions: list[Prediction]


def prepare_image(model_key: str, token: str, classifier: KerasClassifier,
                  image: LoadedImage, fit: str) -> PreparedImage:
    """Fit ``image`` to the model and predict its top classes (cached)."""
    model_input, view = fit_to_model(image.pixels, classifier.input_size, fit)
    predictions = cached_predictions(image.digest, model_key, token, fit, classifier,
                                     model_input)
    return PreparedImage(model_input, view, token, predictions)


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

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@st.cache_resource
def explanation_store() -> BoundedStore:
    """Maps shared by all sessions, bounded to 64 entries."""
    return BoundedStore(max_entries=64)


@dataclass(frozen=True)
class MapRequest:
    """Everything that decides a map: the cache key of an explanation.

    Attributes:
        digest: the image's SHA-256.
        model_key, token: the model and its weights.
        fit: how the image was fitted.
        method, params: the method and its sorted ``(name, value)`` parameters.
        class_index, contrast_index: the target (``S_a`` or ``S_a − S_b``).
        score: ``"logit"`` or ``"probability"``.
    """

    digest: str
    model_key: str
    token: str
    fit: str
    method: str
    params: tuple
    class_index: int
    contrast_index: int | None
    score: str


def run_explanation(label: str, request: MapRequest, classifier: KerasClassifier,
                    model_input: np.ndarray) -> tuple[Explanation, bool]:
    """The attribution for ``request``: ``(explanation, came_from_cache)``.

    A progress bar shows while a sampling method runs, a spinner otherwise.
    """
    store = explanation_store()
    cached = store.get(request)
    if cached is not None:
        return cached, True
    target = Target(request.class_index, contrast_index=request.contrast_index,
                    score=request.score)
    params = dict(request.params)
    if METHODS[request.method].sampling:
        bar = st.progress(0.0, text=f"Computing {label}…")
        try:
            result = explain(classifier, model_input, target, request.method, params,
                             lambda f: bar.progress(f, text=f"Computing {label}…"))
        finally:
            bar.empty()
    else:
        with st.spinner(f"Computing {label}…"):
            result = explain(classifier, model_input, target, request.method, params)
    store.put(request, result)
    return result, False


def run_explanations(labels: list[str], requests: list[MapRequest],
                     classifier: KerasClassifier, model_input: np.ndarray
                     ) -> list[tuple[Explanation, bool]]:
    """:func:`run_explanation` for several requests that differ only in their class.

    Cells already in the store are reused. When two or more are missing and the
    method allows it (:func:`~saliency_core.pipeline.batches_classes`), they are
    computed in one batched model call, one class per row.
    """
    store = explanation_store()
    found = [store.get(request) for request in requests]
    missing = [i for i, cached in enumerate(found) if cached is None]
    if len(missing) > 1 and batches_classes(requests[missing[0]].method):
        first = requests[missing[0]]
        with st.spinner(f"Computing {len(missing)} maps together…"):
            computed = explain_classes(classifier, model_input,
                                       [requests[i].class_index for i in missing],
                                       first.method, dict(first.params), first.score)
        for i, explanation in zip(missing, computed, strict=True):
            store.put(requests[i], explanation)
            found[i] = explanation
        return [(explanation, i not in missing) for i, explanation in enumerate(found)]
    return [(cached, True) if cached is not None
            else run_explanation(label, request, classifier, model_input)
            for label, request, cached in zip(labels, requests, found, strict=True)]


@st.cache_resource
def figure_store() -> BoundedStore:
    """Built figures shared by all sessions, bounded to 32 entries."""
    return BoundedStore(max_entries=32)


def build_figure(key: tuple, build):
    """``build()``'s figure, built once per ``key`` (a rerun that changes nothing
    builds nothing; Streamlit copies a figure before serialising it)."""
    store = figure_store()
    figure = store.get(key)
    if figure is None:
        figure = build()
        store.put(key, figure)
    return figure


@st.cache_resource
def download_store() -> BoundedStore:
    """Encoded downloads (PNG, .npy), so a rerun or a click never encodes twice."""
    return BoundedStore(max_entries=32)
