"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman 2013, arXiv 1312.6034).

The class score S_c is approximated near the image I by its first-order Taylor
expansion ``S_c(I) ~ w^T I + b`` with ``w = dS_c/dI``; the magnitude of w says
which pixels need to change least to change the score most. The paper then
takes ``max_c |w|`` over colour channels (see :mod:`saliency_core.postprocess`).
"""

from __future__ import annotations

import numpy as np

from saliency_core.methods.base import BatchedMethod, GradientModel, Target


class VanillaGradient(BatchedMethod):
    """``w = dS_c/dI`` at the input image."""

    key = "vanilla"
    label = "Vanilla gradient"
    description = ("How much each pixel would change the class score if nudged: the "
                   "gradient dS_c/dI of Simonyan et al. 2013.")
    citation = "Simonyan, Vedaldi & Zisserman 2013, arXiv:1312.6034"
    reading = ("Bright pixels are where a small change to the pixel would move the class score "
               "the most. It measures sensitivity, not evidence: a bright pixel need not be part "
               "of the object.")

    def attribute_batch(self, model: GradientModel, images: np.ndarray,
                        target: Target) -> tuple[np.ndarray, np.ndarray]:
        """Gradients ``(B, H, W, 3)`` and scores ``(B,)`` in one batched call."""
        grads, scores = model.gradients(np.asarray(images, np.float32), target)
        return grads.astype(np.float32), scores
