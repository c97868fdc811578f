"""The contract every attribution method follows.

A method turns one image and one :class:`Target` into an attribution with the
image's shape ``(H, W, 3)``, asking a :class:`GradientModel` only for scores and
gradients. Methods never import TensorFlow: :mod:`saliency_core.tf_adapter`
implements :class:`GradientModel` for Keras, and tests implement it with
analytic numpy functions. Sampling methods (SmoothGrad, Integrated Gradients,
occlusion) send their samples as batches through the same call.

Channel reduction and normalisation are separate steps
(:mod:`saliency_core.postprocess`), so every method shares them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import numpy as np

ScoreKind = Literal["logit", "probability"]
ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class Target:
    """What to explain.

    Attributes:
        class_index: the class c whose score S_c is differentiated.
        contrast_index: if set, explain ``S_c - S_contrast`` instead.
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
    """What a method may ask of a model."""

    input_size: tuple[int, int]

    def gradients(self, images: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
        """``(d score / d images, score)`` with shapes ``(B, H, W, 3)`` and ``(B,)``."""


@dataclass(frozen=True)
class Attribution:
    """A method's result for one image.

    Attributes:
        values: ``(H, W, 3)`` float32 attribution per pixel and channel.
        score: the target score at the input image.
        info: method-specific extras shown to the user (e.g. completeness).
    """

    values: np.ndarray
    score: float
    info: dict


class SaliencyMethod(ABC):
    """Base class: subclasses set the class attributes and implement ``attribute``."""

    key: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    citation: ClassVar[str]

    @abstractmethod
    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """Attribute ``target``'s score to the pixels of ``image`` ``(H, W, 3)``."""
