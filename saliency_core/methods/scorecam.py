"""Score-CAM (Wang et al. 2020, arXiv 1910.01279).

Grad-CAM weights a layer's feature maps by gradients, which can be noisy or
vanish. Score-CAM needs no gradient: each feature map ``A_k`` of the chosen
layer is upsampled to the input, scaled to [0, 1] and used as a mask,
``x * H_k``; the model's softmax probability of the class on that masked image
is the map's weight, and the CAM is ``relu(sum_k w_k A_k)`` at the layer's
resolution, upsampled like Grad-CAM's. With a class contrast the weight is
``p_a - p_b``.

The masks follow tf-keras-vis's reference implementation, so the two agree to
float32 (``tests/test_peer_references.py``): linear upsampling that maps the
corners onto each other, and ``(H - min) / (max - min + 1e-7)``. It costs one
forward pass per channel (1280 on EfficientNet-Lite0's last layer), sent
``batch_size`` masked images at a time; channels that are constant on this
image all give the same black image, which is evaluated once. Layers with more
than :data:`MAX_CHANNELS` channels, or a smaller "channels" setting, keep the
channels whose activations vary most over the image (the authors' Faster
Score-CAM), so the number of passes is bounded before the method runs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from saliency_core.batching import split_evenly
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

MAX_CHANNELS = 2048  # the most channels any registered model's convolutional layers have
NORMALISE_EPSILON = 1e-7  # Keras's epsilon, as the reference
CHANNELS = {"all": "All (the paper)", "512": "512 most varied", "256": "256 most varied",
            "128": "128 most varied", "64": "64 most varied"}


def interpolation_matrix(size: int, target: int) -> np.ndarray:
    """``(target, size)`` weights of linear interpolation from ``size`` to ``target``
    samples with the end points on each other (``scipy.ndimage.zoom``'s ``order=1``)."""
    positions = np.linspace(0.0, size - 1.0, target)
    return np.stack([np.interp(positions, np.arange(size), column)
                     for column in np.eye(size)], axis=1)


def most_varied_channels(activations: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` channels of ``(h, w, k)`` with the largest spatial
    standard deviation, largest first (the earlier channel first among equals)."""
    spread = activations.reshape(-1, activations.shape[-1]).std(axis=0)
    return np.argsort(-spread, kind="stable")[:count]


class ScoreCAM(SaliencyMethod):
    """Feature maps used as masks, weighted by the class probability they keep."""

    key = "scorecam"
    label = "Score-CAM"
    description = ("Each feature map of a convolutional layer used as a mask over the image, "
                   "weighted by the class probability the masked image keeps: a CAM without "
                   "gradients. One forward pass per channel, so slower than Grad-CAM.")
    citation = "Wang et al. 2020, arXiv:1910.01279"
    reading = ("Bright regions are where the chosen layer's features, shown to the model on "
               "their own, keep the class probability high. The map is as coarse as that "
               "layer's grid.")
    display = "unsigned"
    sampling = True
    family = "cams"
    params: ClassVar[tuple[Param, ...]] = (
        Param("layer", "Layer", None, "The convolutional layer whose feature maps become "
              "masks; the default is the last one."),
        Param("channels", "Channels used", "all", "Feature maps used as masks, each costing "
              "one forward pass; fewer keeps the ones that vary most over the image (Faster "
              f"Score-CAM). 'All' uses at most {MAX_CHANNELS}.",
              options=tuple(CHANNELS), labels=CHANNELS),
    )

    def __init__(self, layer: str | None = None, channels: str = "all",
                 batch_size: int | None = None):
        if str(channels) not in CHANNELS:
            raise ValueError(f"channels must be one of {', '.join(CHANNELS)}")
        self.layer, self.channels, self.batch_size = layer, str(channels), batch_size
        self.limit = MAX_CHANNELS if self.channels == "all" else int(self.channels)

    def work(self, input_size: tuple[int, int]) -> Work:
        """A forward pass to the layer, one per channel used (at most :attr:`limit`), and
        one for the score at the image."""
        return Work(forward=self.limit + 2)

    def attribute(self, model: LayerGradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """The Score-CAM of ``image`` ``(H, W, 3)``, upsampled to ``(H, W, 1)``."""
        image = np.asarray(image, np.float32)
        layer = self.layer or model.default_cam_layer()
        activations = model.layer_activations(image[None], layer)[0].astype(np.float64)
        total = activations.shape[-1]
        if total > self.limit:
            activations = activations[..., most_varied_channels(activations, self.limit)]
        height, width = image.shape[:2]
        rows = interpolation_matrix(activations.shape[0], height)
        cols = interpolation_matrix(activations.shape[1], width)
        probability = Target(target.class_index, target.contrast_index, "probability")
        weights = np.empty(activations.shape[-1], np.float64)
        black = None  # the weight of the all-zero mask, shared by constant channels
        bound = max(1, self.batch_size or getattr(model, "batch_size", 16))
        chunks = split_evenly(activations.shape[-1], bound)
        for start, stop in chunks:
            up = np.einsum("Hh,hwk,Ww->kHW", rows, activations[..., start:stop], cols,
                           optimize=True)
            low = up.min(axis=(1, 2), keepdims=True)
            high = up.max(axis=(1, 2), keepdims=True)
            masks = (up - low) / (high - low + NORMALISE_EPSILON)
            flat = (high == low).ravel()
            varied = np.flatnonzero(~flat)
            if len(varied):
                masked = (image[None] * masks[varied, ..., None]).astype(np.float32)
                weights[start + varied] = model.scores(masked, probability)
            if flat.any():
                if black is None:
                    black = float(model.scores(np.zeros_like(image)[None], probability)[0])
                weights[start + np.flatnonzero(flat)] = black
            report(progress, stop / activations.shape[-1])
        cam = np.maximum(np.tensordot(activations, weights, axes=([-1], [0])), 0.0)
        values = np.maximum(resize_map(cam.astype(np.float32), (height, width)), 0.0)[..., None]
        score = float(model.scores(image[None], target)[0])
        return Attribution(values=values, score=score, info={
            "layer": layer, "layer resolution": f"{cam.shape[1]}×{cam.shape[0]}",
            "channels used": f"{activations.shape[-1]} of {total}"})
