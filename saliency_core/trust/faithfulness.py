"""Faithfulness: deletion and insertion curves (Petsiuk et al. 2018, RISE, arXiv 1806.07421).

A faithful map ranks pixels by how much the model's decision rests on them.
**Deletion** replaces the top-ranked pixels first (here with a blurred copy of
the image) and watches the class probability fall: a faithful map makes it fall
fast, a small area under the curve (AUC). **Insertion** starts from the blurred
copy and reveals the top-ranked pixels first: the probability should rise
fast, a large AUC. Both are compared with the same curves for many random
orders (:data:`RANDOM_ORDERS`), and the verdict counts how many the map beats.

Each curve has ``steps + 1`` points (fractions ``0, 1/steps, …, 1``); the
perturbed images of the map's order and of all random orders are built chunk by
chunk and sent through the model together, in batches of the classifier's
``batch_size`` (:func:`score_orders`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from saliency_core.methods import Target
from saliency_core.methods.base import ProgressCallback, report
from saliency_core.tf_adapter import KerasClassifier
from saliency_core.trust.randomization import default_seed_text, derive_seed
from saliency_core.trust.similarity import filter_gaussian, to_abs_map
from saliency_core.trust.verdicts import Verdict, judge_deletion, judge_insertion

STEPS = 32
RANDOM_ORDERS = 20
"""Random orders the map is compared with (one order decided the verdict before; on
MobileNetV2's cat a map that beat that one beat only 3 of 10)."""
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
    pixels = image.shape[0] * image.shape[1]
    return _perturbed(image, reference, order, count_changed(step, steps, pixels), kind)


def compute_auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Area under a curve by the trapezoid rule."""
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def _perturbed(image: np.ndarray, reference: np.ndarray, order: np.ndarray, count: int,
               kind: Kind) -> np.ndarray:
    """``image`` with the first ``count`` pixels of ``order`` taken from ``reference``
    (deletion), or ``reference`` with them taken from ``image`` (insertion)."""
    height, width = image.shape[:2]
    start, source = (image, reference) if kind == "deletion" else (reference, image)
    out = np.array(start, dtype=np.float32).reshape(height * width, -1)
    chosen = order[:count]
    out[chosen] = np.asarray(source, dtype=np.float32).reshape(height * width, -1)[chosen]
    return out.reshape(image.shape)


def draw_random_orders(pixels: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` random pixel orders (permutations of ``range(pixels)``), seeded."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(pixels).astype(np.int32) for _ in range(count)]


def score_orders(classifier: KerasClassifier, image: np.ndarray, reference: np.ndarray,
                 map_orders: list[np.ndarray], random_orders: list[np.ndarray],
                 class_index: int, steps: int = STEPS, measure: Measure = "probability",
                 progress: ProgressCallback | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deletion and insertion curves of several pixel orders, in shared batched calls.

    Every distinct perturbed image is scored once, in batches of the classifier's
    ``batch_size``, whatever order or curve it belongs to: the original image and
    the blurred copy are shared by every curve (first and last points), and a random
    order's insertion curve is the deletion curve of the *reversed* order read
    backwards, so each random order costs one set of images for both curves. (The
    reverse of a uniformly random order is uniformly random too.) Images are built
    chunk by chunk, so memory holds one batch, not the hundreds of images.

    Args:
        classifier: the classifier whose class probability (or logit) is measured.
        image, reference: ``(H, W, 3)`` original and blurred copy.
        map_orders: orders whose deletion and insertion curves are wanted.
        random_orders: random orders: deletion curves of each, insertion curves of
            their reverses.
        class_index: the class watched.
        steps: steps per curve.
        measure: ``"probability"`` or ``"logit"``.
        progress: called with the fraction of images scored.

    Returns:
        ``(map deletion, map insertion, random deletion, random insertion)``, each
        ``(orders, steps + 1)`` float64.
    """
    image = np.asarray(image, dtype=np.float32)
    pixels = image.shape[0] * image.shape[1]
    counts = [count_changed(s, steps, pixels) for s in range(steps + 1)]
    keys: dict[tuple, int] = {}

    def key_of(order_id: int, count: int, kind: Kind) -> tuple:
        if count == 0:
            return ("original",) if kind == "deletion" else ("reference",)
        if count == pixels:
            return ("reference",) if kind == "deletion" else ("original",)
        return (order_id, count, kind)

    orders = list(map_orders) + list(random_orders)
    first_random = len(map_orders)
    layout = []  # per order: (deletion keys, insertion keys)
    for i, _order in enumerate(orders):
        deletion = [key_of(i, c, "deletion") for c in counts]
        if i < first_random:
            insertion = [key_of(i, c, "insertion") for c in counts]
        else:  # insertion of reversed(order) revealing c pixels = deletion of order, N - c
            insertion = [key_of(i, pixels - c, "deletion") for c in counts]
        layout.append((deletion, insertion))
        for key in deletion + insertion:
            keys.setdefault(key, len(keys))
    ordered = list(keys)

    def build(key: tuple) -> np.ndarray:
        if key == ("original",):
            return image
        if key == ("reference",):
            return np.asarray(reference, dtype=np.float32)
        order_id, count, kind = key
        return _perturbed(image, reference, orders[order_id], count, kind)

    values = np.empty(len(ordered), dtype=np.float64)
    batch = max(1, int(classifier.batch_size))
    for first in range(0, len(ordered), batch):
        chunk = np.stack([build(key) for key in ordered[first:first + batch]])
        outputs = (classifier.logits(chunk) if measure == "logit"
                   else classifier.probabilities(chunk))
        values[first:first + len(chunk)] = outputs[:, class_index]
        report(progress, (first + len(chunk)) / len(ordered))
    curves = [(values[[keys[k] for k in deletion]], values[[keys[k] for k in insertion]])
              for deletion, insertion in layout]
    empty = np.zeros((0, steps + 1))

    def stack(part: list, column: int) -> np.ndarray:
        return np.stack([c[column] for c in part]) if part else empty

    return (stack(curves[:first_random], 0), stack(curves[:first_random], 1),
            stack(curves[first_random:], 0), stack(curves[first_random:], 1))


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
class RandomCurves:
    """The curves of many random orders: the baseline a map's order is compared with.

    Attributes:
        kind: ``"deletion"`` or ``"insertion"``.
        fractions: ``(steps + 1,)`` fraction of pixels changed.
        curves: ``(n, steps + 1)`` one curve per random order.
        aucs: ``(n,)`` their areas under the curve.
    """

    kind: Kind
    fractions: np.ndarray
    curves: np.ndarray
    aucs: np.ndarray

    @property
    def count(self) -> int:
        """How many random orders."""
        return int(len(self.aucs))

    @property
    def probabilities(self) -> np.ndarray:
        """``(steps + 1,)`` the mean curve."""
        return self.curves.mean(axis=0)

    @property
    def low(self) -> np.ndarray:
        """``(steps + 1,)`` the lowest random curve at each step (the band's floor)."""
        return self.curves.min(axis=0)

    @property
    def high(self) -> np.ndarray:
        """``(steps + 1,)`` the highest random curve at each step (the band's ceiling)."""
        return self.curves.max(axis=0)

    @property
    def auc(self) -> float:
        """The mean AUC of the random orders."""
        return float(self.aucs.mean())

    @property
    def auc_sd(self) -> float:
        """The standard deviation of the random orders' AUCs."""
        return float(self.aucs.std(ddof=1)) if self.count > 1 else 0.0

    def beaten_by(self, auc: float) -> int:
        """How many random orders an order with ``auc`` beats (lower for deletion)."""
        return int(np.sum(auc < self.aucs) if self.kind == "deletion"
                   else np.sum(auc > self.aucs))


@dataclass(frozen=True)
class FaithfulnessResult:
    """Deletion and insertion for a map's order and for many random orders.

    Attributes:
        deletion, insertion: the map's curves.
        random_deletion, random_insertion: the random orders' curves.
        order: ``(H * W,)`` int32 pixel order of the map, most salient first.
        reference: ``(H, W, 3)`` float32 blurred copy.
        measure: ``"probability"`` or ``"logit"``.
        verdicts: deletion and insertion verdicts.
        steps: number of steps.
        seconds: time taken.
    """

    deletion: Curve
    insertion: Curve
    random_deletion: RandomCurves
    random_insertion: RandomCurves
    order: np.ndarray
    reference: np.ndarray
    measure: str
    verdicts: tuple[Verdict, Verdict]
    steps: int
    seconds: float


def _fractions(steps: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, steps + 1)


def _curve(kind: Kind, probabilities: np.ndarray, steps: int) -> Curve:
    fractions = _fractions(steps)
    return Curve(kind, fractions, probabilities, compute_auc(fractions, probabilities))


def _random_curves(kind: Kind, curves: np.ndarray, steps: int) -> RandomCurves:
    fractions = _fractions(steps)
    return RandomCurves(kind, fractions, curves,
                        np.array([compute_auc(fractions, c) for c in curves]))


def count_images(steps: int, map_orders: int, random_orders: int) -> int:
    """Distinct images :func:`score_orders` scores when ``steps`` divides the pixels
    evenly (224 × 224 and 32 steps do): the original and the blurred copy,
    ``2 (steps - 1)`` per map order and ``steps - 1`` per random order."""
    return 2 + 2 * (steps - 1) * map_orders + (steps - 1) * random_orders


def orders_seed(seed_text: str | None, image: np.ndarray) -> int:
    """The random orders' seed: from ``seed_text`` (the image's SHA-256), else its pixels."""
    return derive_seed(seed_text or default_seed_text(image, ""), "orders", bits=32)


def run_faithfulness(classifier: KerasClassifier, image: np.ndarray, values: np.ndarray,
                     target: Target, steps: int = STEPS, random_orders: int = RANDOM_ORDERS,
                     seed_text: str | None = None, reference: np.ndarray | None = None,
                     measure: Measure = "probability",
                     progress: ProgressCallback | None = None) -> FaithfulnessResult:
    """Deletion and insertion curves of an attribution, beside many random orders.

    Args:
        classifier: the classifier whose class probability is measured.
        image: ``(H, W, 3)`` float 0-255 model input.
        values: the attribution ``(H, W, C)``; pixels are ranked by ``max_c |a_c|``.
        target: its ``class_index`` is the probability watched.
        steps: steps per curve (32: about 3% of the pixels per step).
        random_orders: random orders to compare with (at least 2; default 20).
        seed_text: seeds the random orders, normally the image's SHA-256 (default:
            the SHA-256 of ``image``'s pixels).
        reference: the replacement image, default :func:`blur_image`.
        measure: ``"probability"`` (softmax, the paper's choice) or ``"logit"``, the
            pre-softmax score, which does not saturate when a model is very confident
            (a curve stuck at probability 1 cannot tell orders apart).
        progress: called with the fraction done.
    """
    if random_orders < 2:
        raise ValueError("at least 2 random orders are needed for a spread")
    start = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    reference = blur_image(image) if reference is None else reference
    order = rank_pixels(to_abs_map(values))
    randoms = draw_random_orders(order.size, random_orders, orders_seed(seed_text, image))
    deletion, insertion, random_deletion, random_insertion = score_orders(
        classifier, image, reference, [order], randoms, target.class_index, steps, measure,
        progress)
    deletion_curve = _curve("deletion", deletion[0], steps)
    insertion_curve = _curve("insertion", insertion[0], steps)
    randoms_deletion = _random_curves("deletion", random_deletion, steps)
    randoms_insertion = _random_curves("insertion", random_insertion, steps)
    verdicts = (judge_deletion(deletion_curve.auc, randoms_deletion.aucs),
                judge_insertion(insertion_curve.auc, randoms_insertion.aucs))
    return FaithfulnessResult(deletion_curve, insertion_curve, randoms_deletion,
                              randoms_insertion, order, reference, measure, verdicts, steps,
                              time.perf_counter() - start)


@dataclass(frozen=True)
class MethodScore:
    """One method's faithfulness on one image.

    Attributes:
        method: registry key.
        deletion_auc, insertion_auc: the AUCs of its map's order.
        deletion_beats, insertion_beats: random orders its order beats.
        seconds: time for its map and curves.
    """

    method: str
    deletion_auc: float
    insertion_auc: float
    deletion_beats: int
    insertion_beats: int
    seconds: float


RANDOM_PART = "random orders"
"""The part of :func:`compare_methods` that scores the random orders."""


def comparison_weights(methods, steps: int = STEPS, random_orders: int = RANDOM_ORDERS,
                       random_known: bool = False) -> dict[str, int]:
    """Each part of :func:`compare_methods` with its share of the work (images scored),
    in the order the parts run: :data:`RANDOM_PART` (0 when the curves are given),
    then each method. Its overall progress is these parts done in turn, so a page can
    turn one progress fraction back into a bar per part."""
    weights = {RANDOM_PART: 0 if random_known else count_images(steps, 0, random_orders)}
    weights.update({key: count_images(steps, 1, 0) for key in methods})
    return weights


def compare_methods(classifier: KerasClassifier, image: np.ndarray, target: Target,
                    explainers: dict, steps: int = STEPS, measure: Measure = "probability",
                    random_orders: int = RANDOM_ORDERS, seed_text: str | None = None,
                    random_curves: tuple[RandomCurves, RandomCurves] | None = None,
                    progress: ProgressCallback | None = None,
                    part_progress: Callable[[str, float], None] | None = None
                    ) -> tuple[list[MethodScore], RandomCurves, RandomCurves]:
    """Deletion and insertion AUCs of several methods on one image, beside random orders.

    The random orders (the same ones :func:`run_faithfulness` draws for this image)
    are scored first, once; then each method's map and its two curves.

    Args:
        classifier: the classifier.
        image: ``(H, W, 3)`` float 0-255 model input.
        target: the class.
        explainers: method key -> :data:`~saliency_core.trust.randomization.Explainer`.
        steps: steps per curve.
        measure: ``"probability"`` or ``"logit"`` (see :func:`run_faithfulness`).
        random_orders: how many random orders.
        seed_text: seeds the random orders (see :func:`run_faithfulness`).
        random_curves: the random orders' deletion and insertion curves if they were
            scored already (by :func:`run_faithfulness` on this image, class, measure
            and seed): they are reused instead of scored again.
        progress: called with the overall fraction done.
        part_progress: called with ``(part, fraction)``: the part is
            :data:`RANDOM_PART` or a method key, so a page can show a bar for each.

    Returns:
        ``(scores per method, random deletion curves, random insertion curves)``.
    """
    image = np.asarray(image, dtype=np.float32)
    reference = blur_image(image)
    pixels = image.shape[0] * image.shape[1]
    weights = comparison_weights(explainers, steps, random_orders, random_curves is not None)
    total = sum(weights.values())
    done = 0.0

    def reporter(part: str) -> ProgressCallback:
        def tell(fraction: float) -> None:
            if part_progress is not None:
                part_progress(part, fraction)
            report(progress, (done + fraction * weights[part]) / max(total, 1))
        return tell

    if random_curves is not None:
        randoms_deletion, randoms_insertion = random_curves
        if randoms_deletion.curves.shape[1] != steps + 1:
            raise ValueError("the random curves given have another number of steps")
        reporter(RANDOM_PART)(1.0)
    else:
        randoms = draw_random_orders(pixels, random_orders, orders_seed(seed_text, image))
        _, _, random_deletion, random_insertion = score_orders(
            classifier, image, reference, [], randoms, target.class_index, steps, measure,
            reporter(RANDOM_PART))
        randoms_deletion = _random_curves("deletion", random_deletion, steps)
        randoms_insertion = _random_curves("insertion", random_insertion, steps)
    done += weights[RANDOM_PART]
    fractions = _fractions(steps)
    scores = []
    for key, explain in explainers.items():
        start = time.perf_counter()
        tell = reporter(key)
        tell(0.0)
        order = rank_pixels(to_abs_map(explain(classifier, image, target)))
        tell(0.1)  # the map; its curves are the rest
        deletion, insertion, _, _ = score_orders(
            classifier, image, reference, [order], [], target.class_index, steps, measure,
            lambda f, tell=tell: tell(0.1 + 0.9 * f))
        deletion_auc = compute_auc(fractions, deletion[0])
        insertion_auc = compute_auc(fractions, insertion[0])
        scores.append(MethodScore(key, deletion_auc, insertion_auc,
                                  randoms_deletion.beaten_by(deletion_auc),
                                  randoms_insertion.beaten_by(insertion_auc),
                                  time.perf_counter() - start))
        done += weights[key]
    report(progress, 1.0)
    return scores, randoms_deletion, randoms_insertion
