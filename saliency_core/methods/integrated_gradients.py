"""Integrated Gradients (Sundararajan, Taly & Yan 2017, arXiv 1703.01365).

``IG_i(x) = (x_i - x'_i) * integral_0^1 dS/dx_i (x' + a (x - x')) da``, computed
with the trapezoid rule over ``steps`` intervals. IG satisfies *completeness*:
the attributions sum to ``S(x) - S(x')``; the gap between the two, reported in
``info``, measures how well the integral was approximated.

Step placement. On real networks the score often changes steeply over a short
stretch of the path (for a black baseline, usually while the image is still
very dark), and evenly spaced steps undersample it: EfficientNet-Lite0 on the cat
sample leaves a 10% completeness gap at 200 even steps. The default
``grid="adaptive"`` first evaluates the score (forward passes only) at
``steps + 1`` even points, then places the gradient evaluations by the inverse
of ``0.5 * a + 0.5 * C(a)``, where ``C`` is the normalised cumulative absolute
score change: half the nodes follow the score, half stay even. The integral is
still the trapezoid rule, on that non-uniform grid (gap: 0.2-2% at 200 steps
on the bundled samples). ``grid="uniform"`` gives the textbook even spacing.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from PIL import Image, ImageFilter

from saliency_core.methods.base import (
    Attribution,
    GradientModel,
    Param,
    ProgressCallback,
    SaliencyMethod,
    Target,
    report,
)

BASELINES = {"black": "Black image", "blurred": "Blurred image", "noise": "Uniform noise"}
GRIDS = {"adaptive": "Adaptive (follows the score)", "uniform": "Uniform"}


def trapezoid_weights(nodes: np.ndarray) -> np.ndarray:
    """Weights ``w`` with ``sum(w * g(nodes)) ~ integral of g`` over ``[nodes[0], nodes[-1]]``."""
    widths = np.diff(np.asarray(nodes, np.float64))
    weights = np.zeros(len(nodes))
    weights[:-1] += widths / 2
    weights[1:] += widths / 2
    return weights


def adaptive_nodes(probe_scores: np.ndarray, mix: float = 0.5) -> np.ndarray:
    """Path positions in ``[0, 1]`` that follow the score's changes.

    Args:
        probe_scores: scores at ``len(probe_scores)`` evenly spaced path points.
        mix: share of the nodes kept evenly spaced.

    Returns:
        ``len(probe_scores)`` increasing positions, the first 0 and the last 1.
    """
    n = len(probe_scores)
    even = np.linspace(0.0, 1.0, n)
    change = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(probe_scores)))])
    if change[-1] <= 0:
        return even
    cdf = mix * even + (1.0 - mix) * change / change[-1]
    return np.interp(even, cdf, even)


def make_baseline(image: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """The IG starting point for ``image`` ``(H, W, 3)``: black, blurred or noise."""
    if kind == "black":
        return np.zeros_like(image, dtype=np.float32)
    if kind == "blurred":
        radius = max(image.shape[:2]) / 16
        pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return rng.uniform(0, 255, size=image.shape).astype(np.float32)
    raise ValueError(f"unknown baseline {kind!r}; known: {', '.join(BASELINES)}")


class IntegratedGradients(SaliencyMethod):
    """Path-integrated gradients from a baseline to the image (trapezoid rule)."""

    key = "integrated_gradients"
    label = "Integrated Gradients"
    description = ("Gradients averaged along a straight path from a baseline image to this "
                   "one, times the difference: attributions add up to the score change.")
    citation = "Sundararajan, Taly & Yan 2017, arXiv:1703.01365"
    reading = ("Bright pixels contributed most to the score's rise from the baseline image to "
               "this one; the contributions add up to that rise (see the completeness gap).")
    sampling = True
    params: ClassVar[tuple[Param, ...]] = (
        Param("steps", "Steps", 50, "Intervals of the path integral (trapezoid rule); "
              "more steps close the completeness gap.", 4, 300, 1),
        Param("baseline", "Baseline", "black", "The image the path starts from.",
              options=tuple(BASELINES), labels=BASELINES),
        Param("grid", "Step placement", "adaptive", "Adaptive puts more steps where the score "
              "changes fast (fewer steps for the same accuracy); uniform is the textbook rule.",
              options=tuple(GRIDS), labels=GRIDS),
    )

    def __init__(self, steps: int = 50, baseline: str = "black", grid: str = "adaptive",
                 seed: int = 0, batch_size: int | None = None):
        if steps < 1:
            raise ValueError("steps must be >= 1")
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}")
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r}")
        self.steps, self.baseline, self.grid = int(steps), baseline, grid
        self.seed, self.batch_size = seed, batch_size

    def _path(self, baseline: np.ndarray, delta: np.ndarray, alphas: np.ndarray) -> np.ndarray:
        return (baseline[None] + alphas[:, None, None, None].astype(np.float32) * delta[None]
                ).astype(np.float32)

    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """IG attributions ``(H, W, 3)`` of ``image``, with completeness in ``info``."""
        image = np.asarray(image, np.float32)
        baseline = make_baseline(image, self.baseline, self.seed)
        delta = image - baseline
        batch = max(1, self.batch_size or getattr(model, "batch_size", 16))
        even = np.linspace(0.0, 1.0, self.steps + 1)
        probe_share = 0.0
        if self.grid == "adaptive":
            probe = np.concatenate([model.scores(self._path(baseline, delta, even[i:i + batch]),
                                                 target)
                                    for i in range(0, len(even), batch)])
            alphas = adaptive_nodes(probe)
            probe_share = 0.25  # forward passes cost about a third of gradient passes
            report(progress, probe_share)
        else:
            alphas = even
        weights = trapezoid_weights(alphas)
        total = np.zeros(image.shape, np.float64)
        scores = np.empty(self.steps + 1, np.float64)
        for start in range(0, self.steps + 1, batch):
            a = alphas[start:start + batch]
            grads, s = model.gradients(self._path(baseline, delta, a), target)
            total += np.tensordot(weights[start:start + batch], grads.astype(np.float64),
                                  axes=1)
            scores[start:start + len(a)] = s
            report(progress, probe_share + (1 - probe_share) * (start + len(a))
                   / (self.steps + 1))
        values = (delta * total).astype(np.float32)
        change = float(scores[-1] - scores[0])
        attributed = float(values.sum(dtype=np.float64))
        gap = abs(attributed - change) / max(abs(change), 1e-12)
        return Attribution(values=values, score=float(scores[-1]), info={
            "score at image": float(scores[-1]),
            "score at baseline": float(scores[0]),
            "sum of attributions": attributed,
            "completeness gap": gap,
        })
