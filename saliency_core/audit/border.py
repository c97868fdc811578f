"""The border share: how much of a map's mass lies in the image's outer band.

A first, cheap indicator of a shortcut: a model that looks at the frame, a
watermark in a corner or a border left by the data pipeline puts much of its
map there. A uniform map has ``1 - (1 - 2 * 0.1) ** 2 = 0.36`` of its mass in
the outer 10% band, so values well above 0.36 deserve a look; a value cannot
prove a shortcut (objects can touch the frame) and a low value cannot rule one
out (a shortcut can sit anywhere).
"""

from __future__ import annotations

import math

import numpy as np

BORDER_BAND = 0.1
"""Width of the outer band on each side, as a fraction of the height and width."""


def band_width(length: int, band: float = BORDER_BAND) -> int:
    """Pixels in the band on one side of an axis of ``length`` pixels (rounded, at least 1)."""
    if not 0 < band < 0.5:
        raise ValueError("band must be in (0, 0.5)")
    return min(max(1, int(math.floor(length * band + 0.5))), length // 2)


def border_mask(shape: tuple[int, int], band: float = BORDER_BAND) -> np.ndarray:
    """``(H, W)`` bool mask of the outer band: ``band`` of the height/width on each side."""
    height, width = shape
    rows, cols = band_width(height, band), band_width(width, band)
    mask = np.ones((height, width), dtype=bool)
    mask[rows:height - rows, cols:width - cols] = False
    return mask


def border_share(saliency: np.ndarray, band: float = BORDER_BAND) -> float:
    """Share of the map's total mass in its outer band.

    Args:
        saliency: ``(H, W)`` normalised map (e.g. from
            :func:`saliency_core.pipeline.to_display_map`); signed maps count
            their absolute value.
        band: the band's width on each side, as a fraction of height and width.

    Returns:
        A number in ``[0, 1]``; ``nan`` for an all-zero map (no mass to share).
    """
    m = np.abs(np.asarray(saliency, dtype=np.float64))
    if m.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {m.shape}")
    total = m.sum()
    if not np.isfinite(total) or total <= 0:
        return float("nan")
    return float(m[border_mask(m.shape, band)].sum() / total)
