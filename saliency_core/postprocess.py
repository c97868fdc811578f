"""Turn a per-channel attribution into a displayable 2-D map.

Pure numpy, shared by every method. Shapes: attributions are ``(H, W, C)``,
maps are ``(H, W)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Reduction = Literal["max_abs", "mean_abs", "l2", "signed"]

DEFAULT_CLIP_PERCENTILE = 98.0
"""Where maps are clipped by default: values above the 98th percentile show at full
strength (Captum's ``visualize_image_attr`` drops the top 2% too). Gradient maps are
a few extreme pixels over a sparse speckle: clipped at 99.5, the median pixel of
the bundled samples' vanilla maps sat at 0.08-0.15 of the scale and the map was
dots; at 98 it is at 0.13-0.21 and the evidence reads as regions (see
:func:`saliency_core.plotting.overlay_visibility`)."""

REDUCTIONS: dict[str, str] = {
    "max_abs": "max |w| over channels (the paper's choice)",
    "mean_abs": "mean |w| over channels",
    "l2": "L2 norm over channels",
    "signed": "signed sum over channels (red raises the score, blue lowers it)",
}


def reduce_channels(attribution: np.ndarray, how: Reduction = "max_abs") -> np.ndarray:
    """Reduce an attribution ``(H, W, C)`` over its channels to ``(H, W)``.

    Simonyan et al. 2013 (arXiv 1312.6034, sec. 3.1) take ``max_c |w_c|``.

    Args:
        attribution: ``(H, W, C)`` array.
        how: ``"max_abs"``, ``"mean_abs"``, ``"l2"`` or ``"signed"`` (sum of
            signed values, so evidence for and against stay apart).

    Returns:
        ``(H, W)`` float32 map; non-negative except for ``"signed"``.
    """
    a = np.asarray(attribution, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"expected (H, W, C), got shape {a.shape}")
    if how == "max_abs":
        out = np.abs(a).max(axis=-1)
    elif how == "mean_abs":
        out = np.abs(a).mean(axis=-1)
    elif how == "l2":
        out = np.sqrt((a * a).sum(axis=-1))
    elif how == "signed":
        out = a.sum(axis=-1)
    else:
        raise ValueError(f"unknown reduction {how!r}; known: {', '.join(REDUCTIONS)}")
    return out.astype(np.float32)


def normalize_map(saliency: np.ndarray, clip_percentile: float | None = None,
                  signed: bool = False) -> np.ndarray:
    """Scale a map to ``[0, 1]`` (or ``[-1, 1]`` when ``signed``).

    Unsigned: ``(m - min) / (max - min)``. Signed: ``m / max|m|``, so zero stays
    zero. With ``clip_percentile`` (e.g. 99.5), values above that percentile of
    ``m`` (of ``|m|`` when signed) are clipped first, so a few extreme pixels do
    not wash out the rest. A constant map becomes all zeros.

    Args:
        saliency: ``(H, W)`` map.
        clip_percentile: in ``(0, 100]``, or None for no clipping.
        signed: keep the sign.

    Returns:
        ``(H, W)`` float32 in ``[0, 1]`` or ``[-1, 1]``.
    """
    m = np.asarray(saliency, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        m = np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)
    if clip_percentile is not None and not 0 < clip_percentile <= 100:
        raise ValueError("clip_percentile must be in (0, 100]")
    if signed:
        top = np.percentile(np.abs(m), clip_percentile) if clip_percentile else np.abs(m).max()
        if top <= 0:
            return np.zeros_like(m, dtype=np.float32)
        return np.clip(m / top, -1.0, 1.0).astype(np.float32)
    if clip_percentile:
        m = np.minimum(m, np.percentile(m, clip_percentile))
    lo, hi = m.min(), m.max()
    if hi <= lo:
        return np.zeros_like(m, dtype=np.float32)
    return ((m - lo) / (hi - lo)).astype(np.float32)


def normalize_jointly(maps: list[np.ndarray], clip_percentile: float | None = None,
                      signed: bool = False) -> list[np.ndarray]:
    """Normalise several maps with one shared scale, so they can be compared.

    Same rules as :func:`normalize_map`, but the minimum, maximum and clipping
    percentile are taken over all maps together (e.g. one method's maps for
    several classes on the Compare page).

    Args:
        maps: ``(H, W)`` maps, all the same shape.

    Returns:
        The maps in ``[0, 1]`` (``[-1, 1]`` when ``signed``), in the same order.
    """
    if not maps:
        return []
    stacked = np.stack([np.asarray(m, dtype=np.float64) for m in maps])
    joined = normalize_map(stacked.reshape(stacked.shape[0] * stacked.shape[1], -1),
                           clip_percentile, signed)
    return list(joined.reshape(stacked.shape))
