"""Run one method over many images, a batch at a time, in bounded memory.

Images are read, decoded, fitted and explained ``batch_size`` at a time, and
each result is handed on before the next batch is read, so memory does not grow
with the number of images. Vanilla gradient and Gradient × Input send a whole
batch through the model in one call even when every image explains a different
class (its own top-1): the adapter's traced function takes one class index per
row. Other methods run image by image through :func:`saliency_core.pipeline.explain`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from saliency_core.audit.border import border_share
from saliency_core.imaging import ImageError, LoadedImage, fit_to_model, load_image
from saliency_core.methods import METHODS, Target
from saliency_core.pipeline import Prediction, explain, explain_rows, to_display_map, top_k
from saliency_core.plotting import DEFAULT_OPACITY
from saliency_core.postprocess import DEFAULT_CLIP_PERCENTILE
from saliency_core.tf_adapter import KerasClassifier

ROW_METHODS = ("vanilla", "gradient_x_input")
"""Methods computed for a whole batch in one call, with one class per row."""

TOP_K = 5


@dataclass(frozen=True)
class AuditSettings:
    """Everything that decides the maps of an audit run.

    Attributes:
        method: a key of :data:`saliency_core.methods.METHODS`.
        params: the method's parameters (the rest keep their defaults).
        class_index: one fixed class for every image, or ``None`` for each
            image's own top-1 class.
        score: ``"logit"`` (pre-softmax, default) or ``"probability"``.
        fit: ``"crop"`` or ``"squash"`` (see :func:`saliency_core.imaging.fit_to_model`).
        reduction: channel reduction of the display map (and the border share).
        clip_percentile: clipping of the display map, ``None`` for none.
        colormap: colour map of the overlay.
        opacity: the map's weight in the overlay, 0 to 1.
        fade: weak values fade so the photo shows through, as on Explore
            (:func:`saliency_core.plotting.fade_weights`).
        batch_size: images read and explained at once.
    """

    method: str = "vanilla"
    params: tuple[tuple[str, object], ...] = ()
    class_index: int | None = None
    score: str = "logit"
    fit: str = "crop"
    reduction: str = "max_abs"
    clip_percentile: float | None = DEFAULT_CLIP_PERCENTILE
    colormap: str = "viridis"
    opacity: float = DEFAULT_OPACITY
    fade: bool = True
    batch_size: int = 16

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def param_dict(self) -> dict:
        """The given parameters as a dict."""
        return dict(self.params)


def method_parameters(method: str, params: dict | None = None) -> dict:
    """Every constructor parameter of ``method`` with the value used (defaults filled in).

    E.g. SmoothGrad gives ``noise``, ``samples``, ``aggregate``, ``seed`` and
    ``batch_size``; the ``base`` method object is left out. A parameter left at
    ``None`` whose method class names its default (``default_<name>``, as SmoothGrad's
    ``default_aggregate``: ``"mean"``, SmoothGrad²'s ``"square"``) is recorded as that
    default, the value the method used.
    """
    cls = METHODS[method]
    given = dict(params or {})
    values = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name == "base" or parameter.kind in (
                parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        values[name] = given.pop(name, default)
        if values[name] is None:
            values[name] = getattr(cls, f"default_{name}", None)
    if given:
        raise ValueError(f"{method} has no parameter {', '.join(sorted(given))}; known: "
                         f"{', '.join(values) or 'none'}")
    return values


@dataclass
class ImageResult:
    """One explained image.

    Attributes:
        name: the file's name (or its path relative to the input).
        image: the decoded image.
        view: ``(H', W', 3)`` uint8, the region the model saw.
        values: ``(h, w, C)`` float32 raw attribution at the model's input size.
        saliency: ``(h, w)`` normalised display map.
        predictions: the top-5 classes, best first.
        probabilities: ``(K,)`` softmax probabilities of every class.
        class_index: the explained class.
        class_name: its name.
        probability: its softmax probability.
        score: the explained score's value at the image.
        seconds: time for this image (its share of a batched call).
        batch_rows: images in the model call that computed the map (1 for
            per-image methods); the float result can differ in the last bits
            between batch sizes, so reproduction uses the same number.
        border_share: share of the display map's mass in the outer band.
        info: method-specific facts (e.g. Integrated Gradients' completeness gap).
    """

    name: str
    image: LoadedImage
    view: np.ndarray
    values: np.ndarray
    saliency: np.ndarray
    predictions: list[Prediction]
    probabilities: np.ndarray
    class_index: int
    class_name: str
    probability: float
    score: float
    seconds: float
    batch_rows: int
    border_share: float
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be used, with the reason (for the user)."""

    name: str
    reason: str


ImageSource = tuple[str, Callable[[], bytes]]
"""A name and a function returning the file's bytes (raising ``ImageError`` if it cannot)."""


@dataclass(frozen=True)
class FittedImage:
    """A decoded image fitted to the model.

    Attributes:
        name: the file's name.
        image: the decoded image.
        model_input: ``(h, w, 3)`` float32 0-255, what the model gets.
        view: ``(H', W', 3)`` uint8, the region the model saw.
    """

    name: str
    image: LoadedImage
    model_input: np.ndarray
    view: np.ndarray


@dataclass(frozen=True)
class RawAttribution:
    """One image's model results, before the display map and the top-5 are derived.

    Attributes:
        values: ``(h, w, C)`` float32 raw attribution.
        probabilities: ``(K,)`` softmax probabilities.
        class_index: the explained class.
        score: the explained score's value.
        seconds: this image's share of the model time.
        batch_rows: images in the model call that computed the map.
        info: method-specific facts.
    """

    values: np.ndarray
    probabilities: np.ndarray
    class_index: int
    score: float
    seconds: float
    batch_rows: int
    info: dict


def fit_images(images: list[tuple[str, LoadedImage]], input_size: tuple[int, int],
               fit: str) -> list[FittedImage]:
    """Fit decoded ``(name, image)`` pairs to a model's ``input_size`` (Pillow; no model)."""
    fitted = []
    for name, image in images:
        model_input, view = fit_to_model(image.pixels, input_size, fit)
        fitted.append(FittedImage(name, image, model_input, view))
    return fitted


def attribute_fitted(classifier: KerasClassifier, fitted: list[FittedImage],
                     settings: AuditSettings) -> list[RawAttribution]:
    """The model's part of a batch: probabilities, classes and attributions, in order.

    Vanilla gradient and Gradient × Input (:data:`ROW_METHODS`) take the probabilities,
    and each image's top-1 class when no class is fixed, from the very forward pass
    whose gradient is their map: one model call per batch
    (:func:`saliency_core.pipeline.explain_rows`). Other methods need the class before
    they start, so a forward pass gives the probabilities first, then each image is
    explained on its own.
    """
    if not fitted:
        return []
    batch = np.stack([f.model_input for f in fitted])
    if settings.method in ROW_METHODS:
        done = explain_rows(classifier, batch, [settings.class_index] * len(fitted),
                            settings.method, settings.param_dict, settings.score)
        each = done.seconds / len(fitted)
        return [RawAttribution(done.values[i], done.probabilities[i],
                               int(done.class_indices[i]), float(done.scores[i]), each,
                               done.rows[i], {}) for i in range(len(fitted))]
    start = time.perf_counter()
    probabilities = classifier.probabilities(batch)
    predict_each = (time.perf_counter() - start) / len(fitted)
    out = []
    for image, probs in zip(batch, probabilities, strict=True):
        index = (settings.class_index if settings.class_index is not None
                 else int(np.argmax(probs)))
        result = explain(classifier, image, Target(int(index), score=settings.score),
                         settings.method, settings.param_dict)
        out.append(RawAttribution(result.attribution.values, probs, int(index),
                                  float(result.attribution.score),
                                  result.seconds + predict_each, 1,
                                  dict(result.attribution.info)))
    return out


def finish_result(fitted: FittedImage, raw: RawAttribution, class_names: tuple[str, ...],
                  settings: AuditSettings) -> ImageResult:
    """An :class:`ImageResult` from the model's results: display map, border share, top-5.

    Pure numpy, no model: the command line runs it on a worker thread while the model
    computes the next batch.
    """
    saliency = to_display_map(raw.values, settings.reduction, settings.clip_percentile)
    k = min(TOP_K, len(class_names))
    return ImageResult(
        name=fitted.name, image=fitted.image, view=fitted.view, values=raw.values,
        saliency=saliency, predictions=top_k(raw.probabilities, class_names, k),
        probabilities=raw.probabilities, class_index=raw.class_index,
        class_name=class_names[raw.class_index], probability=float(
            raw.probabilities[raw.class_index]), score=raw.score, seconds=raw.seconds,
        batch_rows=raw.batch_rows, border_share=border_share(saliency), info=raw.info)


def explain_images(classifier: KerasClassifier, images: list[tuple[str, LoadedImage]],
                   settings: AuditSettings) -> list[ImageResult]:
    """Explain decoded images (one batch) with ``settings``.

    Args:
        images: ``(name, image)`` pairs.

    Returns:
        One result per image, in order.
    """
    fitted = fit_images(images, classifier.input_size, settings.fit)
    raws = attribute_fitted(classifier, fitted, settings)
    return [finish_result(f, raw, classifier.class_names, settings)
            for f, raw in zip(fitted, raws, strict=True)]


def decode_source(source: ImageSource) -> LoadedImage:
    """Read and decode one source.

    Raises:
        ImageError: unreadable or not a usable image.
    """
    _name, read = source
    try:
        data = read()
    except OSError as exc:
        raise ImageError(f"The file cannot be read ({exc.strerror or exc}).") from exc
    return load_image(data)


def iter_audit(classifier: KerasClassifier, sources: Iterable[ImageSource],
               settings: AuditSettings) -> Iterator[ImageResult | ImageFailure]:
    """Explain many images, ``settings.batch_size`` at a time, in input order.

    Only one batch of decoded images and maps is alive at a time, so memory is
    bounded whatever the number of images (the caller should not keep results).

    Yields:
        An :class:`ImageResult`, or an :class:`ImageFailure` for an image that
        could not be read or decoded (the run goes on).
    """
    pending: list[tuple[str, LoadedImage] | ImageFailure] = []

    def flush() -> Iterator[ImageResult | ImageFailure]:
        good = [item for item in pending if not isinstance(item, ImageFailure)]
        done = iter(explain_images(classifier, good, settings))
        for item in pending:
            yield item if isinstance(item, ImageFailure) else next(done)
        pending.clear()

    for source in sources:
        try:
            pending.append((source[0], decode_source(source)))
        except ImageError as exc:
            pending.append(ImageFailure(source[0], str(exc)))
        if sum(not isinstance(p, ImageFailure) for p in pending) >= settings.batch_size:
            yield from flush()
    yield from flush()
