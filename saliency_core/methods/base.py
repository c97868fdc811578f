"""The contract every attribution method follows.

A method turns one image ``(H, W, 3)`` (0-255 RGB) and one :class:`Target` into an
:class:`Attribution` whose values have shape ``(H, W, C)``: ``C = 3`` for
pixel-space methods (gradients, Integrated Gradients), ``C = 1`` for methods that
give one value per pixel (Grad-CAM, occlusion). Methods never import TensorFlow:
they ask a :class:`GradientModel` for scores and gradients, which
:mod:`saliency_core.tf_adapter` implements for Keras and tests implement with
analytic numpy functions. Sampling methods send their samples in batches
(:meth:`SaliencyMethod.attribute_batch`), so a model evaluates many at once.

Channel reduction and normalisation are separate, shared steps
(:mod:`saliency_core.postprocess`). The design follows PAIR ``saliency`` and
Captum: a base contract, SmoothGrad written once as a wrapper around any
method, and a registry in :mod:`saliency_core.methods`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

ScoreKind = Literal["logit", "probability"]
ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class Target:
    """What to explain.

    Attributes:
        class_index: the class c whose score S_c is explained.
        contrast_index: if set, explain ``S_c - S_contrast`` (what separates two classes).
        score: ``"logit"`` (the paper's pre-softmax score, default) or
            ``"probability"`` (the softmax output, as the TF2 blog did).
    """

    class_index: int
    contrast_index: int | None = None
    score: ScoreKind = "logit"

    def __post_init__(self):
        if self.score not in ("logit", "probability"):
            raise ValueError(f"score must be 'logit' or 'probability', not {self.score!r}")


class GradientModel(Protocol):
    """What a method may ask of a model. Images are ``(B, H, W, 3)`` float 0-255."""

    input_size: tuple[int, int]
    batch_size: int

    def gradients(self, images: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
        """``(d score / d images, score)``, shapes ``(B, H, W, 3)`` and ``(B,)``."""

    def scores(self, images: np.ndarray, target: Target) -> np.ndarray:
        """The target score of each image, shape ``(B,)``."""


class LayerGradientModel(GradientModel, Protocol):
    """A model that can also expose an inner layer (for CAM methods)."""

    def layer_gradients(self, images: np.ndarray, target: Target, layer: str | None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(activations, d score / d activations, score)``: ``(B, h, w, k)`` twice, ``(B,)``."""

    def default_cam_layer(self) -> str:
        """Name of the last spatial (convolutional) layer."""

    def layer_activations(self, images: np.ndarray, layer: str | None) -> np.ndarray:
        """The layer's output ``(B, h, w, k)``, by a forward pass to that layer only."""


FAMILIES: dict[str, str] = {
    "gradients": "Gradients",
    "paths": "Paths",
    "cams": "CAMs",
    "perturbation": "Perturbation",
}
"""Method families (key: short label), in the order pickers show them
(:attr:`SaliencyMethod.family`): gradients at the image, integrals along a path to it,
class activation maps of a convolutional layer, and forward passes on changed images."""


@dataclass(frozen=True)
class Param:
    """One user-facing parameter of a method, for building its controls.

    Attributes:
        name: keyword argument of the method's constructor.
        label: shown next to the control.
        default: default value; its type decides the control.
        help: one line of explanation.
        minimum, maximum, step: numeric bounds (sliders).
        options: allowed values (a select box), with ``labels`` to show.
    """

    name: str
    label: str
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    options: tuple = ()
    labels: dict = field(default_factory=dict)


SEED = Param("seed", "Seed", 0, "Seed of the method's random numbers; the same seed gives "
             "the same map.", 0, 2**32 - 1, 1)
"""The seed of a method that draws random numbers (settable from the command line)."""


@dataclass(frozen=True)
class Work:
    """The model passes one attribution needs, by kind: what the work budget counts.

    Each count is a number of *images* sent through the model (a batch of 16
    counts 16), because time and memory grow with images, not with calls. The
    budget (:mod:`saliency_core.safety.budget`) turns them into seconds with the
    model's measured cost per image of each kind, before anything runs.

    Attributes:
        gradient: images through a forward pass and a backward pass to the input.
        forward: images through a forward pass only (scores, probes, occlusions).
        layer: images through a forward pass and a backward pass to an inner layer
            (the CAM methods; costed like ``gradient``).
    """

    gradient: int = 0
    forward: int = 0
    layer: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(self.gradient + other.gradient, self.forward + other.forward,
                    self.layer + other.layer)

    def __mul__(self, times: int) -> Work:
        return Work(self.gradient * times, self.forward * times, self.layer * times)

    __rmul__ = __mul__

    @property
    def images(self) -> int:
        """All images of every kind."""
        return self.gradient + self.forward + self.layer


@dataclass(frozen=True)
class Attribution:
    """A method's result for one image.

    Attributes:
        values: ``(H, W, C)`` float32 attribution, C = 3 or 1.
        score: the target score at the input image.
        info: method-specific facts shown to the user (e.g. completeness).
    """

    values: np.ndarray
    score: float
    info: dict = field(default_factory=dict)


class SaliencyMethod(ABC):
    """Base class: subclasses set the class attributes and implement ``attribute``.

    Class attributes:
        key: registry key, e.g. ``"vanilla"``.
        label: display name.
        description: one line for users.
        citation: the paper.
        params: the constructor's user-facing parameters (the app draws a control for
            each); their bounds are the only values a link or ``--param`` may set.
        extra_params: parameters with bounds that the app does not show but the
            command line may set (a seed); see :mod:`saliency_core.methods.params`.
        sampling: whether the method evaluates many samples (shows progress).
        reading: what a bright (high) value means, in plain words, for users.
        display: how the map is best shown: ``"channels"`` (several channels,
            the user picks the reduction), ``"unsigned"`` (one non-negative
            channel) or ``"signed"`` (one channel whose sign matters).
        family: a key of :data:`FAMILIES`, for grouping methods in pickers.
    """

    key: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    citation: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    extra_params: ClassVar[tuple[Param, ...]] = ()
    sampling: ClassVar[bool] = False
    reading: ClassVar[str] = "Bright pixels matter most to the class score."
    display: ClassVar[str] = "channels"
    family: ClassVar[str] = "gradients"

    @abstractmethod
    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """Attribute ``target``'s score to the pixels of ``image`` ``(H, W, 3)``."""

    def work(self, input_size: tuple[int, int]) -> Work:
        """The most model passes :meth:`attribute` makes on one image of ``input_size``
        ``(height, width)``, with this method's parameters.

        The work budget checks this *before* a map is computed, so it must not
        underestimate: a method that refines adaptively counts its largest case.
        The default, one gradient pass, is right for single-gradient methods.
        """
        return Work(gradient=1)

    def attribute_batch(self, model: GradientModel, images: np.ndarray,
                        target: Target) -> tuple[np.ndarray, np.ndarray]:
        """Attributions ``(B, H, W, C)`` and scores ``(B,)`` for a batch.

        The default loops over :meth:`attribute`; gradient methods override it
        with one batched model call.
        """
        results = [self.attribute(model, image, target) for image in images]
        return (np.stack([r.values for r in results]),
                np.array([r.score for r in results], dtype=np.float32))


class BatchedMethod(SaliencyMethod):
    """A method computed for a whole batch in one model call; one image is a batch of one."""

    @abstractmethod
    def attribute_batch(self, model: GradientModel, images: np.ndarray,
                        target: Target) -> tuple[np.ndarray, np.ndarray]:
        """Attributions ``(B, H, W, C)`` and scores ``(B,)`` for ``images`` ``(B, H, W, 3)``."""

    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """:meth:`attribute_batch` on a batch holding only ``image`` ``(H, W, 3)``."""
        values, scores = self.attribute_batch(model, np.asarray(image, np.float32)[None], target)
        report(progress, 1.0)
        return Attribution(values=values[0], score=float(scores[0]))


def score_at(model: GradientModel, image: np.ndarray, target: Target) -> float:
    """The target score of one image ``(H, W, 3)``."""
    return float(model.scores(np.asarray(image, np.float32)[None], target)[0])


def report(progress: ProgressCallback | None, fraction: float) -> None:
    """Call ``progress`` with a fraction in ``[0, 1]`` if one was given."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))))
