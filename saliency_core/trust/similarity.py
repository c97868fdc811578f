"""How alike two saliency maps are: Spearman rank correlation and SSIM, in numpy.

Adebayo et al. 2018 ("Sanity Checks for Saliency Maps", arXiv 1810.03292,
sec. 3) compare the map of a trained model with the maps of randomised models
using the Spearman rank correlation of the absolute maps and the structural
similarity (SSIM, Wang et al. 2004) of the normalised maps. Both are written
here in numpy so they can be checked against hand-computed values.

Shapes: attributions are ``(H, W, C)``; maps are ``(H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saliency_core.postprocess import normalize_map, reduce_channels


def rank_values(values: np.ndarray) -> np.ndarray:
    """Ranks ``1..n`` of a 1-D array, ties getting the mean of their ranks.

    Args:
        values: ``(n,)`` numbers.

    Returns:
        ``(n,)`` float64 ranks, e.g. ``[10, 20, 20, 5] -> [2, 3.5, 3.5, 1]``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Start of each run of equal values, and the mean rank of the run.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks start+1 .. end, averaged
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def compute_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (Pearson of their ranks).

    A map with no variation (all values equal) has no ranking, so its
    correlation with anything is defined here as 0.

    Args:
        a, b: arrays of the same shape, e.g. ``(H, W)``.

    Returns:
        A value in ``[-1, 1]``: 1 when ``b`` orders the pixels exactly as ``a``.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} and {b.shape}")
    ra, rb = rank_values(a), rank_values(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if denominator == 0:
        return 0.0
    return float(np.clip((ra * rb).sum() / denominator, -1.0, 1.0))


def _gaussian_kernel(sigma: float, radius: int) -> np.ndarray:
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / kernel.sum()


def filter_gaussian(values: np.ndarray, sigma: float, mode: str = "reflect") -> np.ndarray:
    """Separable Gaussian filter over the first two axes of ``(H, W)`` or ``(H, W, C)``.

    Args:
        values: the array to filter.
        sigma: standard deviation in pixels (> 0).
        mode: ``numpy.pad`` mode for the borders (``"reflect"``) or ``"valid"``
            to keep only positions where the whole kernel fits.

    Returns:
        float64 array; the same shape, or smaller by ``2 * radius`` per axis for
        ``"valid"`` (radius ``= ceil(3.5 sigma)``, as in scikit-image's SSIM).
    """
    x = np.asarray(values, dtype=np.float64)
    radius = max(1, int(np.ceil(3.5 * sigma)))
    kernel = _gaussian_kernel(sigma, radius)
    for axis in (0, 1):
        size = x.shape[axis]
        if mode != "valid":
            pad = [(0, 0)] * x.ndim
            pad[axis] = (radius, radius)
            padded = np.pad(x, pad, mode=mode if size > radius else "edge")
            size_out = size
        else:
            padded = x
            size_out = size - 2 * radius
            if size_out < 1:
                raise ValueError(f"an axis of {size} pixels is too small for sigma {sigma}")
        out = np.zeros(x.shape[:axis] + (size_out,) + x.shape[axis + 1:])
        for i, weight in enumerate(kernel):
            out += weight * np.take(padded, np.arange(i, i + size_out), axis=axis)
        x = out
    return x


def compute_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0,
                 sigma: float = 1.5) -> float:
    """Mean structural similarity of two ``(H, W)`` maps (Wang et al. 2004).

    Local means, variances and covariance use a Gaussian window (sigma 1.5) and
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = data_range``:
    ``SSIM = (2 mu_a mu_b + C1)(2 cov + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))``,
    averaged over the pixels. Maps smaller than the window use one global window.

    Args:
        a, b: ``(H, W)`` maps, normally both scaled to ``[0, 1]``.
        data_range: the range of the values, ``L``.
        sigma: the Gaussian window's standard deviation in pixels.

    Returns:
        1 for identical maps; lower for less similar ones (it can be negative).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (H, W) maps of one shape, got {a.shape} and {b.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    radius = max(1, int(np.ceil(3.5 * sigma)))
    if min(a.shape) > 2 * radius:
        def local(x):
            return filter_gaussian(x, sigma, mode="valid")
    else:
        def local(x):
            return np.full((1, 1), x.mean())
    mu_a, mu_b = local(a), local(b)
    var_a = local(a * a) - mu_a ** 2
    var_b = local(b * b) - mu_b ** 2
    cov = local(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    return float(ssim_map.mean())


def to_abs_map(values: np.ndarray) -> np.ndarray:
    """The ``(H, W)`` magnitude map of an attribution ``(H, W, C)``: ``max_c |a_c|``."""
    values = np.asarray(values)
    if values.ndim == 2:
        values = values[..., None]
    return reduce_channels(values, "max_abs")


def normalize_for_ssim(saliency: np.ndarray) -> np.ndarray:
    """Scale an ``(H, W)`` magnitude map to ``[0, 1]`` (clipped at its 99.5th percentile).

    This is the app's display scaling, so SSIM compares the maps as they are seen.
    """
    return normalize_map(saliency, clip_percentile=99.5)


@dataclass(frozen=True)
class Similarity:
    """How alike two maps are.

    Attributes:
        spearman: rank correlation of the absolute maps, ``[-1, 1]``.
        ssim: structural similarity of the normalised absolute maps.
    """

    spearman: float
    ssim: float


def compare_maps(a: np.ndarray, b: np.ndarray) -> Similarity:
    """Spearman of ``|a|`` and ``|b|``, and SSIM of their normalised versions.

    Args:
        a, b: attributions ``(H, W, C)`` (C may differ) or maps ``(H, W)``.
    """
    ma, mb = to_abs_map(a), to_abs_map(b)
    return Similarity(compute_spearman(ma, mb),
                      compute_ssim(normalize_for_ssim(ma), normalize_for_ssim(mb)))
