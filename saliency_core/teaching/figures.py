"""Pure Plotly figures for the "How it works" page: the pipeline, the Taylor test and why a
sharp map can still be wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saliency_core.imaging import resize_map
from saliency_core.plotting import (
    COLORMAPS,
    SIGNED_COLORSCALE,
    blend_overlay,
    escape_plotly,
    make_colorscale,
    make_image_trace,
)
from saliency_core.postprocess import normalize_map
from saliency_core.teaching.steps import GradientSteps
from saliency_core.teaching.taylor import SELECTIONS, TaylorTest

if TYPE_CHECKING:  # the lesson's module pulls in the model copy; figures need only its data
    from saliency_core.teaching.sharp_maps import SharpMapLesson

PIPELINE_TITLES = (
    "1 · input",
    "2 · ∂S/∂I red",
    "2 · ∂S/∂I green",
    "2 · ∂S/∂I blue",
    "3 · |∂S/∂I|",
    "4 · max over RGB",
    "5 · normalised",
    "6 · overlay",
)
"""Panel titles in order: the first four are the gradient figure's, the last four the
map figure's (:func:`make_pipeline_figures`)."""

SELECTION_COLORS = {"most": "#c0392b", "random": "#6b7280", "least": "#2563eb"}
"""Line colours of the pixel selections (also used to mark the pixels)."""
SELECTION_COLOR_NAMES = {"most": "red", "random": "grey", "least": "blue"}

_GRADIENT_AXIS = "coloraxis"
_REDUCED_AXIS = "coloraxis2"
_NORMALISED_AXIS = "coloraxis3"


def _robust_max(values: np.ndarray, percentile: float = 99.5) -> float:
    top = float(np.percentile(np.abs(values), percentile))
    return top if top > 0 else float(np.abs(values).max()) or 1.0


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _pipeline_panels(fig: go.Figure, height: int, width: int) -> None:
    """Image axes for the four panels of a 2 x 2 pipeline figure: no ticks, the
    model input's pixel grid, aspect kept, and zooming one panel zooms the others."""
    for axis in range(1, 5):
        suffix = "" if axis == 1 else str(axis)
        fig.layout[f"xaxis{suffix}"].update(
            matches="x" if axis > 1 else None, range=[-0.5, width - 0.5], constrain="domain",
            showticklabels=False, showgrid=False, zeroline=False, ticks="")
        fig.layout[f"yaxis{suffix}"].update(
            matches="y" if axis > 1 else None, range=[height - 0.5, -0.5], autorange=False,
            scaleanchor=f"x{suffix}", constrain="domain",
            showticklabels=False, showgrid=False, zeroline=False, ticks="")


def _horizontal_colorbar(title: str) -> dict:
    """A colour bar under the panels: beside them it took a third of a phone's width."""
    return {"title": {"text": title, "side": "top"}, "orientation": "h", "x": 0.5,
            "xanchor": "center", "len": 0.9, "y": -0.02, "yanchor": "top", "thickness": 12}


def make_pipeline_figures(steps: GradientSteps, colormap: str = "viridis",
                          opacity: float = 0.6) -> tuple[go.Figure, go.Figure]:
    """Every step of the vanilla map as two figures of 2 x 2 panels.

    The first shows the gradient: the fitted input, then the signed gradient
    ``dS_c/dI`` of each colour channel on one diverging scale centred on 0. The
    second turns it into the map: ``|w|`` shown as an RGB image, ``max_c |w_c|``,
    the normalised map, and the overlay. Two figures of two columns, not one of
    four, so a page can put them side by side on a wide screen (four panels a
    row) and one under the other on a phone (two a row) without knowing the
    width. Zooming one panel zooms the other three of its figure. Hovering a
    gradient panel shows that channel's value; hovering "max over RGB" shows all
    three channels and the reduced value. Colour bars sit under the panels.

    Args:
        steps: from :func:`~saliency_core.teaching.steps.compute_steps`; every
            array is ``(H, W)`` or ``(H, W, 3)`` at the model's input size.
        colormap: the sequential colour map of the reduced and normalised maps.
        opacity: the map's weight in the overlay panel.

    Returns:
        ``(gradient figure, map figure)``; each heat map's ``z`` is ``(H, W)``.
    """
    height, width = steps.reduced.shape
    where = "pixel x %{x}, y %{y}"
    layout = {"height": 500, "margin": {"l": 4, "r": 4, "t": 30, "b": 64},
              "font": {"size": 14},
              "hoverlabel": {"bgcolor": "white", "font": {"color": "#1f2933", "size": 14}}}

    def grid(titles: tuple[str, ...]) -> go.Figure:
        return make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.03,
                             vertical_spacing=0.09)

    gradient = grid(PIPELINE_TITLES[:4])
    gradient.add_trace(make_image_trace(_to_uint8(steps.model_input), "input"), row=1, col=1)
    for channel, name in enumerate(("red", "green", "blue")):
        gradient.add_trace(go.Heatmap(
            z=steps.gradient[..., channel], coloraxis=_GRADIENT_AXIS, name=f"dS/d{name}",
            hovertemplate=f"{where}<br>∂S/∂I {name}: %{{z:.3g}}<extra></extra>"),
            row=(channel + 1) // 2 + 1, col=(channel + 1) % 2 + 1)
    limit = _robust_max(steps.gradient)
    gradient.update_layout(**layout, **{_GRADIENT_AXIS: {
        "colorscale": SIGNED_COLORSCALE, "cmin": -limit, "cmax": limit, "cmid": 0.0,
        "colorbar": {**_horizontal_colorbar("∂S/∂I (red raises the score, blue lowers it)"),
                     "exponentformat": "e", "nticks": 5}}})
    _pipeline_panels(gradient, height, width)

    mapped = grid(PIPELINE_TITLES[4:])
    magnitude = steps.magnitude / _robust_max(steps.magnitude) * 255.0
    mapped.add_trace(make_image_trace(_to_uint8(magnitude), "|dS/dI|", lossless=True),
                     row=1, col=1)
    mapped.add_trace(go.Heatmap(
        z=steps.reduced, customdata=steps.gradient, coloraxis=_REDUCED_AXIS,
        name="max over channels",
        hovertemplate=(f"{where}<br>∂S/∂I red %{{customdata[0]:.3g}}<br>"
                       "∂S/∂I green %{customdata[1]:.3g}<br>"
                       "∂S/∂I blue %{customdata[2]:.3g}<br>"
                       "max |∂S/∂I| %{z:.3g}<extra></extra>")), row=1, col=2)
    mapped.add_trace(go.Heatmap(
        z=steps.normalised, coloraxis=_NORMALISED_AXIS, name="normalised",
        hovertemplate=f"{where}<br>normalised %{{z:.3f}}<extra></extra>"), row=2, col=1)
    overlay = blend_overlay(_to_uint8(steps.model_input), steps.normalised, colormap,
                            opacity, fade=True)
    mapped.add_trace(make_image_trace(overlay, "overlay"), row=2, col=2)
    mapped.update_layout(**layout, **{
        _REDUCED_AXIS: {"colorscale": make_colorscale(colormap), "cmin": 0.0,
                        "cmax": _robust_max(steps.reduced), "showscale": False},
        _NORMALISED_AXIS: {"colorscale": make_colorscale(colormap), "cmin": 0.0, "cmax": 1.0,
                           "colorbar": {**_horizontal_colorbar("normalised map"),
                                        "nticks": 6}}})
    _pipeline_panels(mapped, height, width)
    return gradient, mapped


def mark_pixels(model_input: np.ndarray, pixels: dict[str, np.ndarray],
                radius: int = 1) -> np.ndarray:
    """The image, dimmed, with each selection's pixels painted in its colour.

    Args:
        model_input: ``(H, W, 3)`` 0-255.
        pixels: selection key -> flat indices into ``(H, W)``.
        radius: each pixel is drawn as a ``(2 radius + 1)`` square, so single
            pixels can be seen.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    out = np.asarray(model_input, dtype=np.float32) * 0.35 + 255 * 0.65 * 0.6
    height, width = out.shape[:2]
    for key in ("random", "least", "most"):  # the most salient are painted last, on top
        if key not in pixels:
            continue
        colour = [int(SELECTION_COLORS[key][i:i + 2], 16) for i in (1, 3, 5)]
        rows, cols = np.unravel_index(np.asarray(pixels[key]), (height, width))
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                out[np.clip(rows + dy, 0, height - 1), np.clip(cols + dx, 0, width - 1)] = colour
    return _to_uint8(out)


def make_taylor_figure(test: TaylorTest, unit: str = "logit") -> go.Figure:
    """The Taylor test as two panels over the nudge size ``eps`` (log axis).

    Left: the predicted change ``w . dI`` (dashed) and the actual change (solid),
    one colour per pixel selection; the y range holds every curve, the error bars
    and a prediction that runs away from the actual change included. Right:
    actual / predicted, where 1 means the straight line is exact and a band marks
    the test's tolerance; points whose predicted change is below the test's noise
    floor are left out. The
    random selection is the mean over draws (its spread as error bars). Where the
    most salient pixels' prediction misses by more than the tolerance, both panels
    are shaded.

    Args:
        test: from :func:`~saliency_core.teaching.taylor.run_taylor_test`.
        unit: what the score is, for the axis title.

    Returns:
        The figure.
    """
    fig = make_subplots(rows=1, cols=2, column_widths=[0.56, 0.44], horizontal_spacing=0.09,
                        subplot_titles=("Score change", "Actual ÷ predicted"))
    x = test.epsilons
    for key, label in SELECTIONS.items():
        curve = test.curves[key]
        colour = SELECTION_COLORS[key]
        name = f"{test.k} {label} pixels"
        error = ({"type": "data", "array": curve.spread, "visible": True}
                 if key == "random" else None)
        fig.add_trace(go.Scatter(
            x=x, y=curve.actual, mode="lines+markers", name=f"{name}: actual",
            line={"color": colour, "width": 3}, marker={"size": 8}, error_y=error,
            legendgroup=key,
            hovertemplate="ε %{x:.3g}<br>actual change %{y:.4g}<extra>" + label + "</extra>"),
            row=1, col=1)
        fig.add_trace(go.Scatter(
            x=x, y=curve.predicted, mode="lines", name=f"{name}: predicted w·ΔI",
            line={"color": colour, "width": 2, "dash": "dash"}, legendgroup=key,
            hovertemplate="ε %{x:.3g}<br>predicted w·ΔI %{y:.4g}<extra>" + label
                          + "</extra>"), row=1, col=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # rounding noise left out
            ratio = np.where(test.measurable(key), curve.actual / curve.predicted, np.nan)
        fig.add_trace(go.Scatter(
            x=x, y=ratio, mode="lines+markers", name=f"{name}: actual ÷ predicted",
            line={"color": colour, "width": 3}, marker={"size": 8}, legendgroup=key,
            showlegend=False,
            hovertemplate="ε %{x:.3g}<br>actual ÷ predicted %{y:.3f}<extra>" + label
                          + "</extra>"), row=1, col=2)
    fig.add_hrect(y0=1 - test.tolerance, y1=1 + test.tolerance, fillcolor="#16a34a",
                  opacity=0.12, line_width=0, layer="below", row=1, col=2)
    breaks = test.breaks_at("most")
    if breaks is not None:
        for col in (1, 2):
            fig.add_vrect(x0=breaks, x1=float(x[-1]), fillcolor="#f59e0b", opacity=0.14,
                          line_width=0, layer="below", row=1, col=col)
    drawn = np.concatenate([values for c in test.curves.values()
                            for values in (c.actual + c.spread, c.actual - c.spread,
                                           c.predicted)])
    top, bottom = float(np.nanmax(drawn)), float(np.nanmin(drawn))
    pad = 0.1 * max(top - min(bottom, 0.0), 1e-9)
    fig.update_xaxes(type="log", title={"text": "ε (grey levels)"})
    fig.update_yaxes(title={"text": f"score change ({unit})"},
                     range=[min(bottom, 0.0) - pad, top + pad], zeroline=True, row=1, col=1)
    fig.update_yaxes(range=[-0.25, 1.6], zeroline=True, row=1, col=2)
    fig.update_layout(
        height=470, margin={"l": 10, "r": 10, "t": 40, "b": 10}, font={"size": 15},
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
        hovermode="closest")
    return fig


def make_sharp_map_figure(lesson: SharpMapLesson, method_labels: Sequence[str],
                          colormap: str = "viridis", size: int = 112) -> go.Figure:
    """Each method's map for the trained model beside its map once the top block is random.

    One row per method; the right-hand title gives the Spearman rank correlation of
    the two maps over the draws (mean ± standard deviation). Maps are normalised as
    on Explore (clipped at the 99.5th percentile) and shown at most ``size`` px.

    Args:
        lesson: from :func:`~saliency_core.teaching.sharp_maps.run_sharp_map_lesson`.
        method_labels: display names of ``lesson.methods``.
        colormap: a key of :data:`saliency_core.plotting.COLORMAPS`.
        size: the longest side of each panel, in pixels.
    """
    rows = len(lesson.methods)
    block = escape_plotly(lesson.block)
    titles = []
    for label, values in zip(method_labels, lesson.spearman, strict=True):
        spread = f" ± {values.std(ddof=1):.2f}" if len(values) > 1 else ""
        titles += [f"{escape_plotly(label)}<br>trained model",
                   f"{block} random<br>Spearman {values.mean():.2f}{spread}"]
    fig = make_subplots(rows=rows, cols=2, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.12)
    for row in range(rows):
        for col, saliency in enumerate((lesson.trained[row], lesson.randomised[row]), start=1):
            shown = normalize_map(saliency, clip_percentile=99.5)
            height, width = shown.shape
            scale = min(1.0, size / max(height, width))
            if scale < 1.0:
                shown = resize_map(shown, (max(1, round(height * scale)),
                                           max(1, round(width * scale))))
            fig.add_trace(go.Heatmap(z=np.clip(shown, 0, 1), zmin=0, zmax=1, showscale=False,
                                     colorscale=COLORMAPS.get(colormap, "Viridis"),
                                     hovertemplate="normalised |map| %{z:.2f}<extra></extra>"),
                          row=row + 1, col=col)
    for axis in range(1, 2 * rows + 1):
        suffix = "" if axis == 1 else str(axis)
        fig.layout[f"xaxis{suffix}"].update(showticklabels=False, showgrid=False,
                                            zeroline=False, ticks="")
        fig.layout[f"yaxis{suffix}"].update(autorange="reversed", scaleanchor=f"x{suffix}",
                                            showticklabels=False, showgrid=False,
                                            zeroline=False, ticks="")
    fig.update_annotations(font_size=12)
    fig.update_layout(height=270 * rows + 50, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      dragmode=False)
    return fig
