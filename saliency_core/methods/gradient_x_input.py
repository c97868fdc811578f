"""Gradient x Input (Shrikumar et al. 2016, arXiv 1605.01713).

Multiplies the gradient by the input pixels, a first-order estimate of each
pixel's contribution relative to a black (all-zero) image.
"""

from __future__ import annotations

import numpy as np

from saliency_core.methods.base import (
    Attribution,
    GradientModel,
    ProgressCallback,
    SaliencyMethod,
    Target,
    report,
)


class GradientTimesInput(SaliencyMethod):
    """``x * dS_c/dx``, shape ``(H, W, 3)``."""

    key = "gradient_x_input"
    label = "Gradient × Input"
    description = ("The gradient times the pixel value: a first-order estimate of each "
                   "pixel's contribution compared with a black image.")
    citation = "Shrikumar et al. 2016, arXiv:1605.01713"

    def attribute_batch(self, model: GradientModel, images: np.ndarray,
                        target: Target) -> tuple[np.ndarray, np.ndarray]:
        """``images * gradients`` ``(B, H, W, 3)`` and scores ``(B,)``."""
        images = np.asarray(images, np.float32)
        grads, scores = model.gradients(images, target)
        return (grads * images).astype(np.float32), scores

    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """Return ``image * dS/dimage`` for one image ``(H, W, 3)``."""
        values, scores = self.attribute_batch(model, np.asarray(image, np.float32)[None], target)
        report(progress, 1.0)
        return Attribution(values=values[0], score=float(scores[0]))
