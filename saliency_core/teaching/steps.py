"""Every intermediate array of the vanilla gradient map (Simonyan et al. 2013, sec. 3.1).

The steps are the paper's: the gradient ``w = dS_c/dI`` of the class score with
respect to the input pixels, its magnitude ``|w|``, the maximum of that over the
colour channels, and a normalisation to ``[0, 1]`` for display.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saliency_core.methods.base import GradientModel, Target
from saliency_core.postprocess import normalize_map, reduce_channels


@dataclass(frozen=True)
class GradientSteps:
    """The pipeline of one vanilla map, one array per step.

    Attributes:
        model_input: ``(H, W, 3)`` float32 0-255, the fitted image the user sees.
        network_input: ``(H, W, 3)`` float32, the same image after the model's
            own preprocessing (what its first layer receives).
        gradient: ``(H, W, 3)`` float32, ``w = dS_c/dI`` with respect to the
            0-255 pixels (preprocessing is inside the differentiated function).
        magnitude: ``(H, W, 3)`` float32, ``|w|``.
        reduced: ``(H, W)`` float32, ``max_c |w_c|``: the paper's saliency map.
        normalised: ``(H, W)`` float32 in ``[0, 1]``, after clipping at
            ``clip_percentile`` (if set).
        score: the class score ``S_c(I)`` explained.
        clip_percentile: the percentile clipped before normalising, or None.
    """

    model_input: np.ndarray
    network_input: np.ndarray
    gradient: np.ndarray
    magnitude: np.ndarray
    reduced: np.ndarray
    normalised: np.ndarray
    score: float
    clip_percentile: float | None


def compute_steps(model: GradientModel, image: np.ndarray, target: Target,
                  clip_percentile: float | None = 99.5) -> GradientSteps:
    """Compute every step of the vanilla gradient map of ``image``.

    Args:
        model: scores and gradients; if it has ``preprocessed(images)`` (as
            :class:`~saliency_core.tf_adapter.KerasClassifier` does), the network's
            input is recorded too, else the 0-255 image stands for it.
        image: ``(H, W, 3)`` 0-255 RGB at the model's input size.
        target: the class (and score kind) to explain.
        clip_percentile: clip the reduced map at this percentile before
            normalising (the Explore page's default is 99.5), or None.

    Returns:
        The :class:`GradientSteps`.
    """
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {pixels.shape}")
    grads, scores = model.gradients(pixels[None], target)
    gradient = np.asarray(grads[0], dtype=np.float32)
    preprocess = getattr(model, "preprocessed", None)
    network_input = (np.asarray(preprocess(pixels[None])[0], dtype=np.float32)
                     if preprocess is not None else pixels.copy())
    magnitude = np.abs(gradient)
    reduced = reduce_channels(gradient, "max_abs")
    return GradientSteps(
        model_input=pixels, network_input=network_input, gradient=gradient,
        magnitude=magnitude, reduced=reduced,
        normalised=normalize_map(reduced, clip_percentile), score=float(scores[0]),
        clip_percentile=clip_percentile)
