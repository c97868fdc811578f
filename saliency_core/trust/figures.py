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
from saliency_core.trust.faithfulness import FaithfulnessResult, MethodScore
from saliency_core.trust.randomization import RandomizationResult
from saliency_core.trust.similarity import normalize_for_ssim
from saliency_core.trust.verdicts import SIMILAR_SPEARMAN

STRIP_PIXELS = 64
STRIP_COLUMNS = 5
SPEARMAN_COLOUR = "#1f77b4"
SSIM_COLOUR = "#ff7f0e"
RANDOM_COLOUR = "#7f7f7f"
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
                                              "scaleanchor": f"x{suffix}"}})


def make_randomization_figure(result: RandomizationResult,
                              colormap: str = "viridis") -> go.Figure:
    """Similarity to the original map against the randomisation step, maps underneath.

    Args:
        result: a cascading or independent sweep.
        colormap: a key of :data:`saliency_core.plotting.COLORMAPS`.

    Returns:
        Top: Spearman (of |map|) and SSIM (of normalised maps) per step, with the
        pass line. Bottom: the original map, then the map after each step.
    """
    steps = len(result.blocks)
    cols = min(STRIP_COLUMNS, steps + 1)
    strip_rows = -(-(steps + 1) // cols)
    labels = [escape_plotly(label) for label in result.step_labels()]
    titles = [""] + ["original"] + [f"step {i + 1}" for i in range(steps)]
    specs = [[{"colspan": cols}] + [None] * (cols - 1)]
    specs += [[{} for _ in range(cols)] for _ in range(strip_rows)]
    fig = make_subplots(rows=1 + strip_rows, cols=cols,
                        row_heights=[0.5] + [0.5 / strip_rows] * strip_rows,
                        vertical_spacing=0.1, horizontal_spacing=0.01, specs=specs,
                        subplot_titles=titles)
    x = list(range(1, steps + 1))
    fig.add_trace(go.Scatter(x=x, y=result.spearman, mode="lines+markers",
                             name="Spearman of |map|", line={"color": SPEARMAN_COLOUR},
                             customdata=labels,
                             hovertemplate="%{customdata}<br>Spearman %{y:.2f}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=result.ssim, mode="lines+markers",
                             name="SSIM of normalised maps",
                             line={"color": SSIM_COLOUR, "dash": "dot"}, customdata=labels,
                             hovertemplate="%{customdata}<br>SSIM %{y:.2f}<extra></extra>"),
                  row=1, col=1)
    fig.add_hline(y=SIMILAR_SPEARMAN, line={"color": RANDOM_COLOUR, "dash": "dash", "width": 1},
                  annotation_text="below: the map changed", annotation_position="bottom right",
                  row=1, col=1)
    axis_title = ("steps: blocks randomised, from the output down" if result.mode == "cascading"
                  else "steps: the one block randomised")
    fig.update_xaxes(tickvals=x, ticktext=labels, title_text=axis_title, row=1, col=1)
    fig.update_yaxes(range=[min(-0.2, float(np.min(result.spearman)) - 0.05), 1.05],
                     title_text="similarity to the original", row=1, col=1)
    for i, saliency in enumerate(result.maps):
        fig.add_trace(_map_trace(saliency, colormap, show_scale=False),
                      row=2 + i // cols, col=1 + i % cols)
    _square_axes(fig, 2, 1 + cols * strip_rows)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=420 + 170 * strip_rows, margin={"l": 60, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": 1.08, "x": 0}, dragmode=False)
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
    """
    cols = len(result.classes) + 1
    titles = [f"{escape_plotly(chosen_label)}<br><sup>chosen class</sup>"] + [
        f"{escape_plotly(label)}<br><sup>Spearman {s.spearman:.2f} · SSIM {s.ssim:.2f}</sup>"
        for label, s in zip(class_labels, result.similarities, strict=True)]
    fig = make_subplots(rows=1, cols=cols, subplot_titles=titles, horizontal_spacing=0.015)
    fig.add_trace(_map_trace(chosen_map, colormap), row=1, col=1)
    for i, saliency in enumerate(result.maps):
        fig.add_trace(_map_trace(saliency, colormap), row=1, col=i + 2)
    _square_axes(fig, 1, cols)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=250, margin={"l": 10, "r": 10, "t": 60, "b": 10}, dragmode=False)
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
    """Deletion and insertion curves of the map's order beside a random order.

    Args:
        result: the faithfulness check.
        step: if given, a vertical line marks this step (the slider's).

    Returns:
        Two panels; class probability against the fraction of pixels changed,
        with each curve's AUC in the legend.
    """
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=[
        "Deletion (lower AUC is better)", "Insertion (higher AUC is better)"])
    pairs = ((result.deletion, result.random_deletion), (result.insertion,
                                                         result.random_insertion))
    for col, (curve, random) in enumerate(pairs, start=1):
        fig.add_trace(go.Scatter(
            x=curve.fractions, y=curve.probabilities, mode="lines",
            name=f"{curve.kind}, map order (AUC {curve.auc:.3f})",
            line={"color": SPEARMAN_COLOUR, "width": 2.5},
            hovertemplate="%{x:.0%} changed: p = %{y:.3f}<extra></extra>"), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=random.fractions, y=random.probabilities, mode="lines",
            name=f"{random.kind}, random order (AUC {random.auc:.3f})",
            line={"color": RANDOM_COLOUR, "dash": "dash"},
            hovertemplate="%{x:.0%} changed: p = %{y:.3f}<extra></extra>"), row=1, col=col)
        if step is not None:
            fig.add_vline(x=step / result.steps, line={"color": "#d62728", "width": 1},
                          row=1, col=col)
    fig.update_xaxes(title_text="fraction of pixels changed", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(title_text="class probability", rangemode="tozero", row=1, col=1)
    fig.update_layout(height=380, margin={"l": 60, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.25, "x": 0}, dragmode=False)
    return fig


def make_method_auc_figure(scores: Sequence[MethodScore], method_labels: Sequence[str],
                           random_deletion_auc: float, random_insertion_auc: float
                           ) -> go.Figure:
    """Every method's deletion and insertion AUC on this image, with the random order's.

    Args:
        scores: one per method.
        method_labels: display names, in the same order.
        random_deletion_auc, random_insertion_auc: the random order's AUCs (dashed lines).
    """
    labels = [escape_plotly(label) for label in method_labels]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=[
        "Deletion AUC (lower is better)", "Insertion AUC (higher is better)"])
    fig.add_trace(go.Bar(x=labels, y=[s.deletion_auc for s in scores], name="deletion",
                         marker_color=SPEARMAN_COLOUR,
                         hovertemplate="%{x}: %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=labels, y=[s.insertion_auc for s in scores], name="insertion",
                         marker_color=SSIM_COLOUR,
                         hovertemplate="%{x}: %{y:.3f}<extra></extra>"), row=1, col=2)
    for col, value in ((1, random_deletion_auc), (2, random_insertion_auc)):
        fig.add_hline(y=value, line={"color": RANDOM_COLOUR, "dash": "dash"},
                      annotation_text=f"random order {value:.3f}",
                      annotation_position="top left", row=1, col=col)
    fig.update_layout(height=380, showlegend=False, margin={"l": 50, "r": 10, "t": 40, "b": 10},
                      dragmode=False)
    return fig
