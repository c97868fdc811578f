"""The border share: how much of a map's mass lies in the image's outer band.

A first, cheap indicator of a shortcut: a model that looks at the frame, a
watermark in a corner or a border left by the data pipeline puts much of its
map there. A uniform map puts the band's share of the pixels there: with a band
of ``b`` whole pixels on each side of an ``H × W`` map,
``1 - (H - 2 b_H)(W - 2 b_W) / (H W)`` (:func:`uniform_border_share`). That is
``1 - 0.8² = 0.36`` only when 10% of each side is a whole number of pixels; at
224 px the band is 22 px and the value is ``1 - (180/224)² = 0.35427…``, at 96 px
``1 - (76/96)² = 0.37326…``. Values well above the uniform value deserve a look;
a value cannot prove a shortcut (objects can touch the frame) and a low value
cannot rule one out (a shortcut can sit anywhere). A map with no variation (every
pixel equal, which includes an all-zero map) counts as uniform, so the share is
always a number, never NaN.
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


def uniform_border_share(shape: tuple[int, int], band: float = BORDER_BAND) -> float:
    """The border share of a uniform ``(H, W)`` map: the band's share of the pixels.

    Computed from the band's whole-pixel width, not rounded: 0.354272… at 224 × 224,
    0.373264… at 96 × 96, exactly 0.36 at 100 × 100.
    """
    height, width = shape
    return int(border_mask(shape, band).sum()) / (height * width)


def border_share(saliency: np.ndarray, band: float = BORDER_BAND) -> float:
    """Share of the map's total mass in its outer band.

    Args:
        saliency: ``(H, W)`` normalised map (e.g. from
            :func:`saliency_core.pipeline.to_display_map`); signed maps count
            their absolute value; non-finite values count as 0.
        band: the band's width on each side, as a fraction of height and width.

    Returns:
        A number in ``[0, 1]``. A map with no variation (all values equal, an
        all-zero map included: normalising a constant map gives zeros) marks no
        pixel over another, so it gets :func:`uniform_border_share`, not NaN.
    """
    m = np.abs(np.asarray(saliency, dtype=np.float64))
    if m.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {m.shape}")
    m = np.where(np.isfinite(m), m, 0.0)
    total = m.sum()
    if total <= 0 or m.max() == m.min():
        return uniform_border_share(m.shape, band)
    return float(m[border_mask(m.shape, band)].sum() / total)
