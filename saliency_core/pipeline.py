"""High-level steps the pages call: load a classifier, predict, explain.

Kept free of Streamlit so the same steps serve the app, tests and scripts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from saliency_core.methods import Attribution, Target, get_method
from saliency_core.methods.base import BatchedMethod, ProgressCallback
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.models.registry import WeightsSource, get_spec, load_registered_model
from saliency_core.postprocess import DEFAULT_CLIP_PERCENTILE, normalize_map, reduce_channels
from saliency_core.tf_adapter import KerasClassifier, RowGradients


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


class _OneCallPerRow:
    """A :class:`~saliency_core.methods.base.GradientModel` whose rows each get their own
    class (``None`` for the row's top-1), in one call that also keeps the logits of its
    forward pass (:meth:`KerasClassifier.row_gradients`)."""

    def __init__(self, classifier: KerasClassifier, class_indices, score: str):
        self.classifier, self.class_indices, self.score = classifier, class_indices, score
        self.input_size, self.batch_size = classifier.input_size, classifier.batch_size
        self.calls: list[RowGradients] = []

    def gradients(self, images: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
        done = self.classifier.row_gradients(images, self.class_indices, self.score)
        self.calls.append(done)
        return done.gradients, done.scores

    def scores(self, images: np.ndarray, target: Target) -> np.ndarray:
        return self.gradients(images, target)[1]


@dataclass(frozen=True)
class RowExplanations:
    """A batch explained in one model call, one class per row.

    Attributes:
        values: ``(B, H, W, C)`` float32 attributions.
        scores: ``(B,)`` the explained score of each row.
        probabilities: ``(B, K)`` softmax probabilities from the same forward pass.
        class_indices: ``(B,)`` the class each row explains.
        rows: for each image, the rows of the model call it was in.
        seconds: the whole call's time.
    """

    values: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray
    class_indices: np.ndarray
    rows: list[int]
    seconds: float


def explain_rows(classifier: KerasClassifier, images: np.ndarray, class_indices,
                 method: str = "vanilla", params: dict | None = None,
                 score: str = "logit") -> RowExplanations:
    """A one-gradient method (:func:`batches_classes`) for a batch ``(B, H, W, 3)``, one class
    per row, with the probabilities of the very forward pass it differentiates.

    ``None`` as a row's class explains that row's top-1: the top-5 and the map of the top
    class cost one forward and one backward pass, not an extra forward pass first.

    Raises:
        ValueError: ``method`` is not computed in one gradient call.
    """
    if not batches_classes(method):
        raise ValueError(f"{method} is not computed in one gradient call per batch")
    start = time.perf_counter()
    model = _OneCallPerRow(classifier, list(class_indices), score)
    values, scores = get_method(method, **(params or {})).attribute_batch(
        model, np.asarray(images, np.float32), Target(0, score=score))
    if len(model.calls) != 1:
        raise ValueError(f"{method} made {len(model.calls)} gradient calls, not one")
    done = model.calls[0]
    return RowExplanations(np.asarray(values, np.float32), scores, done.probabilities,
                           done.class_indices, done.rows, time.perf_counter() - start)


def batches_classes(method: str) -> bool:
    """Whether :func:`explain_classes` computes ``method`` for several classes in one call."""
    from saliency_core.methods import METHODS

    return issubclass(METHODS[method], BatchedMethod)


def explain_classes(classifier: KerasClassifier, model_input: np.ndarray,
                    class_indices: list[int], method: str = "vanilla",
                    params: dict | None = None, score: str = "logit") -> list[Explanation]:
    """``method`` for several classes of one image ``(H, W, 3)``, one explanation per class.

    Methods computed from one gradient per image (:func:`batches_classes`: the vanilla
    gradient, Gradient x Input) send all classes through the model together, one
    class per row of the batch; the others are computed class by class. Each
    explanation's time is its share of the whole.
    """
    start = time.perf_counter()
    indices = [int(c) for c in class_indices]
    if not indices:
        return []
    image = np.asarray(model_input, np.float32)
    if batches_classes(method) and len(indices) > 1:
        images = np.repeat(image[None], len(indices), axis=0)
        values, scores = get_method(method, **(params or {})).attribute_batch(
            _OneCallPerRow(classifier, indices, score), images, Target(indices[0], score=score))
        share = (time.perf_counter() - start) / len(indices)
        return [Explanation(Attribution(values=v, score=float(s)), share)
                for v, s in zip(values, scores, strict=True)]
    return [explain(classifier, image, Target(c, score=score), method, params)
            for c in indices]


def display_reduction(method: str, contrast: bool = False, chosen: str = "max_abs") -> str:
    """The channel reduction a map of ``method`` is shown with (Explore's rule).

    A class contrast ``S_a - S_b`` is always ``"signed"``, so both classes' evidence
    shows; so is a method whose map has a sign (occlusion). Other one-channel maps
    (Grad-CAM) take ``"max_abs"``; methods with colour channels take ``chosen``.
    """
    from saliency_core.methods import METHODS

    display = METHODS[method].display
    if contrast or display == "signed":
        return "signed"
    return chosen if display == "channels" else "max_abs"


def to_display_map(values: np.ndarray, reduction: str = "max_abs",
                   clip_percentile: float | None = DEFAULT_CLIP_PERCENTILE) -> np.ndarray:
    """Reduce ``(H, W, C)`` over channels and normalise to ``[0, 1]`` (``[-1, 1]`` signed)."""
    signed = reduction == "signed"
    return normalize_map(reduce_channels(values, reduction), clip_percentile, signed=signed)
