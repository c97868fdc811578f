"""Guided Integrated Gradients (Kapishnikov et al. 2021, arXiv 2106.09788).

Integrated Gradients walks a straight line from the baseline to the image, and
on the way passes through points where the model behaves strangely (large,
noisy gradients in pixels that do not matter): that noise ends up in the map.
Guided IG chooses its path as it goes. At each of ``steps`` steps it takes the
gradient at the current point and moves only the ``fraction`` of features
(pixel channels) with the smallest absolute gradient towards the image, until
the path has covered its share of the L1 distance; no feature may run more than
``max_dist`` (as a share of the path) ahead of or behind the straight line. The
attribution of a feature is the sum over steps of its move times its gradient,
so the attributions still add up to about ``S(x) - S(baseline)``.

The algorithm follows PAIR ``saliency``'s reference (the authors' code) exactly,
in float64. The path is adaptive, so step ``i + 1`` depends on the gradient at
step ``i``: the steps cannot be batched, and each is one gradient call of one
image (the floor is ``steps`` single-image gradients).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from saliency_core.methods.base import (
    SEED,
    Attribution,
    GradientModel,
    Param,
    ProgressCallback,
    SaliencyMethod,
    Target,
    Work,
    report,
)
from saliency_core.methods.integrated_gradients import (
    BASELINES,
    completeness_info,
    make_baseline,
)

EPSILON = 1e-9


def guided_path_step(x: np.ndarray, grad: np.ndarray, image: np.ndarray,
                     baseline: np.ndarray, step: int, steps: int, fraction: float,
                     max_dist: float, l1_total: float) -> np.ndarray:
    """The attribution gained in one step; moves ``x`` (float64, in place) along the path.

    Args:
        x: the current point, ``(H, W, C)``; updated in place.
        grad: the gradient at ``x`` (before the step).
        image, baseline: the path's end and start.
        step: the step index, ``0 <= step < steps``.
        fraction: share of the features moved at once (lowest ``|grad|`` first).
        max_dist: how far (as a share of the path) a feature may leave the straight line.
        l1_total: ``|image - baseline|_1``.
    """
    gained = np.zeros_like(x)
    grad = np.asarray(grad, np.float64)
    span = image - baseline
    alpha = (step + 1.0) / steps
    alpha_min, alpha_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
    x_min, x_max = baseline + span * alpha_min, baseline + span * alpha_max
    l1_target = l1_total * (1 - (step + 1) / steps)
    moving = span != 0
    gamma = np.inf
    while gamma > 1.0:
        x_old = x.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            x_alpha = np.where(moving, (x - baseline) / span, alpha_max)
        behind = x_alpha < alpha_min
        x[behind] = x_min[behind]  # features that fell behind catch up first
        l1_current = np.abs(x - image).sum()
        if math.isclose(l1_target, l1_current, rel_tol=EPSILON, abs_tol=EPSILON):
            gained += (x - x_old) * grad
            break
        weights = np.abs(grad)
        weights[x == x_max] = np.inf  # features already at their limit are not chosen
        threshold = np.quantile(weights, fraction, method="lower")
        chosen = (weights <= threshold) & (weights != np.inf)
        l1_chosen = (np.abs(x - x_max) * chosen).sum()
        gamma = (l1_current - l1_target) / l1_chosen if l1_chosen > 0 else np.inf
        if gamma > 1.0:
            x[chosen] = x_max[chosen]
        else:
            x[chosen] = (x + (x_max - x) * gamma)[chosen]
        gained += (x - x_old) * grad
    return gained


class GuidedIG(SaliencyMethod):
    """Integrated gradients along an adaptive path that moves low-gradient features first."""

    key = "guided_ig"
    label = "Guided IG"
    description = ("Integrated Gradients along a path chosen as it goes: at each step the "
                   "pixels whose gradient is smallest move first, which avoids the noisy "
                   "stretches of the straight path. Each step needs the previous one's "
                   "gradient, so the steps run one at a time.")
    citation = "Kapishnikov et al. 2021, arXiv:2106.09788"
    reading = ("Bright pixels contributed most to the score's rise from the baseline image "
               "to this one, along a path that avoids the model's noisy regions; the "
               "contributions add up to that rise (see the completeness gap).")
    sampling = True
    family = "paths"
    params: ClassVar[tuple[Param, ...]] = (
        Param("steps", "Steps", 200, "Steps of the path (the paper's code uses 200); each is "
              "one gradient.", 10, 400, 10),
        Param("fraction", "Features moved per round", 0.25, "Share of the pixel channels, "
              "lowest gradient first, moved in each round of a step.", 0.05, 1.0, 0.05),
        Param("max_dist", "Largest departure from the straight path", 0.02, "How far (as a "
              "share of the path) a pixel may run ahead of or behind the straight line; 0 "
              "is plain Integrated Gradients.", 0.0, 1.0, 0.01),
        Param("baseline", "Baseline", "black", "The image the path starts from.",
              options=tuple(BASELINES), labels=BASELINES),
    )
    extra_params: ClassVar[tuple[Param, ...]] = (SEED,)  # the noise baseline's

    def __init__(self, steps: int = 200, fraction: float = 0.25, max_dist: float = 0.02,
                 baseline: str = "black", seed: int = 0):
        if steps < 1 or not 0 < fraction <= 1 or not 0 <= max_dist <= 1:
            raise ValueError("steps must be >= 1, fraction in (0, 1] and max_dist in [0, 1]")
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}")
        self.steps, self.fraction, self.max_dist = int(steps), float(fraction), float(max_dist)
        self.baseline, self.seed = baseline, seed

    def work(self, input_size: tuple[int, int]) -> Work:
        """One gradient pass per step, and a forward pass for the score at the image."""
        return Work(gradient=self.steps, forward=1)

    def attribute(self, model: GradientModel, image: np.ndarray, target: Target,
                  progress: ProgressCallback | None = None) -> Attribution:
        """Guided IG attributions ``(H, W, 3)`` of ``image``, with completeness in ``info``."""
        image = np.asarray(image, np.float32)
        start = make_baseline(image, self.baseline, self.seed)
        end, begin = image.astype(np.float64), start.astype(np.float64)
        attribution = np.zeros_like(end)
        score = float(model.scores(image[None], target)[0])
        at_baseline = float("nan")
        l1_total = float(np.abs(end - begin).sum())
        if l1_total > 0:
            x = begin.copy()
            for step in range(self.steps):
                grads, scores = model.gradients(x[None].astype(np.float32), target)
                if step == 0:
                    at_baseline = float(scores[0])
                attribution += guided_path_step(x, grads[0], end, begin, step, self.steps,
                                                self.fraction, self.max_dist, l1_total)
                report(progress, (step + 1) / self.steps)
        else:
            at_baseline = score
        report(progress, 1.0)
        values = attribution.astype(np.float32)
        return Attribution(values=values, score=score, info=completeness_info(
            values, score, "baseline", at_baseline, self.steps))
