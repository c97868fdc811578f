"""High-level steps the pages call: load a classifier, predict, explain.

Kept free of Streamlit so the same steps serve the app, tests and scripts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from saliency_core.methods import Attribution, Target, get_method
from saliency_core.methods.base import ProgressCallback
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.models.registry import WeightsSource, get_spec, load_registered_model
from saliency_core.postprocess import normalize_map, reduce_channels
from saliency_core.tf_adapter import KerasClassifier


@dataclass(frozen=True)
class Prediction:
    """One ranked class: index, name and softmax probability."""

    index: int
    name: str
    probability: float


def load_classifier(key: str, allow_download: bool = True,
                    scope: str | None = None) -> tuple[KerasClassifier, WeightsSource]:
    """Build the registered model ``key`` with its weights and preprocessing.

    ``scope`` is a browser session's token: weights that session uploaded come first.

    Raises:
        KeyError: unknown model.
        saliency_core.models.registry.WeightsUnavailableError: no weights.
    """
    spec = get_spec(key)
    model, source = load_registered_model(key, allow_download=allow_download, scope=scope)
    classifier = KerasClassifier(model, get_preprocessor(spec.preprocessing), spec.class_names,
                                 batch_size=spec.batch_size)
    return classifier, source


def top_k(probabilities: np.ndarray, class_names: tuple[str, ...], k: int = 5) -> list[Prediction]:
    """The ``k`` most probable classes of one ``(K,)`` probability vector, best first."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [Prediction(int(i), class_names[int(i)], float(probabilities[int(i)])) for i in order]


def predict(classifier: KerasClassifier, model_input: np.ndarray, k: int = 5) -> list[Prediction]:
    """Top-``k`` predictions for one image ``(H, W, 3)`` in 0-255."""
    probabilities = classifier.probabilities(np.asarray(model_input)[None])[0]
    return top_k(probabilities, classifier.class_names, k)


@dataclass(frozen=True)
class Explanation:
    """An attribution with the time it took."""

    attribution: Attribution
    seconds: float


def explain(classifier: KerasClassifier, model_input: np.ndarray, target: Target,
            method: str = "vanilla", params: dict | None = None,
            progress: ProgressCallback | None = None) -> Explanation:
    """Run attribution ``method`` (with its ``params``) on one image ``(H, W, 3)``."""
    start = time.perf_counter()
    attribution = get_method(method, **(params or {})).attribute(classifier, model_input,
                                                                 target, progress)
    return Explanation(attribution, time.perf_counter() - start)


def to_display_map(values: np.ndarray, reduction: str = "max_abs",
                   clip_percentile: float | None = 99.5) -> np.ndarray:
    """Reduce ``(H, W, C)`` over channels and normalise to ``[0, 1]`` (``[-1, 1]`` signed)."""
    signed = reduction == "signed"
    return normalize_map(reduce_channels(values, reduction), clip_percentile, signed=signed)
