"""Occlusion sensitivity (Zeiler & Fergus 2014, arXiv 1311.2901).

Slides a grey square over the image and records how much the target score
drops; each pixel gets the average drop over the squares that covered it. It
needs only forward passes, so it works for any model: a baseline that does not
depend on gradients. Positive values: covering the pixel lowers the score.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from saliency_core.batching import split_evenly
from saliency_core.methods.base import (
    Attribution,
    GradientModel,
    Param,
    ProgressCallback,
    SaliencyMethod,
    Target,
    Work,
    report,
    score_at,
)

FILL_VALUE = 127.5  # mid grey in 0-255


def _positions(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets so that patches of ``patch`` pixels, ``stride`` apart, cover ``size``."""
    if patch >= size:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)  # cover the right/bottom edge too
    return starts


class Occlusion(SaliencyMethod):
    """Score drop when a grey ``patch`` x ``patch`` square hides each region."""

    key = "occlusion"
    label = "Occlusion"
    description = ("How much the score drops when a grey square hides each region: "
                   "model-agnostic, forward passes only.")
    citation = "Zeiler & Fergus 2014, arXiv:1311.2901"
    reading = ("Red regions are where hiding the image under a grey square lowers the score "
               "(evidence for the class); blue ones, where hiding them raises it. The map is as "
               "coarse as the square and the stride.")
    display = "signed"
    sampling = True
    family = "perturbation"
    params: ClassVar[tuple[Param, ...]] = (
        Param("patch", "Patch size (pixels)", 32, "Side of the grey square, in model-input "
              "pixels.", 4, 224, 4),
        Param("stride", "Stride (pixels)", 16, "Step between squares; smaller is finer and "
              "slower.", 2, 224, 2),
    )
    extra_params: ClassVar[tuple[Param, ...]] = (
        Param("fill", "Fill value", FILL_VALUE, "Grey level of the square, 0-255.", 0.0,
              255.0, 0.5),
    )

    def __init__(self, patch: int = 32, stride: int = 16, fill: float = FILL_VALUE,
                 batch_size: int | None = None):
        if patch < 1 or stride < 1:
            raise ValueError("patch and stride must be >= 1")
        self.patch, self.stride, self.fill, self.batch_size = int(patch), int(stride), \
            float(fill), batch_size

    def work(self, input_size: tuple[int, int]) -> Work:
        """One forward pass per square position, and one for the unoccluded image."""
        height, width = input_size
        squares = (len(_positions(height, self.patch, self.stride))
                   * len(_positions(width, self.patch, self.stride)))
        return Work(forward=squares + 1)

    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """Average score drop per pixel, shape ``(H, W, 1)``."""
        image = np.asarray(image, np.float32)
        height, width = image.shape[:2]
        boxes = [(y, x) for y in _positions(height, self.patch, self.stride)
                 for x in _positions(width, self.patch, self.stride)]
        base_score = score_at(model, image, target)
        drops = np.zeros((height, width), np.float64)
        counts = np.zeros((height, width), np.float64)
        batch = max(1, self.batch_size or getattr(model, "batch_size", 16))
        for start, stop in split_evenly(len(boxes), batch):
            chunk = boxes[start:stop]
            occluded = np.repeat(image[None], len(chunk), axis=0)
            for i, (y, x) in enumerate(chunk):
                occluded[i, y:y + self.patch, x:x + self.patch] = self.fill
            scores = model.scores(occluded, target)
            for (y, x), s in zip(chunk, scores, strict=True):
                drops[y:y + self.patch, x:x + self.patch] += base_score - float(s)
                counts[y:y + self.patch, x:x + self.patch] += 1
            report(progress, stop / len(boxes))
        values = (drops / np.maximum(counts, 1))[..., None].astype(np.float32)
        return Attribution(values=values, score=base_score,
                           info={"occluded images": len(boxes)})
