"""Cheap controls: does the map explain *this class*, and is it more than an edge map?

* **Random-class check:** the map of the chosen class is compared with the maps
  of a few other classes picked at random, drawn afresh for each image (seeded by
  the image's digest, so the same image always gets the same classes and two
  images get different ones). Nearly identical maps mean the map does not
  explain the class (it would look the same whatever was asked).
* **Edge-detector control:** Adebayo et al. 2018 (arXiv 1810.03292, sec. 3)
  show that some methods' maps resemble a plain edge detector's output, which
  needs no model at all. The map is compared with a Sobel edge map of the image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from saliency_core.methods import Target
from saliency_core.methods.base import ProgressCallback, report
from saliency_core.tf_adapter import KerasClassifier
from saliency_core.trust.edges import compute_sobel_edges
from saliency_core.trust.randomization import (
    Explainer,
    default_seed_text,
    derive_seed,
    to_signed_map,
)
from saliency_core.trust.similarity import Similarity, compare_maps, compute_spearman, to_abs_map
from saliency_core.trust.verdicts import Verdict, judge_edges, judge_random_classes

RANDOM_CLASSES = 5


@dataclass(frozen=True)
class EdgeResult:
    """The map compared with an edge detector.

    Attributes:
        edges: ``(H, W)`` Sobel edge magnitude of the image.
        similarity: Spearman and SSIM of the map with the edges.
        verdict: the plain-words outcome.
    """

    edges: np.ndarray
    similarity: Similarity
    verdict: Verdict


def check_edges(values: np.ndarray, image: np.ndarray) -> EdgeResult:
    """Compare an attribution ``(H, W, C)`` with the Sobel edges of ``image`` ``(H, W, 3)``."""
    edges = compute_sobel_edges(image)
    similarity = compare_maps(values, edges)
    return EdgeResult(edges, similarity, judge_edges(similarity.spearman))


@dataclass(frozen=True)
class RandomClassResult:
    """The chosen class's map beside the maps of random other classes.

    Attributes:
        classes: the other classes' indices.
        maps: ``(n, H, W)`` float32 absolute maps of those classes.
        similarities: one per other class, to the chosen class's map (|map|).
        spearman_signed: ``(n,)`` Spearman of the signed maps (sum over channels).
        verdict: rests on every class's Spearman of |map| and their spread.
        seconds: time taken.
    """

    classes: tuple[int, ...]
    maps: np.ndarray
    similarities: tuple[Similarity, ...]
    spearman_signed: np.ndarray
    verdict: Verdict
    seconds: float

    @property
    def spearman(self) -> np.ndarray:
        """``(n,)`` Spearman of |map| for each other class."""
        return np.array([s.spearman for s in self.similarities])


def pick_other_classes(num_classes: int, target: Target, count: int = RANDOM_CLASSES,
                       seed: int = 0) -> list[int]:
    """``count`` classes other than the target's (and its contrast), drawn with ``seed``
    (see :func:`check_random_classes` for the per-image seed)."""
    excluded = {target.class_index, target.contrast_index}
    pool = np.array([c for c in range(num_classes) if c not in excluded])
    rng = np.random.default_rng(seed)
    return sorted(int(c) for c in rng.choice(pool, size=min(count, len(pool)), replace=False))


def check_random_classes(classifier: KerasClassifier, explain: Explainer, image: np.ndarray,
                         target: Target, values: np.ndarray | None = None,
                         count: int = RANDOM_CLASSES, seed_text: str | None = None,
                         progress: ProgressCallback | None = None) -> RandomClassResult:
    """Compare the target's map with the maps of ``count`` random other classes.

    Args:
        classifier: the (trained) classifier.
        explain: the attribution method, as an explainer.
        image: ``(H, W, 3)`` float 0-255 model input.
        target: the chosen class.
        values: the chosen class's attribution ``(H, W, C)``, if already computed.
        count: how many other classes.
        seed_text: what the classes' draw is seeded by, normally the image's SHA-256
            (default: the SHA-256 of ``image``'s pixels), so each image gets its own.
        progress: called with the fraction done.
    """
    start = time.perf_counter()
    if values is None:
        values = explain(classifier, image, target)
    if seed_text is None:
        seed_text = default_seed_text(image, "")
    others = pick_other_classes(classifier.num_classes, target, count,
                                derive_seed(seed_text, "classes", bits=32))
    if not others:
        raise ValueError("the model has no other class to compare with")
    maps, similarities, signed = [], [], []
    for i, other in enumerate(others):
        other_values = explain(classifier, image, replace(target, class_index=other,
                                                          contrast_index=None))
        maps.append(to_abs_map(other_values))
        similarities.append(compare_maps(values, other_values))
        signed.append(compute_spearman(to_signed_map(values), to_signed_map(other_values)))
        report(progress, (i + 1) / len(others))
    return RandomClassResult(tuple(others), np.stack(maps).astype(np.float32),
                             tuple(similarities), np.array(signed),
                             judge_random_classes([s.spearman for s in similarities]),
                             time.perf_counter() - start)
