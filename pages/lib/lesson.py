"""Cached wrappers for the "How it works" page: the map's steps and the Taylor test.

Both are cached data keyed by the image's hash, the model and its weights, the
fit and the class (plus the test's settings); the classifier and arrays are not
hashed. The Taylor test scores all its nudged images in one batched call, so a
cached result is what makes moving between pages instant.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from saliency_core.methods import Target
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


@st.cache_data(max_entries=16, show_spinner=False)
def cached_steps(digest: str, model_key: str, token: str, fit: str, class_index: int,
                 clip: float, _classifier: KerasClassifier, _model_input: np.ndarray
                 ) -> GradientSteps:
    """Every step of the vanilla map of the class score before softmax."""
    return compute_steps(_classifier, _model_input, Target(class_index), clip)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_taylor_test(digest: str, model_key: str, token: str, fit: str, class_index: int,
                       clip: float, k: int, eps_range: tuple[float, float],
                       _classifier: KerasClassifier, _steps: GradientSteps) -> TaylorTest:
    """The Taylor test for ``k`` pixels, nudged by the 1-2-5 values in ``eps_range``."""
    return run_taylor_test(_classifier, _steps.model_input, _steps.gradient, _steps.reduced,
                           Target(class_index), k, make_epsilons(*eps_range),
                           random_draws=RANDOM_DRAWS)
