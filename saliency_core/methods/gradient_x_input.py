"""Gradient x Input (Shrikumar et al. 2016, arXiv 1605.01713).

Multiplies the gradient by the input pixels, a first-order estimate of each
pixel's contribution relative to a black (all-zero) image.
"""

from __future__ import annotations

import numpy as np

from saliency_core.methods.base import BatchedMethod, GradientModel, Target


class GradientTimesInput(BatchedMethod):
    """``x * dS_c/dx``, shape ``(H, W, 3)``."""

    key = "gradient_x_input"
    label = "Gradient × Input"
    description = ("The gradient times the pixel value: a first-order estimate of each "
                   "pixel's contribution compared with a black image.")
    citation = "Shrikumar et al. 2016, arXiv:1605.01713"
    reading = ("Bright pixels are those whose value, times the score's sensitivity to it, adds "
               "most to the score (a first-order estimate of each pixel's contribution).")

    def attribute_batch(self, model: GradientModel, images: np.ndarray,
                        target: Target) -> tuple[np.ndarray, np.ndarray]:
        """``images * gradients`` ``(B, H, W, 3)`` and scores ``(B,)``."""
        images = np.asarray(images, np.float32)
        grads, scores = model.gradients(images, target)
        return (grads * images).astype(np.float32), scores
