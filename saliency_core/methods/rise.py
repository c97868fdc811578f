"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko 2018, arXiv 1806.07421).

A black-box method: it needs only the model's scores, never a gradient, so it
works on any model, also one whose gradients are useless (saturated, quantised,
or shattered). It shows the model the image through ``masks`` random smooth
masks and credits each pixel with the scores of the masked images that kept it:
``S(p) = 1 / (N E[M]) * sum_i f(x * M_i) M_i(p)`` (the paper's eq. 6), an
estimate of ``E[f(x * M) | M(p) = 1]``, the expected score when pixel ``p`` is
kept.

Masks as in the paper: a ``grid`` × ``grid`` grid of cells, each kept with
probability ``keep``, upsampled bilinearly to ``(grid + 1)`` cells of
``ceil(H / grid)`` pixels and cropped at a random offset within one cell, so the
masks are smooth and their edges fall anywhere. The scores are centred on their
mean before they are summed (:meth:`RISE.estimate`): the same expectation as
eq. 6, with far less noise. The upsampling is linear and
separable, so a batch of masks is two small matrix products; the grids and
offsets are drawn up front from one seeded stream, so the map depends on the
seed only, not on the batch size. Masked images go to the model ``batch_size``
at a time: forward passes only.

The values returned are ``S(p) - min S``: a constant shift (recorded in
``info``) that keeps the paper's order of the pixels and starts the map at 0 at
the least useful pixel, so it reads like the other one-channel maps (bright =
keeping this region raises the expected score most) and every page that ranks
or scales ``|map|`` sees the paper's ranking.
"""

from __future__ import annotations

import math
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
)


def upsampling_matrix(cells: int, size: int) -> np.ndarray:
    """``(size, cells)`` weights of bilinear upsampling from ``cells`` to ``size`` samples,
    pixel centres aligned and edges reflected (scikit-image's ``resize(order=1)``, the
    paper's code)."""
    from skimage.transform import resize

    return resize(np.eye(cells), (size, cells), order=1, mode="reflect",
                  anti_aliasing=False)


def draw_masks(count: int, grid: int, keep: float, input_size: tuple[int, int],
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The random part of ``count`` masks: ``(grids, offsets)``, ``(count, grid, grid)``
    bool (cells kept) and ``(count, 2)`` int (crop offsets, each within one cell)."""
    rng = np.random.default_rng(seed)
    grids = rng.random((count, grid, grid)) < keep
    cells = [math.ceil(side / grid) for side in input_size]
    offsets = np.stack([rng.integers(0, cells[0], count), rng.integers(0, cells[1], count)],
                       axis=1)
    return grids, offsets


class MaskMaker:
    """Builds RISE masks ``(B, H, W)`` in [0, 1] from grids and offsets (:func:`draw_masks`)."""

    def __init__(self, grid: int, input_size: tuple[int, int]):
        height, width = input_size
        self.size = input_size
        self.rows = upsampling_matrix(grid, (grid + 1) * math.ceil(height / grid))
        self.cols = upsampling_matrix(grid, (grid + 1) * math.ceil(width / grid))

    def __call__(self, grids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        height, width = self.size
        rows = np.stack([self.rows[y:y + height] for y in offsets[:, 0]])
        cols = np.stack([self.cols[x:x + width] for x in offsets[:, 1]])
        return np.einsum("bHi,bij,bWj->bHW", rows, grids.astype(np.float64), cols,
                         optimize=True)


class RISE(SaliencyMethod):
    """The expected score when a pixel is kept, over random smooth masks."""

    key = "rise"
    label = "RISE"
    description = ("The image shown to the model through thousands of random smooth masks; "
                   "each pixel is credited with the scores of the masked images that kept it. "
                   "Forward passes only, so it works on any model, also one whose gradients "
                   "are useless.")
    citation = "Petsiuk, Das & Saenko 2018, arXiv:1806.07421"
    reading = ("Bright regions are those whose presence keeps the score highest when the "
               "rest of the image is randomly hidden; the map starts at 0 at the least useful "
               "region. It is as smooth as the masks' grid, and a few thousand masks still "
               "leave some noise (change the seed to see how much).")
    display = "unsigned"
    sampling = True
    family = "perturbation"
    params: ClassVar[tuple[Param, ...]] = (
        # 2000 by default: at 4000 the default model's map (about 40 s alone, over 60 s
        # on a busy server) was refused by the work budget on a new user's first try.
        Param("masks", "Masks", 2000, "Random masks, one forward pass each; more masks, less "
              "noise (the paper uses 4000 to 8000; raise it when the server's budget "
              "allows).", 100, 8000, 100),
        Param("grid", "Grid cells per side", 7, "Cells of the low-resolution mask before "
              "upsampling: fewer cells, larger blobs (the paper uses 7).", 2, 16, 1),
        Param("keep", "Share of cells kept", 0.5, "Probability that a cell shows the image "
              "(the paper uses 0.5).", 0.1, 0.9, 0.05),
        Param("seed", "Seed", 0, "Seed of the random masks: the same seed gives the same "
              "map.", 0, 999, 1),
    )

    def __init__(self, masks: int = 2000, grid: int = 7, keep: float = 0.5, seed: int = 0,
                 batch_size: int | None = None):
        if masks < 1 or grid < 1 or not 0 < keep <= 1:
            raise ValueError("masks and grid must be >= 1 and keep in (0, 1]")
        self.masks, self.grid, self.keep = int(masks), int(grid), float(keep)
        self.seed, self.batch_size = int(seed), batch_size

    def work(self, input_size: tuple[int, int]) -> Work:
        """One forward pass per mask, and one for the score at the image."""
        return Work(forward=self.masks + 1)

    def estimate(self, model: GradientModel, image: np.ndarray, target: Target,
                 progress: ProgressCallback | None = None) -> tuple[np.ndarray, float]:
        """The estimate ``(H, W)`` of ``E[f(x * M) M(p)] / E[M]`` and the mean score of the
        masked images, ``mean(f)``.

        The paper's sum ``sum_i f_i M_i(p) / (N E[M])`` (eq. 6) carries a term
        ``mean(f) * (sum_i M_i(p) / (N E[M]) - 1)``: how often pixel ``p`` happened to be
        kept, times the mean score. With class scores of about 10 and a few thousand
        masks that term is larger than the differences between pixels (two seeds of
        eq. 6 gave maps with r = -0.14 on the default model at 2000 masks). The scores
        are therefore centred first, ``sum_i (f_i - mean(f)) M_i(p) / (N E[M]) +
        mean(f)``: the same expectation (``E[M(p)] = E[M]``), without that term.
        """
        image = np.asarray(image, np.float32)
        grids, offsets = draw_masks(self.masks, self.grid, self.keep, image.shape[:2],
                                    self.seed)
        make = MaskMaker(self.grid, image.shape[:2])
        weighted = np.zeros(image.shape[:2], np.float64)  # sum_i f_i M_i
        kept = np.zeros(image.shape[:2], np.float64)  # sum_i M_i
        score_sum = 0.0
        bound = max(1, self.batch_size or getattr(model, "batch_size", 16))
        for start, stop in split_evenly(self.masks, bound):
            masks = make(grids[start:stop], offsets[start:stop])
            scores = model.scores(image[None] * masks.astype(np.float32)[..., None], target)
            weighted += np.tensordot(scores.astype(np.float64), masks, axes=1)
            kept += masks.sum(axis=0)
            score_sum += float(np.sum(scores, dtype=np.float64))
            report(progress, stop / self.masks)
        mean_score = score_sum / self.masks
        return (weighted - mean_score * kept) / (self.masks * self.keep) + mean_score, mean_score

    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """RISE's map ``(H, W, 1)`` of ``image``: the paper's estimator minus its minimum."""
        saliency, mean_score = self.estimate(model, image, target, progress)
        score = float(model.scores(np.asarray(image, np.float32)[None], target)[0])
        lowest = float(saliency.min())
        values = (saliency - lowest)[..., None].astype(np.float32)
        return Attribution(values=values, score=score, info={
            "masks": self.masks, "mean score of the masked images": mean_score,
            "estimate at the least useful pixel (subtracted)": lowest})
