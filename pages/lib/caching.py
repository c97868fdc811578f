"""Small cached wrappers around the core: models, decoded images, predictions, maps.

Models are shared resources (``st.cache_resource``). Decoded photos, predictions
and maps live in bounded LRU stores shared by all sessions. What is not stored
yet is computed as a job in the server's admission queue (:mod:`pages.lib.jobs`):
its cost is checked against the work budget first, sessions that ask for the
same result share one job, and a job nobody waits for is cancelled. Cached
results never queue.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import streamlit as st

from pages.lib import jobs
from saliency_core.batching import choose_batch_size
from saliency_core.imaging import LoadedImage, fit_to_model, load_image
from saliency_core.methods import METHODS, Target, Work
from saliency_core.pipeline import (
    Explanation,
    Prediction,
    batches_classes,
    explain,
    explain_classes,
    load_classifier,
    top_k,
)
from saliency_core.safety.limits import load_limits
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
    classifier = load_classifier(model_key, scope=_scope)[0]
    attach_cost(classifier)
    return classifier


def attach_cost(classifier: KerasClassifier) -> None:
    """Time a registered model's passes and bound its batch so that the running jobs
    together stay within ``Limits.job_memory_bytes``."""
    from saliency_core.models.cost import measure_time

    limits = load_limits()
    classifier.cost = measure_time(classifier)
    share = limits.job_memory_bytes // max(1, limits.max_running_jobs)
    classifier.batch_size = min(choose_batch_size(classifier.activation_bytes),
                                classifier.cost.batch_for(share))


@st.cache_resource
def image_store() -> BoundedStore:
    """Decoded photos of all sessions, by SHA-256, bounded to 16 entries."""
    return BoundedStore(max_entries=16)


def decode_upload(digest: str, data: bytes) -> LoadedImage:
    """Decode image bytes in a decoding worker (as a job), cached by their SHA-256.

    Raises:
        saliency_core.imaging.ImageError: the file cannot be used (the message says why).
    """
    store = image_store()
    found = store.get(digest)
    if found is not None:
        return found

    def decode(progress) -> LoadedImage:
        image = load_image(data)
        store.put(digest, image)
        return image

    return jobs.run_job(("decode", digest), "reading the photo", jobs.LIGHT, decode)


@st.cache_resource
def prediction_store() -> BoundedStore:
    """Top predictions of all sessions, bounded to 64 entries."""
    return BoundedStore(max_entries=64)


def cached_predictions(digest: str, model_key: str, token: str, fit: str,
                       classifier: KerasClassifier, model_input: np.ndarray
                       ) -> tuple[list[Prediction], np.ndarray]:
    """Top predictions and every class's probability ``(K,)``, keyed by image hash, model,
    weights and fit (one forward pass)."""
    key = ("predict", digest, model_key, token, fit)
    store = prediction_store()
    found = store.get(key)
    if found is not None:
        return found
    estimate = jobs.check_work(classifier, "the top classes", Work(forward=1))

    def compute(progress) -> tuple[list[Prediction], np.ndarray]:
        probabilities = classifier.probabilities(np.asarray(model_input)[None])[0]
        done = (top_k(probabilities, classifier.class_names,
                      min(TOP_K, len(classifier.class_names))),
                np.asarray(probabilities, np.float32))
        store.put(key, done)
        return done

    return jobs.run_job(key, "the top classes", estimate, compute)


@dataclass(frozen=True)
class PreparedImage:
    """An image fitted to a model, with the model's top predictions.

    Attributes:
        model_input: ``(h, w, 3)`` float32 in 0-255, what the model sees.
        view: ``(H, W, 3)`` uint8, the part of the photo the model sees.
        token: the weights token of the model (a cache key).
        predictions: the top-k classes, best first (k = 5, or fewer classes).
        probabilities: ``(K,)`` every class's probability (a class found by search
            shows its own).
    """

    model_input: np.ndarray
    view: np.ndarray
    token: str
    predictions: list[Prediction]
    probabilities: np.ndarray


def prepare_image(model_key: str, token: str, classifier: KerasClassifier,
                  image: LoadedImage, fit: str) -> PreparedImage:
    """Fit ``image`` to the model and predict its classes (cached)."""
    model_input, view = fit_to_model(image.pixels, classifier.input_size, fit)
    predictions, probabilities = cached_predictions(image.digest, model_key, token, fit,
                                                    classifier, model_input)
    return PreparedImage(model_input, view, token, predictions, probabilities)


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

    Not stored yet: the budget is checked (``OverBudgetError`` says what to change),
    then it is computed as a job, with its place in the queue and progress shown.
    """
    store = explanation_store()
    cached = store.get(request)
    if cached is not None:
        return cached, True
    target = Target(request.class_index, contrast_index=request.contrast_index,
                    score=request.score)
    params = dict(request.params)
    estimate = jobs.check_method(classifier, request.method, params, label=label)

    def compute(progress) -> Explanation:
        result = explain(classifier, model_input, target, request.method, params, progress)
        store.put(request, result)
        return result

    return jobs.run_job(("map", request), label, estimate, compute), False


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
        label = f"{len(missing)} {METHODS[first.method].label} maps together"
        estimate = jobs.check_method(classifier, first.method, dict(first.params),
                                     repeats=len(missing), label=label)

        def compute(progress) -> list[Explanation]:
            computed = explain_classes(classifier, model_input,
                                       [requests[i].class_index for i in missing],
                                       first.method, dict(first.params), first.score)
            for i, explanation in zip(missing, computed, strict=True):
                store.put(requests[i], explanation)
            return computed

        computed = jobs.run_job(("maps", tuple(requests[i] for i in missing)), label,
                                estimate, compute)
        for i, explanation in zip(missing, computed, strict=True):
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
