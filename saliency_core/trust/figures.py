"""Pure figure functions for the trust checks: data in, Plotly figure out.

Every label that may hold user text (class names of an uploaded model, block
names of an uploaded model's layers) goes through
:func:`saliency_core.plotting.escape_plotly`. Maps are shown downsampled to at
most :data:`STRIP_PIXELS` pixels on a side, so a figure stays light in the browser.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saliency_core.imaging import resize_map
from saliency_core.plotting import COLORMAPS, escape_plotly
from saliency_core.trust.controls import EdgeResult, RandomClassResult
from saliency_core.trust.faithfulness import FaithfulnessResult, MethodScore, RandomCurves
from saliency_core.trust.randomization import RandomizationResult
from saliency_core.trust.similarity import normalize_for_ssim
from saliency_core.trust.verdicts import SIMILAR_SPEARMAN, UNCHANGED_SPEARMAN

STRIP_PIXELS = 64
STRIP_COLUMNS = 5
SPEARMAN_COLOUR = "#1f77b4"
BAND_COLOUR = "rgba(31, 119, 180, 0.2)"
SIGNED_COLOUR = "#9467bd"
SSIM_COLOUR = "#ff7f0e"
EDGE_COLOUR = "#2ca02c"
FAIL_COLOUR = "#d62728"
RANDOM_COLOUR = "#7f7f7f"
RANDOM_BAND_COLOUR = "rgba(127, 127, 127, 0.25)"
_BLANK_AXIS = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": ""}


def shrink_map(saliency: np.ndarray, size: int = STRIP_PIXELS) -> np.ndarray:
    """Normalise an ``(H, W)`` magnitude map to ``[0, 1]`` and shrink it to ``size`` px at most."""
    m = normalize_for_ssim(saliency)
    height, width = m.shape
    scale = min(1.0, size / max(height, width))
    if scale < 1.0:
        m = resize_map(m, (max(1, round(height * scale)), max(1, round(width * scale))))
    return np.clip(m, 0.0, 1.0)


def _map_trace(saliency: np.ndarray, colormap: str, show_scale: bool = False) -> go.Heatmap:
    return go.Heatmap(z=shrink_map(saliency), zmin=0.0, zmax=1.0,
                      colorscale=COLORMAPS.get(colormap, "Viridis"), showscale=show_scale,
                      hovertemplate="normalised |map| %{z:.2f}<extra></extra>",
                      colorbar={"title": {"text": "|map|, normalised"}, "thickness": 12,
                                "len": 0.4, "y": 0.15})


def _square_axes(fig: go.Figure, first: int, last: int) -> None:
    for i in range(first, last + 1):
        suffix = "" if i == 1 else str(i)
        fig.update_layout({f"xaxis{suffix}": _BLANK_AXIS,
                           f"yaxis{suffix}": {**_BLANK_AXIS, "autorange": "reversed",
                                              "scaleanchor": f"x{suffix}",
                                              "constrain": "domain"}})


def _cell(row: int | None, col: int | None) -> dict:
    return {} if row is None else {"row": row, "col": col}


def _band(fig: go.Figure, x, low, high, colour: str, name: str, row: int | None,
          col: int | None,
          group: str, showlegend: bool = True) -> None:
    """A shaded band between ``low`` and ``high`` (a closed polygon: no line, one legend entry)."""
    x = list(x)
    fig.add_trace(go.Scatter(
        x=x + x[::-1], y=list(high) + list(low)[::-1], fill="toself", fillcolor=colour,
        line={"width": 0}, mode="lines", name=name, legendgroup=group, hoverinfo="skip",
        showlegend=showlegend), **_cell(row, col))


def _level(fig: go.Figure, x, value: float, colour: str, name: str, dash: str,
           row: int | None, col: int | None) -> None:
    """A horizontal reference line as a trace, so it is named in the legend instead of by
    an annotation that could sit on top of the data."""
    x = list(x)
    fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[value, value], mode="lines", name=name,
                             line={"color": colour, "dash": dash, "width": 1.5},
                             hovertemplate=f"{escape_plotly(name)}<extra></extra>"),
                  **_cell(row, col))


def make_randomization_figure(result: RandomizationResult) -> go.Figure:
    """Similarity to the original map against the randomisation step, over ``R`` draws.

    Args:
        result: a cascading or independent check.

    Returns:
        One panel: the mean Spearman of |map| over the draws with a band from the
        lowest to the highest draw, the mean Spearman of the signed maps and the mean
        SSIM; the pass line, the "almost unchanged" line (cascading) and the Sobel
        baseline (what an edge map, made without any model, scores against the
        original). Every line is named in the legend under the plot, none by text
        on top of it. The maps are :func:`make_randomization_strip`.
    """
    steps = len(result.blocks)
    labels = [escape_plotly(label) for label in result.step_labels()]
    fig = go.Figure()
    x = list(range(1, steps + 1))
    draws = result.draws
    low, high = result.spearman.min(axis=0), result.spearman.max(axis=0)
    mean = result.spearman.mean(axis=0)
    _band(fig, x, low, high, BAND_COLOUR, f"Spearman |map|: lowest to highest of {draws} "
          "draws", None, None, "spearman")
    fig.add_trace(go.Scatter(
        x=x, y=mean, mode="lines+markers", name="Spearman |map|: mean",
        line={"color": SPEARMAN_COLOUR, "width": 2.5}, legendgroup="spearman",
        customdata=np.stack([labels, low, high], axis=-1),
        hovertemplate="%{customdata[0]}<br>Spearman of |map| %{y:.2f} "
                      "(draws %{customdata[1]:.2f} to %{customdata[2]:.2f})<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=x, y=result.spearman_signed.mean(axis=0), mode="lines+markers",
        name="Spearman of the signed map", marker={"symbol": "diamond"},
        line={"color": SIGNED_COLOUR, "dash": "dash"}, customdata=labels,
        hovertemplate="%{customdata}<br>Spearman of the signed map %{y:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=x, y=result.ssim.mean(axis=0), mode="lines+markers", name="SSIM",
        line={"color": SSIM_COLOUR, "dash": "dot"}, customdata=labels,
        hovertemplate="%{customdata}<br>SSIM %{y:.2f}<extra></extra>"))
    edge_x = [0.6, steps + 0.4]
    _level(fig, edge_x, result.sobel_spearman, EDGE_COLOUR,
           f"Sobel edges, no model ({result.sobel_spearman:.2f})", "longdash", None, None)
    _level(fig, edge_x, SIMILAR_SPEARMAN, RANDOM_COLOUR,
           f"{SIMILAR_SPEARMAN}: below, the map changed", "dash", None, None)
    if result.mode == "cascading":
        _level(fig, edge_x, UNCHANGED_SPEARMAN, FAIL_COLOUR,
               f"{UNCHANGED_SPEARMAN}: almost unchanged", "dot", None, None)
    fig.update_xaxes(tickvals=x, ticktext=labels, range=edge_x, tickangle=-40,
                     automargin=True)
    floor = min(-0.2, float(np.min(result.spearman)), float(np.min(result.spearman_signed)),
                float(np.min(result.ssim)), result.sobel_spearman)
    fig.update_yaxes(range=[floor - 0.05, 1.05], title_text="similarity to the original")
    fig.update_layout(height=460, margin={"l": 60, "r": 10, "t": 10, "b": 10},
                      legend={"orientation": "h", "y": -0.28, "x": 0, "yanchor": "top",
                              "font": {"size": 11}},
                      dragmode=False)
    return fig


def make_randomization_strip(result: RandomizationResult, colormap: str = "viridis",
                             columns: int = STRIP_COLUMNS) -> go.Figure:
    """The original map, then the first draw's map after each randomisation step.

    Args:
        result: a cascading or independent check.
        colormap: a key of :data:`saliency_core.plotting.COLORMAPS`.
        columns: maps per row.
    """
    steps = len(result.blocks)
    cols = min(columns, steps + 1)
    rows = -(-(steps + 1) // cols)
    titles = ["original"] + [f"step {i + 1}" for i in range(steps)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, vertical_spacing=0.06,
                        horizontal_spacing=0.01)
    for i, saliency in enumerate(result.maps):
        fig.add_trace(_map_trace(saliency, colormap, show_scale=False),
                      row=1 + i // cols, col=1 + i % cols)
    _square_axes(fig, 1, cols * rows)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=30 + 160 * rows, margin={"l": 10, "r": 10, "t": 24, "b": 4},
                      dragmode=False)
    return fig


def make_random_class_figure(chosen_map: np.ndarray, chosen_label: str,
                             result: RandomClassResult, class_labels: Sequence[str],
                             colormap: str = "viridis") -> go.Figure:
    """The chosen class's map beside the maps of random other classes.

    Args:
        chosen_map: ``(H, W)`` |map| of the chosen class.
        chosen_label: its name.
        result: the random-class check.
        class_labels: names of ``result.classes``, in order.
        colormap: a key of :data:`saliency_core.plotting.COLORMAPS`.

    Returns:
        A grid of three maps per row (narrow enough for a phone), each titled with its
        class and, on two short lines, the Spearman of |map| and of the signed map.
    """
    count = len(result.classes) + 1
    cols = min(3, count)
    rows = -(-count // cols)
    titles = [f"{escape_plotly(chosen_label)}<br><sup>chosen class</sup>"] + [
        f"{escape_plotly(label)}<br><sup>Spearman {s.spearman:.2f}<br>signed {signed:.2f}</sup>"
        for label, s, signed in zip(class_labels, result.similarities, result.spearman_signed,
                                    strict=True)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.16)
    for i, saliency in enumerate([chosen_map, *result.maps]):
        fig.add_trace(_map_trace(saliency, colormap), row=1 + i // cols, col=1 + i % cols)
    _square_axes(fig, 1, rows * cols)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=40 + 250 * rows, margin={"l": 10, "r": 10, "t": 60, "b": 10},
                      dragmode=False)
    return fig


def make_edge_figure(chosen_map: np.ndarray, result: EdgeResult,
                     colormap: str = "viridis") -> go.Figure:
    """The map beside the Sobel edge map of the image, with their similarity."""
    s = result.similarity
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.03, subplot_titles=[
        "the map (|map|)",
        f"Sobel edges of the image<br><sup>Spearman {s.spearman:.2f} · SSIM {s.ssim:.2f}</sup>"])
    fig.add_trace(_map_trace(chosen_map, colormap), row=1, col=1)
    fig.add_trace(go.Heatmap(z=shrink_map(result.edges, 2 * STRIP_PIXELS), zmin=0, zmax=1,
                             colorscale="Greys", reversescale=True, showscale=False,
                             hovertemplate="edge strength %{z:.2f}<extra></extra>"),
                  row=1, col=2)
    _square_axes(fig, 1, 2)
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 60, "b": 10}, dragmode=False)
    return fig


def make_curves_figure(result: FaithfulnessResult, step: int | None = None) -> go.Figure:
    """Deletion and insertion curves of the map's order beside many random orders.

    Args:
        result: the faithfulness check.
        step: if given, a vertical line marks this step (the slider's).

    Returns:
        Two panels, one above the other (readable on a phone): class probability (or
        logit) against the fraction of pixels changed: the map's curve, the random
        orders' mean and a band from their lowest to their highest value at each
        step. Each panel's title gives the AUCs and how many random orders the map
        beats; the legend names the three kinds of line once.
    """
    pairs = ((result.deletion, result.random_deletion, "Deletion (lower AUC is better)"),
             (result.insertion, result.random_insertion, "Insertion (higher AUC is better)"))
    titles = [f"{title}<br><sup>map's order {curve.auc:.3f} · random orders {random.auc:.3f} "
              f"± {random.auc_sd:.3f} · beats {random.beaten_by(curve.auc)} of "
              f"{random.count}</sup>" for curve, random, title in pairs]
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.2, subplot_titles=titles)
    unit = "p" if result.measure == "probability" else "logit"
    for row, (curve, random, _) in enumerate(pairs, start=1):
        _band(fig, random.fractions, random.low, random.high, RANDOM_BAND_COLOUR,
              f"{random.count} random orders, lowest to highest", row, 1, "random",
              showlegend=row == 1)
        fig.add_trace(go.Scatter(
            x=random.fractions, y=random.probabilities, mode="lines",
            name="random orders' mean", showlegend=row == 1,
            line={"color": RANDOM_COLOUR, "dash": "dash"}, legendgroup="random-mean",
            hovertemplate=f"%{{x:.0%}} changed: mean {unit} = %{{y:.3f}}<extra></extra>"),
            row=row, col=1)
        fig.add_trace(go.Scatter(
            x=curve.fractions, y=curve.probabilities, mode="lines",
            name="the map's order", showlegend=row == 1, legendgroup="map",
            line={"color": SPEARMAN_COLOUR, "width": 2.5},
            hovertemplate=f"%{{x:.0%}} changed: {unit} = %{{y:.3f}}<extra></extra>"),
            row=row, col=1)
        if step is not None:
            fig.add_vline(x=step / result.steps, line={"color": FAIL_COLOUR, "width": 1},
                          row=row, col=1)
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    fig.update_xaxes(title_text="fraction of pixels changed", row=2, col=1)
    fig.update_yaxes(title_text="class probability" if result.measure == "probability"
                     else "class score (logit)", rangemode="tozero")
    fig.update_annotations(font_size=13)
    fig.update_layout(height=600, margin={"l": 60, "r": 10, "t": 50, "b": 10},
                      legend={"orientation": "h", "y": -0.12, "x": 0, "yanchor": "top"},
                      dragmode=False)
    return fig


def make_method_auc_figure(scores: Sequence[MethodScore], method_labels: Sequence[str],
                           random_deletion: RandomCurves, random_insertion: RandomCurves
                           ) -> go.Figure:
    """Every method's deletion and insertion AUC on this image, beside the random orders.

    Horizontal bars, one row of methods per panel (deletion above, insertion below),
    so long method names sit on the axis and never on a bar. The random orders are a
    shaded band (lowest to highest AUC) with their mean as a dashed line, both named in
    the legend; no text is written inside the plotting area.

    Args:
        scores: one per method.
        method_labels: display names, in the same order.
        random_deletion, random_insertion: the random orders' curves.
    """
    labels = [escape_plotly(label) for label in method_labels]
    n = random_deletion.count
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.16, subplot_titles=[
        "Deletion AUC (lower is better)", "Insertion AUC (higher is better)"])
    panels = ((1, "deletion", [s.deletion_auc for s in scores],
               [s.deletion_beats for s in scores], random_deletion, SPEARMAN_COLOUR),
              (2, "insertion", [s.insertion_auc for s in scores],
               [s.insertion_beats for s in scores], random_insertion, SSIM_COLOUR))
    top = 0.0
    for row, kind, aucs, beats, random, colour in panels:
        fig.add_trace(go.Bar(
            y=labels, x=aucs, orientation="h", name=kind, marker_color=colour,
            showlegend=False, customdata=beats,
            hovertemplate=f"%{{y}}: {kind} AUC %{{x:.3f}}, beats %{{customdata}} of {n} "
                          "random orders<extra></extra>"), row=row, col=1)
        low, high = float(random.aucs.min()), float(random.aucs.max())
        fig.add_vrect(x0=low, x1=high, fillcolor=RANDOM_BAND_COLOUR, line_width=0,
                      layer="below", row=row, col=1, showlegend=row == 1,
                      name=f"{n} random orders, lowest to highest AUC", legendgroup="random")
        fig.add_vline(x=random.auc, line={"color": RANDOM_COLOUR, "dash": "dash"},
                      layer="below", row=row, col=1, showlegend=row == 1,
                      name=f"random orders' mean AUC ({random_deletion.auc:.3f} deletion, "
                           f"{random_insertion.auc:.3f} insertion)", legendgroup="mean")
        top = max(top, high, *aucs)
        fig.update_yaxes(categoryorder="array", categoryarray=labels, autorange="reversed",
                         automargin=True, row=row, col=1)
    fig.update_xaxes(range=[0, 1.05 * top], title_text="area under the curve", row=2, col=1)
    fig.update_xaxes(range=[0, 1.05 * top], row=1, col=1)
    fig.update_layout(height=240 + 44 * len(labels), bargap=0.25, dragmode=False,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.08, "x": 0, "yanchor": "top"})
    return fig
