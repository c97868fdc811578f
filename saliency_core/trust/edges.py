"""A Sobel edge map of the image: the control "explanation" that needs no model.

Adebayo et al. 2018 (arXiv 1810.03292, sec. 3) show that some methods' maps
resemble a plain edge detector's output. Kept apart from the checks that use it
(the edge control, the randomisation figure's baseline) so both can import it.
"""

from __future__ import annotations

import numpy as np

from saliency_core.methods import Target


def compute_sobel_edges(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of an image's luminance.

    Args:
        image: ``(H, W, 3)`` (or ``(H, W)``) pixels, any range.

    Returns:
        ``(H, W)`` float32 edge strength ``sqrt(G_x^2 + G_y^2)``, borders reflected.
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:
        x = x @ np.array([0.299, 0.587, 0.114])[: x.shape[-1]] if x.shape[-1] == 3 \
            else x.mean(axis=-1)
    p = np.pad(x, 1, mode="reflect")
    gx = ((p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:])
          - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2]))
    gy = ((p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:])
          - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:]))
    return np.sqrt(gx * gx + gy * gy).astype(np.float32)


def explain_with_sobel(classifier, image: np.ndarray,
                       target: Target) -> np.ndarray:
    """An "explanation" that ignores the model: the Sobel edge map ``(H, W, 1)``.

    A control for the checks: it must fail model randomisation.
    """
    return compute_sobel_edges(image)[..., None]
