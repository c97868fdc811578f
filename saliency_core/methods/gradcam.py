"""Grad-CAM (Selvaraju et al. 2017, arXiv 1610.02391) and Grad-CAM++ (Chattopadhyay et al.
2018, arXiv 1710.11063).

Grad-CAM weights each feature map A_k of a late convolutional layer by the
spatial mean of dS_c/dA_k and keeps the positive part of the weighted sum, a
coarse map of where the class evidence is. Grad-CAM++ weights each location's
positive gradient by ``alpha = g^2 / (2 g^2 + sum(A) g^3)``, which helps when
several instances of the class appear. The map is upsampled bilinearly from the
layer's resolution to the input's.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from saliency_core.imaging import resize_map
from saliency_core.methods.base import (
    Attribution,
    LayerGradientModel,
    Param,
    ProgressCallback,
    SaliencyMethod,
    Target,
    Work,
    report,
)


def gradcam_weights(activations: np.ndarray, grads: np.ndarray, plus_plus: bool) -> np.ndarray:
    """Channel weights ``(k,)`` from one image's ``activations`` and ``grads`` ``(h, w, k)``."""
    a = activations.astype(np.float64)
    g = grads.astype(np.float64)
    if not plus_plus:
        return g.mean(axis=(0, 1))
    g2, g3 = g * g, g * g * g
    denominator = 2.0 * g2 + a.sum(axis=(0, 1), keepdims=True) * g3
    safe = np.where(denominator != 0.0, denominator, 1.0)
    alpha = np.where(denominator != 0.0, g2 / safe, 0.0)
    return (alpha * np.maximum(g, 0.0)).sum(axis=(0, 1))


def cam_map(activations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``relu(sum_k weights_k * A_k)``, shape ``(h, w)``."""
    return np.maximum(np.tensordot(activations.astype(np.float64), weights, axes=([-1], [0])),
                      0.0)


class GradCAM(SaliencyMethod):
    """Class activation map of a convolutional layer, weighted by gradients."""

    key = "gradcam"
    label = "Grad-CAM"
    description = ("Where in the last convolutional layer's feature maps the class evidence "
                   "sits: coarse but robust. Grad-CAM++ often gives almost the same map.")
    citation = "Selvaraju et al. 2017, arXiv:1610.02391"
    reading = ("Bright regions are where the chosen layer's features that raise the class score "
               "sit. The map is as coarse as that layer's grid (7×7 for most models' last layer).")
    display = "unsigned"
    family = "cams"
    plus_plus: ClassVar[bool] = False
    params: ClassVar[tuple[Param, ...]] = (
        Param("layer", "Layer", None, "The convolutional layer to explain; the default is "
              "the last one."),
    )

    def __init__(self, layer: str | None = None):
        self.layer = layer

    def work(self, input_size: tuple[int, int]) -> Work:
        """One pass to the layer and back."""
        return Work(layer=1)

    def layer_map(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """The map ``(h, w)`` at the layer's resolution from one image's ``activations``
        and their ``grads`` ``(h, w, k)``."""
        return cam_map(activations, gradcam_weights(activations, grads, self.plus_plus))

    def attribute(self, model: LayerGradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """The CAM of ``image`` ``(H, W, 3)``, upsampled to ``(H, W, 1)``."""
        layer = self.layer or model.default_cam_layer()
        acts, grads, scores = model.layer_gradients(np.asarray(image, np.float32)[None],
                                                    target, layer)
        cam = self.layer_map(acts[0], grads[0])
        values = resize_map(cam.astype(np.float32), image.shape[:2])[..., None]
        report(progress, 1.0)
        resolution = f"{cam.shape[1]}×{cam.shape[0]}"
        return Attribution(values=np.maximum(values, 0.0), score=float(scores[0]),
                           info={"layer": layer, "layer resolution": resolution})


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++: per-location weights for the gradients."""

    key = "gradcam_pp"
    label = "Grad-CAM++"
    description = ("Grad-CAM with per-location gradient weights; better with several objects. "
                   "With one object, or a small last-layer grid (7×7), it often looks almost "
                   "the same as Grad-CAM: that is expected.")
    citation = "Chattopadhyay et al. 2018, arXiv:1710.11063"
    plus_plus = True
