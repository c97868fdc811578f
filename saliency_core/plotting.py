"""Pure plotting: every function returns data or a ``plotly.graph_objects.Figure``.

Nothing here displays anything; pages decide where figures go. Colour maps are
Plotly colour scales, sampled into lookup tables for the PNG export so the
downloaded overlay looks like the one on screen.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from saliency_core.imaging import resize_map

COLORMAPS: dict[str, str] = {
    "jet": "Jet",
    "viridis": "Viridis",
    "cividis": "Cividis",
    "inferno": "Inferno",
    "greys": "Greys",
}
"""Unsigned colour maps: key -> Plotly colour scale. ``cividis`` is designed to be
read the same by people with colour-vision deficiency; ``jet`` is the blog's."""

COLORMAP_LABELS: dict[str, str] = {
    "jet": "Jet (as in the blog)",
    "viridis": "Viridis",
    "cividis": "Cividis (colour-blind safe)",
    "inferno": "Inferno",
    "greys": "Greys",
}

SIGNED_COLORSCALE = "RdBu_r"
"""Diverging scale for signed maps: blue lowers the score, red raises it."""

OPACITY_STEPS = tuple(round(i / 10, 1) for i in range(11))


def _colorscale(colormap: str, signed: bool) -> str:
    if signed:
        return SIGNED_COLORSCALE
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; known: {', '.join(COLORMAPS)}")
    return COLORMAPS[colormap]


def colormap_lut(colormap: str, signed: bool = False, size: int = 256) -> np.ndarray:
    """A ``(size, 3)`` uint8 lookup table for a colour map."""
    colors = sample_colorscale(_colorscale(colormap, signed), np.linspace(0, 1, size),
                               colortype="tuple")
    return np.clip(np.rint(np.array(colors) * 255), 0, 255).astype(np.uint8)


def colorize(saliency: np.ndarray, colormap: str = "jet", signed: bool = False) -> np.ndarray:
    """Colour a map ``(H, W)`` in ``[0, 1]`` (``[-1, 1]`` if signed) to ``(H, W, 3)`` uint8."""
    m = np.asarray(saliency, dtype=np.float32)
    unit = (m + 1.0) / 2.0 if signed else m
    index = np.clip(np.rint(unit * 255), 0, 255).astype(np.intp)
    return colormap_lut(colormap, signed)[index]


def blend_overlay(view: np.ndarray, saliency: np.ndarray, colormap: str = "jet",
                  opacity: float = 0.5, signed: bool = False) -> np.ndarray:
    """Alpha-blend a coloured map over the image, as the overlay figure shows it.

    Args:
        view: ``(H, W, 3)`` uint8 image.
        saliency: ``(h, w)`` map; resized bilinearly to ``(H, W)``.
        opacity: weight of the map, 0 (image only) to 1 (map only).

    Returns:
        ``(H, W, 3)`` uint8.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError("opacity must be in [0, 1]")
    resized = resize_map(saliency, view.shape[:2])
    heat = colorize(resized, colormap, signed).astype(np.float32)
    out = (1.0 - opacity) * view.astype(np.float32) + opacity * heat
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_trace(view: np.ndarray) -> go.Image:
    uri = "data:image/png;base64," + base64.b64encode(encode_png(view)).decode("ascii")
    return go.Image(source=uri, name="image", hoverinfo="skip")


def _heatmap_trace(view_shape: Sequence[int], saliency: np.ndarray, colormap: str,
                   opacity: float, signed: bool, show_colorbar: bool = True) -> go.Heatmap:
    height, width = view_shape[:2]
    rows, cols = saliency.shape
    dx, dy = width / cols, height / rows
    return go.Heatmap(
        z=np.round(np.asarray(saliency, dtype=np.float32), 3),
        x0=dx / 2 - 0.5, dx=dx, y0=dy / 2 - 0.5, dy=dy,
        colorscale=_colorscale(colormap, signed),
        zmin=-1.0 if signed else 0.0, zmax=1.0,
        opacity=opacity, zsmooth="best", name="saliency",
        showscale=show_colorbar,
        colorbar={"title": {"text": "saliency"}, "thickness": 14},
        hovertemplate="x %{x:.0f}, y %{y:.0f}<br>saliency %{z:.3f}<extra></extra>",
    )


def _image_axes(fig: go.Figure, **kwargs) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", **kwargs)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     autorange="reversed", scaleanchor="x", **kwargs)


def make_overlay_figure(view: np.ndarray, saliency: np.ndarray, colormap: str = "jet",
                        opacity: float = 0.5, signed: bool = False,
                        title: str | None = None) -> go.Figure:
    """The image with the saliency map on top and a client-side opacity slider.

    The map ``(h, w)`` (usually the model's input resolution) is stretched over
    the image ``(H, W, 3)``; since the model's input was resized from exactly
    this view, the two line up pixel for pixel. Moving the slider restyles the
    heat map's opacity in the browser, with no server round-trip.
    """
    fig = go.Figure([_image_trace(view), _heatmap_trace(view.shape, saliency, colormap,
                                                        opacity, signed)])
    active = int(np.argmin([abs(s - opacity) for s in OPACITY_STEPS]))
    fig.update_layout(
        title=title,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        sliders=[{
            "active": active,
            "currentvalue": {"prefix": "Map opacity: "},
            "pad": {"t": 30},
            "steps": [{"label": f"{s:.1f}", "method": "restyle",
                       "args": [{"opacity": s}, [1]]} for s in OPACITY_STEPS],
        }],
    )
    _image_axes(fig)
    return fig


def make_side_by_side_figure(view: np.ndarray, saliency: np.ndarray, colormap: str = "jet",
                             signed: bool = False) -> go.Figure:
    """Image | map, side by side with linked zoom, like the blog's figure."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Image", "Saliency map"),
                        horizontal_spacing=0.04, shared_xaxes=True, shared_yaxes=True)
    fig.add_trace(_image_trace(view), row=1, col=1)
    fig.add_trace(_heatmap_trace(view.shape, saliency, colormap, 1.0, signed), row=1, col=2)
    fig.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     autorange="reversed")
    fig.update_yaxes(scaleanchor="x", row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    return fig


def make_topk_figure(names: Sequence[str], probabilities: Sequence[float],
                     highlight: int | None = None) -> go.Figure:
    """Horizontal bar chart of the top-k classes, best at the top.

    Args:
        names: class names, best first.
        probabilities: softmax probabilities in ``[0, 1]``, same order.
        highlight: position in ``names`` to colour as selected.
    """
    colors = ["#e4572e" if i == highlight else "#4c78a8" for i in range(len(names))]
    fig = go.Figure(go.Bar(
        x=[100 * p for p in probabilities], y=list(names), orientation="h",
        marker_color=colors, text=[f"{100 * p:.1f}%" for p in probabilities],
        textposition="auto", hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    fig.update_layout(height=60 + 36 * len(names), margin={"l": 10, "r": 10, "t": 10, "b": 30},
                      xaxis={"title": "probability (%)", "range": [0, 100]},
                      yaxis={"autorange": "reversed"})
    return fig


def make_comparison_figure(view: np.ndarray, maps: Sequence[Sequence[np.ndarray]],
                           row_labels: Sequence[str], column_labels: Sequence[str],
                           cell_notes: Sequence[Sequence[str]], colormap: str = "jet",
                           opacity: float = 0.6, signed: bool = False) -> go.Figure:
    """A grid of overlays: one row per method, one column per class.

    Args:
        view: ``(H, W, 3)`` uint8 image shown under every map.
        maps: ``maps[row][column]`` is an ``(h, w)`` map, already normalised so
            that each row shares one scale (``[0, 1]``, or ``[-1, 1]`` if signed).
        row_labels, column_labels: method and class names.
        cell_notes: a short note per cell (e.g. the time it took).
    """
    rows, cols = len(row_labels), len(column_labels)
    titles = [f"{column_labels[c]}<br><sup>{cell_notes[r][c]}</sup>"
              for r in range(rows) for c in range(cols)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        horizontal_spacing=0.02, vertical_spacing=0.08 / max(rows, 1))
    for r in range(rows):
        for c in range(cols):
            fig.add_trace(_image_trace(view), row=r + 1, col=c + 1)
            heat = _heatmap_trace(view.shape, maps[r][c], colormap, opacity, signed,
                                  show_colorbar=(r == 0 and c == 0))
            fig.add_trace(heat, row=r + 1, col=c + 1)
        fig.update_yaxes(title_text=row_labels[r], row=r + 1, col=1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     autorange="reversed")
    for i in range(1, rows * cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.update_layout({f"yaxis{suffix}": {"scaleanchor": f"x{suffix}"}})
    fig.update_layout(height=80 + 230 * rows, margin={"l": 60, "r": 10, "t": 60, "b": 10})
    return fig
