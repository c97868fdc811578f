"""Guided Backpropagation (Springenberg et al. 2014, arXiv 1412.6806) and Guided Grad-CAM
(Selvaraju et al. 2017, arXiv 1610.02391, sec. 3.1).

Guided Backpropagation is the input gradient ``dS_c/dI`` with one change in the
backward pass: at every ReLU the gradient passes only where the ReLU's input was
positive (as in ordinary backpropagation) *and* the gradient arriving from above
is positive. The maps are sharp and look like the object's outline, which is why
they persuade. Adebayo et al. 2018 ("Sanity Checks for Saliency Maps", arXiv
1810.03292, sec. 4) showed why they should not: they stay almost the same when
the model's weights are replaced by random ones, because the guided rule mostly
reconstructs the image (Nie, Zhang & Patel 2018, arXiv 1805.07039). The app
keeps Guided Backpropagation as the method that visibly *fails* that check: on
EfficientNet-Lite0 its map keeps a Spearman of about 0.98-1.0 with the original
after the head is randomised, where the vanilla gradient's falls to 0.3-0.5.

Guided Grad-CAM multiplies the Guided Backpropagation map ``(H, W, 3)`` by the
Grad-CAM map upsampled to ``(H, W, 1)``: Grad-CAM's coarse, class-dependent
region, with Guided Backpropagation's fine detail inside it.

The ReLU gradient override lives in :mod:`saliency_core.tf_adapter` (the model
asked here must offer ``guided_gradients``); the user's model is never changed.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

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
from saliency_core.methods.gradcam import cam_map, gradcam_weights

FAILS_RANDOMISATION = ("It looks convincing but barely depends on the model: it stays almost "
                       "the same when the model's top layers are randomised (Adebayo et al. "
                       "2018). The Trust page shows this.")
DETAIL_FROM_GUIDED = ("Its fine detail comes from Guided Backpropagation, which barely depends "
                      "on the model; its region comes from Grad-CAM, which does, so the map "
                      "changes under randomisation mostly through its region (see Trust).")


class GuidedGradientModel(LayerGradientModel, Protocol):
    """A model that can also backpropagate with guided ReLU gradients."""

    def guided_gradients(self, images: np.ndarray, target: Target
                         ) -> tuple[np.ndarray, np.ndarray]:
        """``(guided d score / d images, score)``: ``(B, H, W, 3)`` and ``(B,)``."""


def _guided(model, images: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
    if not hasattr(model, "guided_gradients"):
        raise TypeError("this model cannot override its ReLU gradients (no guided_gradients)")
    grads, scores = model.guided_gradients(np.asarray(images, np.float32), target)
    return np.asarray(grads, np.float32), np.asarray(scores, np.float32)


def _relu_info(model) -> dict:
    counter = getattr(model, "guided_relu_count", None)
    return {} if counter is None else {"ReLUs with guided gradients": int(counter())}


class GuidedBackprop(SaliencyMethod):
    """The input gradient with the guided ReLU rule.

    Not a :class:`~saliency_core.methods.base.BatchedMethod`, although a batch of
    images goes through the model in one call: pages send several *classes* of one
    image through such methods with plain gradients, one class per row, and the
    guided function takes one class per call.
    """

    key = "guided_backprop"
    label = "Guided Backpropagation"
    description = ("The gradient with negative signals stopped at every ReLU on the way back "
                   "(Springenberg et al. 2014): sharp, image-like maps. " + FAILS_RANDOMISATION)
    citation = "Springenberg et al. 2014, arXiv:1412.6806"
    reading = ("Bright pixels are where the guided gradient is large. The sharp outline shows "
               "the image more than the model: " + FAILS_RANDOMISATION)

    def attribute_batch(self, model: GuidedGradientModel, images: np.ndarray,
                        target: Target) -> tuple[np.ndarray, np.ndarray]:
        """Guided gradients ``(B, H, W, 3)`` and scores ``(B,)`` in one batched call."""
        return _guided(model, images, target)

    def attribute(self, model: GuidedGradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """The guided gradient of ``image`` ``(H, W, 3)``; ``info`` says how many ReLUs
        were guided (none: the map is the vanilla gradient)."""
        values, scores = _guided(model, np.asarray(image, np.float32)[None], target)
        report(progress, 1.0)
        return Attribution(values[0], float(scores[0]), _relu_info(model))


class GuidedGradCAM(SaliencyMethod):
    """Guided Backpropagation times the upsampled Grad-CAM map (Selvaraju et al. 2017)."""

    key = "guided_gradcam"
    label = "Guided Grad-CAM"
    description = ("Grad-CAM's region times Guided Backpropagation's detail (Selvaraju et al. "
                   "2017): a sharp map inside the class's region. " + DETAIL_FROM_GUIDED)
    citation = "Selvaraju et al. 2017, arXiv:1610.02391"
    family = "cams"
    reading = ("Bright pixels are sharp image detail inside the region Grad-CAM marks. "
               + DETAIL_FROM_GUIDED)
    params: ClassVar[tuple[Param, ...]] = (
        Param("layer", "Layer", None, "The convolutional layer of the Grad-CAM part; the "
              "default is the last one."),
    )

    def __init__(self, layer: str | None = None):
        self.layer = layer

    def work(self, input_size: tuple[int, int]) -> Work:
        """One guided pass to the input and one pass to the layer and back."""
        return Work(gradient=1, layer=1)

    def attribute(self, model: GuidedGradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """``guided (H, W, 3) * Grad-CAM (H, W, 1)`` of ``image`` ``(H, W, 3)``."""
        batch = np.asarray(image, np.float32)[None]
        guided, scores = _guided(model, batch, target)
        report(progress, 0.5)
        layer = self.layer or model.default_cam_layer()
        acts, grads, _ = model.layer_gradients(batch, target, layer)
        cam = cam_map(acts[0], gradcam_weights(acts[0], grads[0], plus_plus=False))
        upsampled = np.maximum(resize_map(cam.astype(np.float32), image.shape[:2]), 0.0)
        report(progress, 1.0)
        values = (guided[0] * upsampled[..., None]).astype(np.float32)
        return Attribution(values, float(scores[0]),
                           {"layer": layer, "layer resolution": f"{cam.shape[1]}×{cam.shape[0]}",
                            **_relu_info(model)})
