"""XRAI (Kapishnikov, Bolukbasi, Viégas & Terry 2019, arXiv 1906.02825).

Pixel attributions are noisy; people read regions. XRAI first computes
Integrated Gradients from two baselines, a black and a white image (the image's
own minimum and maximum), averages them and takes the maximum over colour
channels. It then over-segments the image with Felzenszwalb's graph-based
algorithm at six scales (each segment dilated by 5 pixels, so segments also
cover their edges) and grows a region greedily: at each step it adds the
segment whose *new* pixels have the highest mean attribution (the "gain
density"), and gives those pixels that gain. The map is therefore piecewise
constant, and ranking its values ranks regions by importance: the brightest
region is the one to look at first. The values returned are the gains minus
the lowest gain (a constant, recorded in ``info``), so the least important
region is 0 and every page that scales or ranks ``|map|`` keeps XRAI's order.

Everything follows PAIR ``saliency``'s reference implementation (the paper's
authors'), so the two agree to float32 (``tests/test_peer_references.py``):
the same IG estimator (the mean gradient over ``steps`` evenly spaced points
including both ends, per baseline), the same segmentation settings (the image
scaled to [-1, 1] and resized to 224×224 for the segmentation, scales 50, 100,
150, 250, 500 and 1200, sigma 0.8, segments of at least 150 pixels), and the
same greedy rule (segments adding fewer than 50 new pixels are dropped, ties go
to the earlier segment). Two things are faster: both baselines' path points go
to the model in shared batches (the image itself, the end of both paths, only
once), and the greedy search re-counts only the segments that overlap the one
just added, instead of every segment at every step. Segmentation uses
scikit-image.
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
)

SEGMENT_SCALES = (50, 100, 150, 250, 500, 1200)
SEGMENT_SIGMA = 0.8
SEGMENT_MIN_SIZE = 150
SEGMENT_SIDE = 224  # the segmentation runs at this size, so the scales mean the same everywhere
DILATION_RADIUS = 5
MIN_NEW_PIXELS = 50


def segment_masks(image: np.ndarray) -> list[np.ndarray]:
    """Felzenszwalb segments of ``image`` ``(H, W, 3)`` at :data:`SEGMENT_SCALES`, as
    boolean masks ``(H, W)``, each dilated by :data:`DILATION_RADIUS` pixels.

    The image is scaled to [-1, 1] and resized to 224×224 first (the paper's
    parameters are tuned for that size and range); the segments are resized back
    with nearest-neighbour interpolation.
    """
    from skimage.morphology import dilation, disk
    from skimage.segmentation import felzenszwalb
    from skimage.transform import resize

    image = np.asarray(image, np.float64)
    height, width = image.shape[:2]
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    scaled = resize(scaled * 2.0 - 1.0, (SEGMENT_SIDE, SEGMENT_SIDE), order=3, mode="constant",
                    preserve_range=True, anti_aliasing=True)
    footprint = disk(DILATION_RADIUS)
    masks = []
    for scale in SEGMENT_SCALES:
        labels = felzenszwalb(scaled, scale=scale, sigma=SEGMENT_SIGMA,
                              min_size=SEGMENT_MIN_SIZE)
        labels = resize(labels, (height, width), order=0, preserve_range=True,
                        mode="constant", anti_aliasing=False).astype(int)
        for label in range(labels.min(), labels.max() + 1):
            mask = labels == label
            rows, cols = np.nonzero(mask)
            if not len(rows):
                masks.append(mask)
                continue
            # Dilating only the segment's neighbourhood gives the same mask, far faster.
            top, left = max(0, rows.min() - DILATION_RADIUS), max(0, cols.min() - DILATION_RADIUS)
            bottom = min(height, rows.max() + DILATION_RADIUS + 1)
            right = min(width, cols.max() + DILATION_RADIUS + 1)
            grown = np.zeros_like(mask)
            grown[top:bottom, left:right] = dilation(mask[top:bottom, left:right],
                                                     footprint=footprint)
            masks.append(grown)
    return masks


def rank_regions(attribution: np.ndarray, masks: list[np.ndarray],
                 min_new_pixels: int = MIN_NEW_PIXELS) -> tuple[np.ndarray, int]:
    """XRAI's greedy region growing over ``masks`` ``(H, W)`` bool, given a pixel
    ``attribution`` ``(H, W)``.

    Each step adds the segment whose not yet covered pixels have the highest mean
    attribution (segments with fewer than ``min_new_pixels`` such pixels are dropped
    for good; the earlier segment wins a tie). Only the segments that share pixels
    with the one just added change, so only theirs are counted again.

    Returns:
        ``(map, regions)``: the map ``(H, W)`` float64, where each added segment's
        new pixels hold their mean attribution and pixels no segment covered hold
        the mean over them; and how many segments were added.
    """
    attr = np.asarray(attribution, np.float64).ravel()
    out = np.full(attr.shape, -np.inf)
    covered = np.zeros(attr.shape, bool)
    pixel_lists = [np.flatnonzero(m) for m in masks]
    values = [attr[p] for p in pixel_lists]
    counts = np.array([len(p) for p in pixel_lists], np.float64)
    sums = np.array([v.sum() for v in values], np.float64)
    # Which segments hold each pixel: the pairs sorted by pixel.
    owners = np.repeat(np.arange(len(masks)), counts.astype(int))
    pixels = np.concatenate(pixel_lists) if pixel_lists else np.zeros(0, int)
    order = np.argsort(pixels, kind="stable")
    owner_of_pair = owners[order]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(pixels, minlength=attr.size))])
    active = np.ones(len(masks), bool)
    regions = 0
    while True:
        active &= counts >= min_new_pixels
        if not active.any():
            break
        with np.errstate(invalid="ignore", divide="ignore"):
            gains = np.where(active, sums / counts, -np.inf)
        best = int(np.argmax(gains))  # the first of equal gains, as the reference
        added = pixel_lists[best][~covered[pixel_lists[best]]]
        out[added] = gains[best]
        covered[added] = True
        active[best] = False
        regions += 1
        starts, stops = bounds[added], bounds[added + 1]
        lengths = stops - starts
        pairs = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            lengths.sum())
        for segment in np.unique(owner_of_pair[pairs]):
            if active[segment]:
                free = ~covered[pixel_lists[segment]]
                counts[segment] = free.sum()
                sums[segment] = values[segment][free].sum()
    rest = out == -np.inf
    if rest.any():
        out[rest] = attr[rest].mean()
    return out.reshape(np.shape(attribution)), regions


class XRAI(SaliencyMethod):
    """Regions ranked by the density of their Integrated Gradients attribution."""

    key = "xrai"
    label = "XRAI"
    description = ("Integrated Gradients (from a black and a white image) summed up over "
                   "image segments: regions, ranked by how much attribution their pixels "
                   "carry, instead of scattered pixels.")
    citation = "Kapishnikov et al. 2019, arXiv:1906.02825"
    reading = ("Each patch is an image segment; the brighter it is, the more Integrated "
               "Gradients attribution its pixels carry on average, so the brightest patches "
               "are the regions to look at first (the least important one is 0).")
    display = "unsigned"
    sampling = True
    family = "paths"
    params: ClassVar[tuple[Param, ...]] = (
        Param("steps", "Steps per baseline", 100, "Gradients averaged along each of the two "
              "paths (black and white baseline); the paper's code uses 100.", 2, 300, 1),
    )

    def __init__(self, steps: int = 100, batch_size: int | None = None):
        if steps < 2:
            raise ValueError("steps must be >= 2")
        self.steps, self.batch_size = int(steps), batch_size

    def work(self, input_size: tuple[int, int]) -> Work:
        """``steps`` gradient passes per baseline, the image (both paths' end) once."""
        return Work(gradient=2 * self.steps - 1)

    def integrated_gradients(self, model: GradientModel, image: np.ndarray, target: Target,
                             progress: ProgressCallback | None = None, share: float = 1.0
                             ) -> tuple[np.ndarray, float]:
        """The mean of the black- and white-baseline IG ``(H, W, 3)``, and the score at the
        image. Each path is ``steps`` evenly spaced points including both ends, and IG is
        ``(x - baseline) * mean(gradients)``, as in the reference."""
        alphas = np.linspace(0.0, 1.0, self.steps)
        baselines = np.stack([np.full_like(image, image.min()), np.full_like(image, image.max())])
        # (baseline, alpha) of every point; the image (alpha = 1) is sent once, for both.
        points = [(b, a) for b in range(2) for a in alphas if not (b == 1 and a == 1.0)]
        sums = np.zeros((2, *image.shape), np.float64)
        score = float("nan")
        bound = max(1, self.batch_size or getattr(model, "batch_size", 16))
        for start, stop in split_evenly(len(points), bound):
            chunk = points[start:stop]
            batch = np.stack([(baselines[b] + np.float32(a) * (image - baselines[b]))
                              for b, a in chunk]).astype(np.float32)
            grads, scores = model.gradients(batch, target)
            for (b, a), grad, s in zip(chunk, grads.astype(np.float64), scores, strict=True):
                sums[b] += grad
                if a == 1.0:
                    sums[1] += grad  # the white path ends at the image too
                    score = float(s)
            report(progress, share * stop / len(points))
        attributions = (image[None] - baselines) * sums / self.steps
        return attributions.mean(axis=0), score

    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """XRAI's region map ``(H, W, 1)`` of ``image`` ``(H, W, 3)``."""
        image = np.asarray(image, np.float32)
        ig, score = self.integrated_gradients(model, image, target, progress, share=0.85)
        masks = segment_masks(image)
        report(progress, 0.95)
        gains, regions = rank_regions(ig.max(axis=-1), masks)
        report(progress, 1.0)
        lowest = float(gains.min())
        return Attribution(values=(gains - lowest)[..., None].astype(np.float32), score=score,
                           info={"segments": len(masks), "regions ranked": regions,
                                 "IG steps per baseline": self.steps,
                                 "lowest region gain (subtracted)": lowest})
