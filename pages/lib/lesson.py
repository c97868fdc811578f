"""Cached wrappers for the "How it works" page: the map's steps and the Taylor test.

Both are stored in bounded stores shared by sessions, keyed by the image's hash,
the model and its weights, the fit and the class (plus the test's settings). A
result not stored yet is computed as a job in the server's admission queue
(:mod:`pages.lib.jobs`), its cost checked first. The Taylor test scores all its
nudged images in one batched call, so a stored result is what makes moving
between pages instant.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from pages.lib import jobs
from pages.lib.caching import BoundedStore
from saliency_core.methods import Target, Work
from saliency_core.teaching import (
    GradientSteps,
    TaylorTest,
    compute_steps,
    make_epsilons,
    run_taylor_test,
)
from saliency_core.tf_adapter import KerasClassifier

RANDOM_DRAWS = 3
"""Random selections averaged per nudge size."""


@st.cache_resource
def lesson_store() -> BoundedStore:
    """Steps and Taylor tests of all sessions, bounded to 32 entries."""
    return BoundedStore(max_entries=32)


def _stored(key: tuple, label: str, work: Work, classifier: KerasClassifier, compute):
    store = lesson_store()
    found = store.get(key)
    if found is not None:
        return found
    estimate = jobs.check_work(classifier, label, work)

    def run(progress):
        result = compute()
        store.put(key, result)
        return result

    return jobs.run_job(key, label, estimate, run)


def cached_steps(digest: str, model_key: str, token: str, fit: str, class_index: int,
                 clip: float, classifier: KerasClassifier, model_input: np.ndarray
                 ) -> GradientSteps:
    """Every step of the vanilla map of the class score before softmax."""
    return _stored(("steps", digest, model_key, token, fit, class_index, clip),
                   "the map's steps", Work(gradient=1, forward=1), classifier,
                   lambda: compute_steps(classifier, model_input, Target(class_index), clip))


def cached_taylor_test(digest: str, model_key: str, token: str, fit: str, class_index: int,
                       clip: float, k: int, eps_range: tuple[float, float],
                       classifier: KerasClassifier, steps: GradientSteps) -> TaylorTest:
    """The Taylor test for ``k`` pixels, nudged by the 1-2-5 values in ``eps_range``."""
    epsilons = make_epsilons(*eps_range)
    work = Work(forward=1 + len(epsilons) * (2 + RANDOM_DRAWS))
    return _stored(("taylor", digest, model_key, token, fit, class_index, clip, k, eps_range),
                   "the Taylor test", work, classifier,
                   lambda: run_taylor_test(classifier, steps.model_input, steps.gradient,
                                           steps.reduced, Target(class_index), k, epsilons,
                                           random_draws=RANDOM_DRAWS))
