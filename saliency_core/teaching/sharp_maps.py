"""Why a sharp map can still be wrong: the same lesson as the sanity checks, for a class.

A map persuades by looking like the object. Guided Backpropagation (Springenberg
et al. 2014, arXiv 1412.6806) gives the sharpest outlines of all, yet Adebayo et
al. 2018 ("Sanity Checks for Saliency Maps", arXiv 1810.03292) found it almost
unchanged when the top layers of the model, those that turn features into class
scores, are replaced by random numbers: its sharpness comes from the guided rule
(negative signals are dropped on the way back), which reconstructs the image's
edges, not from what the model learnt. The vanilla gradient, blurrier, does change.

:func:`run_sharp_map_lesson` puts that side by side on the current image: each
method's map for the trained model and for the model with its top block
randomised, over several draws of the random weights, with the Spearman rank
correlation of the two maps (1: the same ranking of pixels, 0: unrelated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saliency_core.methods import Target
from saliency_core.methods.base import ProgressCallback, report
from saliency_core.trust.randomization import (
    DRAWS,
    ModelRandomizer,
    default_seed_text,
    derive_seed,
    make_method_explainer,
)
from saliency_core.trust.similarity import compare_maps, to_abs_map

LESSON_METHODS = ("vanilla", "guided_backprop")
"""The blurry map that depends on the model, and the sharp one that barely does."""


@dataclass(frozen=True)
class SharpMapLesson:
    """Maps of the trained model and of the model with its top block randomised.

    Attributes:
        methods: method keys, one row each.
        block: the block randomised (the model's top, e.g. ``"head"``).
        trained: ``(M, H, W)`` float32 |map| of each method, trained model.
        randomised: ``(M, H, W)`` float32 |map| of each method, first draw.
        spearman: ``(M, R)`` Spearman of |map| between trained and randomised, per draw.
    """

    methods: tuple[str, ...]
    block: str
    trained: np.ndarray
    randomised: np.ndarray
    spearman: np.ndarray


def run_sharp_map_lesson(randomizer: ModelRandomizer, image: np.ndarray, target: Target,
                         methods: Sequence[str] = LESSON_METHODS, draws: int = DRAWS,
                         seed_text: str | None = None,
                         progress: ProgressCallback | None = None) -> SharpMapLesson:
    """Each method's map before and after randomising the model's top block, ``draws`` times.

    The draws use the seeds of the Trust page's cascading check (same image, model and
    draw number), so its first step shows the same numbers.

    Args:
        randomizer: the model copy (its weights are restored afterwards).
        image: ``(H, W, 3)`` float 0-255 at the model's input size.
        target: the class.
        methods: method keys (their default parameters).
        draws: draws of the random weights.
        seed_text: what the seeds derive from (see
            :func:`saliency_core.trust.randomization.run_randomization`).
        progress: called with the fraction done.
    """
    explainers = [make_method_explainer(key) for key in methods]
    top = randomizer.blocks[-1]
    if seed_text is None:
        seed_text = default_seed_text(image, randomizer.model_key or
                                      randomizer.copy_model.name)
    spearman = np.zeros((len(methods), draws))
    with randomizer.session() as copy:
        trained = [explain(copy.classifier, image, target) for explain in explainers]
        randomised = []
        for d in range(draws):
            copy.restore()
            copy.randomize(top, seed=derive_seed(derive_seed(seed_text, "draw", d), top.name))
            for m, explain in enumerate(explainers):
                values = explain(copy.classifier, image, target)
                spearman[m, d] = compare_maps(trained[m], values).spearman
                if d == 0:
                    randomised.append(to_abs_map(values))
            report(progress, (d + 1) / draws)
    return SharpMapLesson(tuple(methods), top.name,
                          np.stack([to_abs_map(v) for v in trained]).astype(np.float32),
                          np.stack(randomised).astype(np.float32), spearman)
