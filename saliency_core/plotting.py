"""Pure plotting: every function returns data or a ``plotly.graph_objects.Figure``.

Nothing here displays anything; pages decide where figures go. Colour maps are
Plotly colour scales, sampled into lookup tables for the PNG export so the
downloaded overlay looks like the one on screen.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import io
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from saliency_core.imaging import resize_map

COLORMAPS: dict[str, str] = {
    "viridis": "Viridis",
    "cividis": "Cividis",
    "inferno": "Inferno",
    "greys": "Greys",
    "jet": "Jet",
}
"""Unsigned colour maps: key -> Plotly colour scale. Viridis (the default), Cividis
and Inferno are perceptually uniform: equal steps in value look like equal steps
in colour. ``cividis`` also reads the same with colour-vision deficiency; ``jet``
(the blog's choice) is not uniform and invents edges where there are none."""

COLORMAP_LABELS: dict[str, str] = {
    "viridis": "Viridis (perceptually uniform)",
    "cividis": "Cividis (uniform, colour-blind safe)",
    "inferno": "Inferno (uniform, dark to bright)",
    "greys": "Greys (white = least, black = most)",
    "jet": "Jet (the blog's choice, not uniform)",
}

SIGNED_COLORSCALE = "RdBu_r"
"""Diverging scale for signed maps: blue lowers the score, red raises it."""

OPACITY_STEPS = tuple(round(i / 10, 1) for i in range(11))


def escape_plotly(text: str) -> str:
    """Escape text for Plotly labels, hover text and titles, which render a subset of
    HTML (links, images, styles): user-supplied names are shown literally."""
    return html.escape(str(text), quote=True)


def _colorscale(colormap: str, signed: bool) -> str:
    if signed:
        return SIGNED_COLORSCALE
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; known: {', '.join(COLORMAPS)}")
    return COLORMAPS[colormap]


def _explicit_colorscale(colormap: str, signed: bool, fade: bool = False,
                         steps: int = 21) -> list:
    """The colour scale as an explicit list of ``rgb()``/``rgba()`` stops.

    Never a named scale or hex colours: Streamlit's chart theming replaces some hex
    values (Inferno's first colour ``#000004`` came out pink). With ``fade`` the
    alpha follows :func:`fade_weights`.
    """
    positions = np.linspace(0.0, 1.0, steps)
    colors = sample_colorscale(_colorscale(colormap, signed), list(positions), colortype="tuple")
    scale = []
    for t, (r, g, b) in zip(positions, colors, strict=True):
        rgb = f"{round(255 * r)},{round(255 * g)},{round(255 * b)}"
        if fade:
            alpha = float(fade_weights(np.float32(2 * t - 1 if signed else t), signed))
            scale.append([float(t), f"rgba({rgb},{alpha:.3f})"])
        else:
            scale.append([float(t), f"rgb({rgb})"])
    return scale


def make_colorscale(colormap: str, signed: bool = False) -> list:
    """A colour map as explicit ``rgb()`` stops, safe from Streamlit's chart theming."""
    return _explicit_colorscale(colormap, signed)


@functools.lru_cache(maxsize=32)
def colormap_lut(colormap: str, signed: bool = False, size: int = 256) -> np.ndarray:
    """A ``(size, 3)`` uint8 lookup table for a colour map (read-only).

    Kept once per colour map: Plotly samples its scale in Python, about 10 ms a
    table, which was a fifth of an audit image's time when every overlay built it.
    """
    colors = sample_colorscale(_colorscale(colormap, signed), np.linspace(0, 1, size),
                               colortype="tuple")
    lut = np.clip(np.rint(np.array(colors) * 255), 0, 255).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def colorize(saliency: np.ndarray, colormap: str = "viridis", signed: bool = False) -> np.ndarray:
    """Colour a map ``(H, W)`` in ``[0, 1]`` (``[-1, 1]`` if signed) to ``(H, W, 3)`` uint8."""
    m = np.asarray(saliency, dtype=np.float32)
    unit = (m + 1.0) / 2.0 if signed else m
    scaled = unit * np.float32(255)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    # uint8 indices and np.take: a third of the time of int64 fancy indexing (an audit
    # colours one overlay per image), with the same colours.
    return np.take(colormap_lut(colormap, signed), scaled.astype(np.uint8), axis=0)


FADE_FULL_AT = 0.5
"""With fading on, map values at or above this share of the scale get the full opacity."""

DEFAULT_OPACITY = 0.6
"""The overlay's opacity before the user moves the slider (Explore, Compare, Live, Audit)."""


def fade_weights(saliency: np.ndarray, signed: bool = False) -> np.ndarray:
    """Per-pixel weight of the map when weak values fade:
    ``sqrt(min(1, m / FADE_FULL_AT))`` for ``m`` in ``[0, 1]`` (``|m|`` for a signed map
    in ``[-1, 1]``).

    The photo shows through where the map is low. Values from half the scale up are
    drawn at the full chosen opacity and weaker ones fade with the square root, which
    keeps a tint on mid values: gradient maps are mostly low and speckled, and with the
    plain ``sqrt(m)`` of earlier versions a vanilla map at opacity 0.5 was a few faint
    dots (:func:`overlay_visibility` measures it).
    """
    m = np.asarray(saliency, dtype=np.float32)
    strength = np.abs(m) if signed else m
    return np.sqrt(np.clip(strength / np.float32(FADE_FULL_AT), 0.0, 1.0))


def overlay_visibility(view: np.ndarray, saliency: np.ndarray, colormap: str = "viridis",
                       opacity: float = DEFAULT_OPACITY, signed: bool = False,
                       fade: bool = True, strongest: float = 0.2,
                       difference: float = 48.0) -> float:
    """How much of a map can be seen in its overlay: the share of the map's strongest
    pixels whose colour in the overlay differs clearly from the photo's.

    Measured on the map's own pixel grid ``(h, w)`` (the photo is resized to it), as
    :func:`blend_overlay` draws it. A map whose strongest fifth of pixels barely tints
    the photo reads as "no map" to a visitor, whatever its colour bar says.

    Args:
        view: ``(H, W, 3)`` uint8 photo under the map.
        saliency: ``(h, w)`` map in ``[0, 1]`` (``[-1, 1]`` if signed).
        colormap, opacity, signed, fade: as in :func:`blend_overlay`.
        strongest: the share of pixels, by ``|value|``, that count as the map's evidence.
        difference: the Euclidean RGB distance (0-441) from the photo's pixel that
            counts as clearly visible.

    Returns:
        A share in ``[0, 1]``.
    """
    m = np.asarray(saliency, dtype=np.float32)
    photo = np.asarray(Image.fromarray(np.asarray(view, dtype=np.uint8)).resize(
        (m.shape[1], m.shape[0]), Image.Resampling.BILINEAR))
    blended = blend_overlay(photo, m, colormap, opacity, signed, fade)
    distance = np.sqrt(((blended.astype(np.float32) - photo.astype(np.float32)) ** 2).sum(-1))
    strength = np.abs(m)
    evidence = strength >= np.quantile(strength, 1.0 - strongest)
    return float(np.mean(distance[evidence] >= difference))


def blend_overlay(view: np.ndarray, saliency: np.ndarray, colormap: str = "viridis",
                  opacity: float = DEFAULT_OPACITY, signed: bool = False,
                  fade: bool = False) -> np.ndarray:
    """Alpha-blend a coloured map over the image, as the overlay figure shows it.

    Args:
        view: ``(H, W, 3)`` uint8 image.
        saliency: ``(h, w)`` map; resized bilinearly to ``(H, W)``.
        opacity: weight of the map, 0 (image only) to 1 (map only).
        signed: the map is in ``[-1, 1]`` (diverging colours).
        fade: weight each pixel by its map value too (:func:`fade_weights`), so weak
            values let the photo through.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError("opacity must be in [0, 1]")
    resized = resize_map(saliency, view.shape[:2])
    heat = colorize(resized, colormap, signed).astype(np.float32)
    alpha = opacity * (fade_weights(resized, signed)[..., None] if fade else 1.0)
    # (1 - alpha) * view + alpha * heat, in place (the same float32 operations, fewer
    # full-size temporaries: an audit blends one overlay per image)
    out = view.astype(np.float32)
    out *= 1.0 - alpha
    heat *= alpha
    out += heat
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def encode_png(pixels: np.ndarray, fast: bool = False) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 image.

    ``fast`` writes the file itself instead of through Pillow, for the command line's
    overlays (one per image, so their cost is most of the audit's work beyond the
    model). Pillow tries all five PNG row filters on every row, which cost two thirds
    of its time even with zlib's fastest settings; here every row uses the *Up* filter
    (the difference to the row above: one numpy subtraction) and zlib run-length coding
    at level 1 (``Z_RLE``). On photos with a map over them this took 0.35-0.45 of
    Pillow's fast time, and the files came out 9-12% larger. The bytes are a standard
    PNG (signature, ``IHDR``, one ``IDAT``, ``IEND``; PNG spec, ISO/IEC 15948) that
    decodes to exactly ``pixels``.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if not fast:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()
    if pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ValueError(f"expected a non-empty (H, W, 3) image, got {pixels.shape}")
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), np.uint8)
    filtered[:, 0] = 2  # filter type Up; the first row's "row above" is zeros
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG says
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    data = compressor.compress(filtered) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


@dataclass(frozen=True)
class MapLegend:
    """How to read a map's colours, shown on its colour bar and in the PNG download.

    Attributes:
        title: what the colours measure, in plain words.
        low: what the low end of the scale means.
        high: what the high end means.
        signed: the scale is diverging, ``[-1, 1]`` with 0 in the middle.
    """

    title: str
    low: str
    high: str
    signed: bool = False


def make_legend(signed: bool = False, contrast: tuple[str, str] | None = None) -> MapLegend:
    """The legend for an unsigned map, a signed one, or a class contrast ``S_a − S_b``.

    Args:
        signed: the map keeps its sign (``[-1, 1]``).
        contrast: ``(name of class a, name of class b)`` when the map explains
            ``S_a − S_b``; implies ``signed``.
    """
    if contrast is not None:
        first, second = contrast
        return MapLegend("which class a pixel favours", f"favours {second}",
                         f"favours {first}", signed=True)
    if signed:
        return MapLegend("signed attribution", "lowers the score", "raises the score",
                         signed=True)
    return MapLegend("attribution (normalised)", "0 = least", "1 = most")


_PNG_URIS: OrderedDict[tuple, str] = OrderedDict()
_PNG_URIS_MAX = 16
_PNG_URIS_LOCK = threading.Lock()


PHOTO_JPEG_QUALITY = 90


def photo_data_uri(view: np.ndarray) -> str:
    """``data:image/jpeg;base64,...`` of an ``(H, W, 3)`` uint8 photo, encoded once.

    The photo behind a map travels to every browser that shows the figure, so it
    is a JPEG (quality 90: about a fifth of a PNG's bytes for a photo, with no
    visible difference under the map). A rerun that shows the same photo (a class
    or method switch) finds the encoding in a small bounded cache keyed by the
    pixels' SHA-1, instead of encoding it again.
    """
    pixels = np.ascontiguousarray(view, dtype=np.uint8)
    key = (pixels.shape, hashlib.sha1(pixels.data).hexdigest())
    with _PNG_URIS_LOCK:
        if key in _PNG_URIS:
            _PNG_URIS.move_to_end(key)
            return _PNG_URIS[key]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=PHOTO_JPEG_QUALITY)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    with _PNG_URIS_LOCK:
        _PNG_URIS[key] = uri
        while len(_PNG_URIS) > _PNG_URIS_MAX:
            _PNG_URIS.popitem(last=False)
    return uri


def png_data_uri(pixels: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an ``(H, W, 3)`` uint8 image (lossless: for
    images that are not photos, such as a gradient's magnitude)."""
    data = encode_png(np.ascontiguousarray(pixels, dtype=np.uint8))
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def make_image_trace(view: np.ndarray, name: str = "image",
                     lossless: bool = False) -> go.Image:
    """A ``(H, W, 3)`` uint8 image as a compact trace (no hover): a JPEG for photos, a
    PNG with ``lossless`` (sparse maps, where JPEG would blur single pixels)."""
    source = png_data_uri(view) if lossless else photo_data_uri(view)
    return go.Image(source=source, name=name, hoverinfo="skip")


def _image_trace(view: np.ndarray, extent: tuple[int, int] | None = None) -> go.Image:
    """The photo as an image trace; with ``extent=(h, w)`` it is scaled to span the
    ``w x h`` pixel grid of the model input, so axes count model-input pixels."""
    if extent is None:
        return make_image_trace(view)
    uri = photo_data_uri(view)
    dy, dx = extent[0] / view.shape[0], extent[1] / view.shape[1]
    return go.Image(source=uri, name="image", hoverinfo="skip", dx=dx, dy=dy,
                    x0=dx / 2 - 0.5, y0=dy / 2 - 0.5)


def _colorbar(legend: MapLegend | None) -> dict:
    if legend is None:
        return {"title": {"text": "saliency"}, "thickness": 14}
    values = [-1.0, 0.0, 1.0] if legend.signed else [0.0, 1.0]
    texts = ([legend.low, "0", legend.high] if legend.signed else [legend.low, legend.high])
    return {"title": {"text": escape_plotly(legend.title), "side": "right"}, "thickness": 14,
            "tickvals": values, "ticktext": [escape_plotly(t) for t in texts]}


def _heatmap_trace(view_shape: Sequence[int], saliency: np.ndarray, colormap: str,
                   opacity: float, signed: bool, show_colorbar: bool = True,
                   legend: MapLegend | None = None, raw: np.ndarray | None = None,
                   model_grid: bool = False, fade: bool = False) -> go.Heatmap:
    """The map as a heat map; over the view's pixels, or (``model_grid``) on the
    map's own pixel grid with the view scaled to it."""
    rows, cols = saliency.shape
    if model_grid:
        placement = {"x0": 0, "dx": 1, "y0": 0, "dy": 1}
        where = "pixel (%{x}, %{y}) of the model's " + f"{cols}×{rows} input"
    else:
        height, width = view_shape[:2]
        dx, dy = width / cols, height / rows
        placement = {"x0": dx / 2 - 0.5, "dx": dx, "y0": dy / 2 - 0.5, "dy": dy}
        where = "x %{x:.0f}, y %{y:.0f}"
    hover = f"{where}<br>map value %{{z:.3f}} (normalised)"
    extra = {}
    if raw is not None:
        extra["customdata"] = np.asarray(raw, dtype=np.float32)
        hover += "<br>raw attribution %{customdata:.4g}"
    return go.Heatmap(
        z=np.round(np.asarray(saliency, dtype=np.float32), 3), **placement,
        colorscale=_explicit_colorscale(colormap, signed, fade),
        zmin=-1.0 if signed else 0.0, zmax=1.0,
        opacity=opacity, zsmooth="best", name="saliency",
        showscale=show_colorbar, colorbar=_colorbar(legend),
        hovertemplate=hover + "<extra></extra>", **extra,
    )


def _image_axes(fig: go.Figure, **kwargs) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", **kwargs)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     autorange="reversed", scaleanchor="x", **kwargs)


def make_overlay_figure(view: np.ndarray, saliency: np.ndarray, colormap: str = "viridis",
                        opacity: float = DEFAULT_OPACITY, signed: bool = False,
                        title: str | None = None, legend: MapLegend | None = None,
                        raw: np.ndarray | None = None, fade: bool = False) -> go.Figure:
    """The image with the saliency map on top and a client-side opacity slider.

    The axes count the model-input pixels of the map ``(h, w)``; the image
    ``(H, W, 3)`` is scaled over that grid. Since the model's input was resized
    from exactly this view, the two line up pixel for pixel. Hovering shows the
    model-input pixel, the normalised map value and (with ``raw``) the raw
    attribution there. Moving the slider restyles the heat map's opacity in the
    browser, with no server round-trip.

    Args:
        view: ``(H, W, 3)`` uint8, the part of the photo the model saw.
        saliency: ``(h, w)`` map in ``[0, 1]`` (``[-1, 1]`` if signed).
        colormap: a key of :data:`COLORMAPS` (ignored when signed).
        opacity: the heat map's initial opacity, snapped to the slider's steps.
        signed: diverging colours around 0.
        title: optional figure title.
        legend: the colour bar's title and end labels (default: plain "saliency").
        raw: ``(h, w)`` raw attribution (after channel reduction), for hover.
        fade: weak values fade out, so the photo shows through (see
            :func:`fade_weights`); the slider still sets the overall opacity.
    """
    if legend is not None:
        signed = legend.signed
    active = int(np.argmin([abs(s - opacity) for s in OPACITY_STEPS]))
    fig = go.Figure([
        _image_trace(view, extent=saliency.shape),
        _heatmap_trace(view.shape, saliency, colormap, OPACITY_STEPS[active], signed,
                       legend=legend, raw=raw, model_grid=True, fade=fade)])
    fig.update_layout(
        title=title,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        dragmode=False,
        hoverlabel={"bgcolor": "white", "bordercolor": "#1f2933",
                    "font": {"color": "#1f2933"}},
        sliders=[{
            "active": active,
            "currentvalue": {"prefix": "Map opacity: "},
            "pad": {"t": 30},
            "steps": [{"label": f"{s:.1f}", "method": "restyle",
                       "args": [{"opacity": s}, [1]]} for s in OPACITY_STEPS],
        }],
    )
    _image_axes(fig)
    fig.update_xaxes(range=[-0.5, saliency.shape[1] - 0.5], constrain="domain")
    fig.update_yaxes(range=[saliency.shape[0] - 0.5, -0.5], autorange=False,
                     constrain="domain")
    return fig


def make_side_by_side_figure(view: np.ndarray, saliency: np.ndarray, colormap: str = "viridis",
                             signed: bool = False, legend: MapLegend | None = None,
                             raw: np.ndarray | None = None) -> go.Figure:
    """Image | map, side by side with linked zoom, like the blog's figure.

    Args:
        view: ``(H, W, 3)`` uint8 image.
        saliency: ``(h, w)`` map; ``legend`` and ``raw`` as in :func:`make_overlay_figure`.
    """
    if legend is not None:
        signed = legend.signed
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Image", "Saliency map"),
                        horizontal_spacing=0.04, shared_xaxes=True, shared_yaxes=True)
    fig.add_trace(_image_trace(view), row=1, col=1)
    fig.add_trace(_heatmap_trace(view.shape, saliency, colormap, 1.0, signed, legend=legend,
                                 raw=raw), row=1, col=2)
    fig.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}, dragmode=False)
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
        x=[100 * p for p in probabilities], y=[escape_plotly(n) for n in names],
        orientation="h",
        marker_color=colors, text=[f"{100 * p:.1f}%" for p in probabilities],
        textposition="auto", hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    fig.update_layout(height=60 + 36 * len(names), margin={"l": 10, "r": 10, "t": 10, "b": 30},
                      xaxis={"title": "probability (%)", "range": [0, 100]},
                      yaxis={"autorange": "reversed"})
    return fig


COMPARISON_LAYOUT_WIDTH = 820
"""Width in CSS pixels that a row of Compare cells is sized to fill: the page's main
column beside the sidebar at 1280 px, the narrowest desktop (a classroom projector)."""


def choose_cell_height(columns: int, gap: int = 16) -> int:
    """Height in CSS pixels of one Compare cell when a row holds ``columns`` cells.

    A cell's width is not known in Python (the browser lays the row out), so the
    height is the width a cell gets at :data:`COMPARISON_LAYOUT_WIDTH`, between 200
    and 300 px. On a phone the cells stack, one per line, and this is the size of
    the map there too: never smaller than 200 px.
    """
    share = (COMPARISON_LAYOUT_WIDTH - gap * (max(columns, 1) - 1)) / max(columns, 1)
    return int(min(300, max(200, share)))


def make_comparison_cell(view: np.ndarray, saliency: np.ndarray, colormap: str = "viridis",
                         opacity: float = DEFAULT_OPACITY, signed: bool = False,
                         height: int = 260,
                         fade: bool = False) -> go.Figure:
    """One cell of the Compare grid: a map over the photo, with no labels of its own.

    A cell is a small figure, not a panel of one big figure, so that the page can lay
    cells out on any width (a row per method on a desktop, one cell per line on a
    phone) and put each cell's class, time and note right above its own map. The
    image keeps its aspect ratio and sits at the top left of the figure, so a cell
    wider or taller than the map leaves room at the right or below, never between a
    label and its map.

    Args:
        view: ``(H, W, 3)`` uint8 image shown under the map.
        saliency: ``(h, w)`` map, already normalised with the other cells of its row
            (``[0, 1]``, or ``[-1, 1]`` if signed); resized over the view.
        colormap: a key of :data:`COLORMAPS` (ignored when signed).
        opacity: the map's weight over the photo.
        signed: diverging colours around 0.
        height: the figure's height in pixels (see :func:`choose_cell_height`).
        fade: weak values fade out over the photo.

    Returns:
        A figure with an image trace and a heat map (no colour bar: the page shows
        one for the whole grid, :func:`make_colorbar_figure`).
    """
    fig = go.Figure([_image_trace(view),
                     _heatmap_trace(view.shape, saliency, colormap, opacity, signed,
                                    show_colorbar=False, fade=fade)])
    _image_axes(fig, constrain="domain")
    fig.update_xaxes(constraintoward="left")  # under its label, which is left-aligned
    fig.update_yaxes(constraintoward="top")
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 0, "b": 0},
                      dragmode=False,
                      hoverlabel={"bgcolor": "white", "font": {"color": "#1f2933"}})
    return fig


def make_colorbar_figure(colormap: str = "viridis", legend: MapLegend | None = None,
                         height: int = 64) -> go.Figure:
    """A horizontal colour bar on its own, for a grid of maps that share its scale.

    Args:
        colormap: a key of :data:`COLORMAPS` (ignored when ``legend.signed``).
        legend: the bar's title and end labels (default: an unsigned map's).
        height: the figure's height in pixels.
    """
    legend = legend or make_legend()
    low = -1.0 if legend.signed else 0.0
    values = np.linspace(low, 1.0, 256, dtype=np.float32)
    fig = go.Figure(go.Heatmap(
        z=values[None, :], x=values, colorscale=_explicit_colorscale(colormap, legend.signed),
        zmin=low, zmax=1.0, showscale=False, hoverinfo="skip"))
    ends = [(low, "left", legend.low), (1.0, "right", legend.high)]
    if legend.signed:
        ends.insert(1, (0.0, "center", "0"))
    for x, anchor, text in ends:  # under the bar, inside its ends: never cut off
        fig.add_annotation(x=x, y=0, xref="x", yref="paper", xanchor=anchor, yanchor="top",
                           text=escape_plotly(text), showarrow=False)
    fig.update_xaxes(visible=False, range=[low, 1.0], fixedrange=True)
    fig.update_yaxes(visible=False, fixedrange=True)
    fig.update_layout(height=height, margin={"l": 4, "r": 4, "t": 22, "b": 22},
                      dragmode=False, font={"size": 13},
                      title={"text": escape_plotly(legend.title), "x": 0.5, "xanchor": "center",
                             "y": 1.0, "yanchor": "top", "yref": "container",
                             "font": {"size": 13}})
    return fig


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text`` shortened with an ellipsis so it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _wrap_text(draw: ImageDraw.ImageDraw, text: str, font, width: float,
               max_lines: int = 4) -> list[str]:
    """``text`` broken into lines of at most ``width`` pixels (the last one shortened)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        attempt = f"{current} {word}".strip()
        if current and draw.textlength(attempt, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = attempt
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [" ".join(lines[max_lines - 1:])]
    return [_fit_text(draw, line, font, width) for line in lines]


def render_overlay_png(view: np.ndarray, saliency: np.ndarray, colormap: str = "viridis",
                       opacity: float = DEFAULT_OPACITY, legend: MapLegend | None = None,
                       caption: str = "", fade: bool = False) -> bytes:
    """The overlay as a self-describing PNG: image, colour bar and a caption line.

    Args:
        view: ``(H, W, 3)`` uint8 image.
        saliency: ``(h, w)`` map in ``[0, 1]`` (``[-1, 1]`` if ``legend.signed``).
        colormap: a key of :data:`COLORMAPS` (ignored for signed maps).
        opacity: the map's weight in the blend, 0 to 1.
        legend: the colour bar's title and end labels.
        caption: the caption under the image (e.g. model, class, method, file),
            wrapped onto as many lines as it needs (at most four).
        fade: weak values fade out, as in the overlay figure.

    Returns:
        PNG bytes of a ``(H + caption, W + colour bar)`` RGB image; the image
        part equals :func:`blend_overlay`.
    """
    legend = legend or make_legend()
    overlay = blend_overlay(view, saliency, colormap, opacity, legend.signed, fade)
    height, width = overlay.shape[:2]
    size = max(11, min(16, width // 30))
    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [legend.high, legend.low] + (["0"] if legend.signed else [])
    label_width = max(probe.textlength(t, font=font) for t in labels)
    bar = max(12, size)
    side = int(bar + 12 + min(label_width, width * 0.6))
    line = size + 6
    lines = _wrap_text(probe, caption, font, width + side - 8)
    canvas = Image.new("RGB", (width + side, height + 8 + line * max(1, len(lines))), "white")
    canvas.paste(Image.fromarray(overlay), (0, 0))
    lut = colormap_lut(colormap, legend.signed)[::-1]  # top of the bar = high end
    strip = np.repeat(lut[np.linspace(0, len(lut) - 1, height).astype(int)][:, None, :], bar,
                      axis=1)
    canvas.paste(Image.fromarray(strip), (width + 4, 0))
    draw = ImageDraw.Draw(canvas)
    text_x, room = width + bar + 8, side - bar - 10
    draw.text((text_x, 0), _fit_text(draw, legend.high, font, room), fill="black", font=font)
    draw.text((text_x, height - size - 2), _fit_text(draw, legend.low, font, room),
              fill="black", font=font)
    if legend.signed:
        draw.text((text_x, height // 2 - size // 2), "0", fill="black", font=font)
    for row, text in enumerate(lines):
        draw.text((4, height + 4 + row * line), text, fill="black", font=font)
    return encode_png(np.asarray(canvas))


def make_crop_preview(pixels: np.ndarray, box: tuple[int, int, int, int],
                      dim: float = 0.3) -> np.ndarray:
    """The whole photo with what the model does not see dimmed and its region framed.

    Args:
        pixels: ``(H, W, 3)`` uint8 photo.
        box: ``(left, top, right, bottom)`` of the region the model sees.
        dim: brightness kept outside the region, 0 (black) to 1 (unchanged).

    Returns:
        ``(H, W, 3)`` uint8.
    """
    left, top, right, bottom = box
    out = pixels.astype(np.float32) * dim
    out[top:bottom, left:right] = pixels[top:bottom, left:right]
    preview = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if (left, top, right, bottom) != (0, 0, pixels.shape[1], pixels.shape[0]):
        edge = max(1, round(min(pixels.shape[:2]) / 150))
        frame = np.array([228, 87, 46], dtype=np.uint8)
        preview[top:top + edge, left:right] = frame
        preview[bottom - edge:bottom, left:right] = frame
        preview[top:bottom, left:left + edge] = frame
        preview[top:bottom, right - edge:right] = frame
    return preview
