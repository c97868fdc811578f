"""LayerCAM (Jiang, Zhang, Hou, Cheng & Wei 2021, IEEE TIP 30, doi:10.1109/TIP.2021.3089943).

Grad-CAM gives each feature map one weight, the spatial mean of its gradient,
which blurs away where inside the map the evidence is. LayerCAM weights every
location by its own positive gradient instead:
``M = relu(sum_k relu(dS_c/dA_k) * A_k)``, computed at the layer's resolution
``(h, w)``. That keeps fine detail at earlier layers (a 28×28 or 56×56 grid),
where Grad-CAM's maps fall apart, and gives nearly Grad-CAM's map at the last
layer. One forward and backward pass to the chosen layer; the map is upsampled
to the input like Grad-CAM's.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from saliency_core.methods.base import Param
from saliency_core.methods.gradcam import GradCAM


def layercam_map(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """``relu(sum_k relu(g_k) * A_k)``, shape ``(h, w)``, from ``(h, w, k)`` arrays."""
    a = activations.astype(np.float64)
    g = np.maximum(grads.astype(np.float64), 0.0)
    return np.maximum((a * g).sum(axis=-1), 0.0)


class LayerCAM(GradCAM):
    """Class activation map weighted location by location by the positive gradients."""

    key = "layercam"
    label = "LayerCAM"
    description = ("Each location of a convolutional layer's feature maps weighted by its own "
                   "positive gradient: Grad-CAM's idea with detail kept, so earlier (finer) "
                   "layers give usable maps too.")
    citation = "Jiang et al. 2021, IEEE TIP 30:5875"
    reading = ("Bright regions are where the chosen layer's features raise the class score, "
               "location by location. Earlier layers give finer maps (their grid is shown "
               "with the layer's name); the last layer gives nearly Grad-CAM's map.")
    params: ClassVar[tuple[Param, ...]] = (
        Param("layer", "Layer", None, "The convolutional layer to explain; the default is the "
              "last one. Earlier layers give finer maps."),
    )

    def layer_map(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """LayerCAM's map ``(h, w)`` from one image's ``(h, w, k)`` activations and gradients."""
        return layercam_map(activations, grads)
