"""Faithfulness: deletion and insertion curves (Petsiuk et al. 2018, RISE, arXiv 1806.07421).

A faithful map ranks pixels by how much the model's decision rests on them.
**Deletion** replaces the top-ranked pixels first (here with a blurred copy of
the image) and watches the class probability fall: a faithful map makes it fall
fast, a small area under the curve (AUC). **Insertion** starts from the blurred
copy and reveals the top-ranked pixels first: the probability should rise
fast, a large AUC. Both are compared with the same curves for a random order.

Each curve has ``steps + 1`` points (fractions ``0, 1/steps, …, 1``); the
perturbed images are built chunk by chunk and sent through the model in
batches of the classifier's ``batch_size``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from saliency_core.methods import Target
from saliency_core.methods.base import ProgressCallback, report
from saliency_core.tf_adapter import KerasClassifier
from saliency_core.trust.similarity import filter_gaussian, to_abs_map
from saliency_core.trust.verdicts import Verdict, judge_deletion, judge_insertion

STEPS = 32
RANDOM_ORDERS = 1
Kind = Literal["deletion", "insertion"]
Measure = Literal["probability", "logit"]


def blur_image(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """The reference image: a strong Gaussian blur of ``image`` ``(H, W, 3)``.

    Args:
        image: ``(H, W, 3)`` float pixels.
        sigma: in pixels; default 5% of the shorter side (11 px at 224).

    Returns:
        ``(H, W, 3)`` float32 blurred copy.
    """
    image = np.asarray(image, dtype=np.float32)
    if sigma is None:
        sigma = max(1.0, 0.05 * min(image.shape[:2]))
    return filter_gaussian(image, sigma).astype(np.float32)


def rank_pixels(saliency: np.ndarray) -> np.ndarray:
    """Flat pixel indices of an ``(H, W)`` map, most salient first (ties by position)."""
    return np.argsort(-np.asarray(saliency, dtype=np.float64).ravel(),
                      kind="stable").astype(np.int32)


def count_changed(step: int, steps: int, pixels: int) -> int:
    """How many pixels are changed at ``step`` of ``steps`` (``round(pixels * step / steps)``)."""
    return int(round(pixels * step / steps))


def make_step_image(image: np.ndarray, reference: np.ndarray, order: np.ndarray, step: int,
                    kind: Kind, steps: int = STEPS) -> np.ndarray:
    """The perturbed image at one step of a curve.

    Args:
        image: ``(H, W, 3)`` original.
        reference: ``(H, W, 3)`` blurred copy.
        order: flat pixel indices, first changed first.
        step: ``0..steps``.
        kind: ``"deletion"`` (original, its top pixels replaced by the reference)
            or ``"insertion"`` (reference, its top pixels replaced by the original).
        steps: number of steps of the curve.

    Returns:
        ``(H, W, 3)`` float32.
    """
    height, width = image.shape[:2]
    start, source = (image, reference) if kind == "deletion" else (reference, image)
    out = np.array(start, dtype=np.float32).reshape(height * width, -1)
    chosen = order[:count_changed(step, steps, height * width)]
    out[chosen] = np.asarray(source, dtype=np.float32).reshape(height * width, -1)[chosen]
    return out.reshape(image.shape)


def compute_auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Area under a curve by the trapezoid rule."""
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def score_curve(classifier: KerasClassifier, image: np.ndarray, reference: np.ndarray,
                order: np.ndarray, kind: Kind, class_index: int, steps: int = STEPS,
                progress: ProgressCallback | None = None,
                measure: Measure = "probability") -> np.ndarray:
    """The class probability (or logit) at each step ``(steps + 1,)``, sent in batches."""
    probabilities = []
    batch = max(1, int(classifier.batch_size))
    for first in range(0, steps + 1, batch):
        chunk = np.stack([make_step_image(image, reference, order, s, kind, steps)
                          for s in range(first, min(first + batch, steps + 1))])
        outputs = (classifier.logits(chunk) if measure == "logit"
                   else classifier.probabilities(chunk))
        probabilities.append(outputs[:, class_index])
        report(progress, min(first + batch, steps + 1) / (steps + 1))
    return np.concatenate(probabilities).astype(np.float64)


@dataclass(frozen=True)
class Curve:
    """One deletion or insertion curve.

    Attributes:
        kind: ``"deletion"`` or ``"insertion"``.
        fractions: ``(steps + 1,)`` fraction of pixels changed.
        probabilities: ``(steps + 1,)`` class probability (or logit) at each step.
        auc: area under the curve.
    """

    kind: Kind
    fractions: np.ndarray
    probabilities: np.ndarray
    auc: float


@dataclass(frozen=True)
class FaithfulnessResult:
    """Deletion and insertion for a map's order and for random orders.

    Attributes:
        deletion, insertion: the map's curves.
        random_deletion, random_insertion: mean curves over random orders.
        order: ``(H * W,)`` int32 pixel order of the map, most salient first.
        reference: ``(H, W, 3)`` float32 blurred copy.
        measure: ``"probability"`` or ``"logit"``.
        verdicts: deletion and insertion verdicts.
        steps: number of steps.
        seconds: time taken.
    """

    deletion: Curve
    insertion: Curve
    random_deletion: Curve
    random_insertion: Curve
    order: np.ndarray
    reference: np.ndarray
    measure: str
    verdicts: tuple[Verdict, Verdict]
    steps: int
    seconds: float


def _curve(kind: Kind, probabilities: np.ndarray, steps: int) -> Curve:
    fractions = np.linspace(0.0, 1.0, steps + 1)
    return Curve(kind, fractions, probabilities, compute_auc(fractions, probabilities))


def run_faithfulness(classifier: KerasClassifier, image: np.ndarray, values: np.ndarray,
                     target: Target, steps: int = STEPS, random_orders: int = RANDOM_ORDERS,
                     seed: int = 0, reference: np.ndarray | None = None,
                     measure: Measure = "probability",
                     progress: ProgressCallback | None = None) -> FaithfulnessResult:
    """Deletion and insertion curves of an attribution, beside random orders.

    Args:
        classifier: the classifier whose class probability is measured.
        image: ``(H, W, 3)`` float 0-255 model input.
        values: the attribution ``(H, W, C)``; pixels are ranked by ``max_c |a_c|``.
        target: its ``class_index`` is the probability watched.
        steps: steps per curve (32: about 3% of the pixels per step).
        random_orders: random orders averaged for the baseline.
        seed: the random orders' seed.
        reference: the replacement image, default :func:`blur_image`.
        measure: ``"probability"`` (softmax, the paper's choice) or ``"logit"``, the
            pre-softmax score, which does not saturate when a model is very confident
            (a curve stuck at probability 1 cannot tell orders apart).
        progress: called with the fraction done.
    """
    start = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    reference = blur_image(image) if reference is None else reference
    order = rank_pixels(to_abs_map(values))
    rng = np.random.default_rng(seed)
    randoms = [rng.permutation(order.size).astype(np.int32) for _ in range(random_orders)]
    jobs = [(order, "deletion"), (order, "insertion")]
    jobs += [(r, kind) for r in randoms for kind in ("deletion", "insertion")]
    results = []
    for i, (pixel_order, kind) in enumerate(jobs):
        def part(f, i=i):
            report(progress, (i + f) / len(jobs))
        results.append(score_curve(classifier, image, reference, pixel_order, kind,
                                   target.class_index, steps, part, measure))
    deletion, insertion = _curve("deletion", results[0], steps), \
        _curve("insertion", results[1], steps)
    random_deletion = _curve("deletion", np.mean(results[2::2], axis=0), steps)
    random_insertion = _curve("insertion", np.mean(results[3::2], axis=0), steps)
    verdicts = (judge_deletion(deletion.auc, random_deletion.auc),
                judge_insertion(insertion.auc, random_insertion.auc))
    return FaithfulnessResult(deletion, insertion, random_deletion, random_insertion, order,
                              reference, measure, verdicts, steps, time.perf_counter() - start)


@dataclass(frozen=True)
class MethodScore:
    """One method's faithfulness on one image.

    Attributes:
        method: registry key.
        deletion_auc, insertion_auc: the AUCs of its map's order.
        seconds: time for its map and curves.
    """

    method: str
    deletion_auc: float
    insertion_auc: float
    seconds: float


def compare_methods(classifier: KerasClassifier, image: np.ndarray, target: Target,
                    explainers: dict, steps: int = STEPS, measure: Measure = "probability",
                    progress: ProgressCallback | None = None
                    ) -> tuple[list[MethodScore], Curve, Curve]:
    """Deletion and insertion AUCs of several methods on one image, plus a random order's.

    Args:
        classifier: the classifier.
        image: ``(H, W, 3)`` float 0-255 model input.
        target: the class.
        explainers: method key -> :data:`~saliency_core.trust.randomization.Explainer`.
        steps: steps per curve.
        measure: ``"probability"`` or ``"logit"`` (see :func:`run_faithfulness`).
        progress: called with the fraction done.

    Returns:
        ``(scores per method, random deletion curve, random insertion curve)``.
    """
    image = np.asarray(image, dtype=np.float32)
    reference = blur_image(image)
    scores = []
    total = len(explainers) + 1
    for i, (key, explain) in enumerate(explainers.items()):
        start = time.perf_counter()
        order = rank_pixels(to_abs_map(explain(classifier, image, target)))
        curves = [score_curve(classifier, image, reference, order, kind, target.class_index,
                              steps, measure=measure) for kind in ("deletion", "insertion")]
        fractions = np.linspace(0.0, 1.0, steps + 1)
        scores.append(MethodScore(key, compute_auc(fractions, curves[0]),
                                  compute_auc(fractions, curves[1]),
                                  time.perf_counter() - start))
        report(progress, (i + 1) / total)
    rng = np.random.default_rng(0)
    random_order = rng.permutation(image.shape[0] * image.shape[1]).astype(np.int32)
    random_curves = [_curve(kind, score_curve(classifier, image, reference, random_order, kind,
                                              target.class_index, steps, measure=measure),
                            steps)
                     for kind in ("deletion", "insertion")]
    report(progress, 1.0)
    return scores, random_curves[0], random_curves[1]
