"""SmoothGrad, SmoothGrad² and VarGrad: one sampling wrapper around any method.

SmoothGrad (Smilkov et al. 2017, arXiv 1706.03825) averages a method's
attributions over copies of the image with Gaussian noise added,
``sigma = noise * (max(x) - min(x))``. SmoothGrad² averages their squares and
VarGrad (Adebayo et al. 2018, arXiv 1810.03307) takes their variance: all three
share the same samples and differ only in aggregation. Samples go to the model in
nearly equal batches of at most ``model.batch_size``; the noise is drawn from one
seeded stream, so the result does not depend on the batch size.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from saliency_core.batching import split_evenly
from saliency_core.methods.base import (
    SEED,
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
from saliency_core.methods.vanilla import VanillaGradient

AGGREGATIONS = ("mean", "square", "variance")


class SmoothGrad(SaliencyMethod):
    """Average a base method over noisy copies of the image.

    Args:
        base: the method to smooth (default: the vanilla gradient).
        noise: noise standard deviation as a fraction of the image's value range.
        samples: number of noisy copies.
        aggregate: ``"mean"`` (SmoothGrad), ``"square"`` (SmoothGrad²) or
            ``"variance"`` (VarGrad).
        seed: seed of the noise stream.
        batch_size: samples per model call; defaults to ``model.batch_size``.
    """

    key = "smoothgrad"
    label = "SmoothGrad"
    description = ("The vanilla gradient averaged over noisy copies of the image, which "
                   "removes much of its speckle.")
    citation = "Smilkov et al. 2017, arXiv:1706.03825"
    reading = ("Bright pixels are where small changes move the class score the most, averaged "
               "over noisy copies of the image, so a bright spot is not a fluke of one exact "
               "pixel value.")
    sampling = True
    params: ClassVar[tuple[Param, ...]] = (
        Param("noise", "Noise level", 0.15, "Standard deviation of the added noise, as a "
              "fraction of the image's value range (the paper suggests 0.1-0.2).",
              0.0, 0.5, 0.01),
        Param("samples", "Samples", 25, "Noisy copies to average; more is smoother and "
              "slower.", 1, 100, 1),
    )
    extra_params: ClassVar[tuple[Param, ...]] = (SEED,)
    default_aggregate: ClassVar[str] = "mean"

    def __init__(self, base: SaliencyMethod | None = None, noise: float = 0.15,
                 samples: int = 25, aggregate: str | None = None, seed: int = 0,
                 batch_size: int | None = None):
        aggregate = aggregate or self.default_aggregate
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {AGGREGATIONS}")
        if samples < 1 or noise < 0:
            raise ValueError("samples must be >= 1 and noise >= 0")
        self.base = base or VanillaGradient()
        self.noise, self.samples, self.aggregate = float(noise), int(samples), aggregate
        self.seed, self.batch_size = seed, batch_size

    def work(self, input_size: tuple[int, int]) -> Work:
        """The base method's passes for every sample, and one forward pass for the score."""
        return self.base.work(input_size) * self.samples + Work(forward=1)

    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """Aggregate the base method over ``samples`` noisy copies of ``image`` ``(H, W, 3)``."""
        image = np.asarray(image, np.float32)
        sigma = self.noise * float(image.max() - image.min())
        rng = np.random.default_rng(self.seed)
        batch = max(1, self.batch_size or getattr(model, "batch_size", 16))
        total = total_sq = None
        for start, stop in split_evenly(self.samples, batch):
            n = stop - start
            noisy = image[None] + sigma * rng.standard_normal((n, *image.shape),
                                                              dtype=np.float32)
            values, _ = self.base.attribute_batch(model, noisy, target)
            values = values.astype(np.float64)
            chunk_sum, chunk_sq = values.sum(axis=0), (values * values).sum(axis=0)
            total = chunk_sum if total is None else total + chunk_sum
            total_sq = chunk_sq if total_sq is None else total_sq + chunk_sq
            report(progress, stop / self.samples)
        mean = total / self.samples
        if self.aggregate == "mean":
            out = mean
        elif self.aggregate == "square":
            out = total_sq / self.samples
        else:
            out = np.maximum(total_sq / self.samples - mean * mean, 0.0)
        return Attribution(values=out.astype(np.float32), score=score_at(model, image, target),
                           info={"samples": self.samples,
                                 "noise σ (in 0–255 pixel values)": round(sigma, 2)})


class SmoothGradSquared(SmoothGrad):
    """SmoothGrad with squared attributions averaged (sharper, unsigned)."""

    key = "smoothgrad_sq"
    label = "SmoothGrad²"
    description = ("SmoothGrad averaging squared gradients: sharper and always positive. "
                   "Often looks almost the same as VarGrad: when the noisy gradients average "
                   "out near zero, their mean square and their variance are nearly equal.")
    citation = "Hooker et al. 2019, arXiv:1806.10758"
    default_aggregate = "square"


class VarGrad(SmoothGrad):
    """The variance of the base method over noisy copies."""

    key = "vargrad"
    label = "VarGrad"
    description = ("The variance of the gradient over noisy copies of the image. Often looks "
                   "almost the same as SmoothGrad² (see there): that is expected, not a bug.")
    citation = "Adebayo et al. 2018, arXiv:1810.03307"
    default_aggregate = "variance"
