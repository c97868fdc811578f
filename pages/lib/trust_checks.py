"""Cached wrappers for the Trust page's checks (the computations live in saliency_core.trust).

One :class:`~saliency_core.trust.ModelRandomizer` (a second copy of the model's
weights) is kept per model, at most :data:`MAX_RANDOMIZERS` at once. Check results
are kept in a bounded LRU store shared by sessions, keyed by everything that decides
them (the :class:`~pages.lib.caching.MapRequest` of the map: image, model, weights,
fit, method and its parameters, class, score), so a result is computed once per
image, model, class and method. A store instead of ``st.cache_data`` because long
checks drive a progress bar drawn outside the cached function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from pages.lib.caching import BoundedStore
from saliency_core.tf_adapter import KerasClassifier
from saliency_core.trust import ModelRandomizer

MAX_RANDOMIZERS = 1
MAX_RESULTS = 48


@st.cache_resource(max_entries=MAX_RANDOMIZERS, show_spinner=False)
def get_randomizer(model_key: str, token: str, _classifier: KerasClassifier) -> ModelRandomizer:
    """The one model copy the randomisation checks assign weights to, per (model, weights)."""
    return ModelRandomizer(_classifier, model_key)


@st.cache_resource
def result_store() -> BoundedStore:
    """Check results shared by all sessions, bounded to :data:`MAX_RESULTS` entries."""
    return BoundedStore(max_entries=MAX_RESULTS)


def cached_result(key: tuple) -> Any | None:
    """A check's stored result, or ``None`` if it has not been computed."""
    return result_store().get(key)


def run_parts(key: tuple, parts: dict[str, str],
              compute: Callable[[Callable[[str, float], None]], Any]) -> Any:
    """Run ``compute(part_progress)`` with one progress bar per part and store its result.

    ``parts`` maps each part's key (as ``compute`` reports it) to its label, in the
    order the bars are drawn; e.g. the random orders, then one bar per method.
    """
    found = result_store().get(key)
    if found is not None:
        return found
    bars = {part: st.progress(0.0, text=f"{label}: waiting") for part, label in parts.items()}

    def tell(part: str, fraction: float) -> None:
        if part in bars:
            word = "done" if fraction >= 1 else f"{100 * fraction:.0f}%"
            bars[part].progress(fraction, text=f"{parts[part]}: {word}")

    try:
        result = compute(tell)
    finally:
        for bar in bars.values():
            bar.empty()
    result_store().put(key, result)
    return result


def run_check(key: tuple, label: str, compute: Callable[[Callable[[float], None]], Any]) -> Any:
    """Run ``compute(progress)`` under a progress bar and store its result under ``key``."""
    found = result_store().get(key)
    if found is not None:
        return found
    bar = st.progress(0.0, text=f"{label}…")
    try:
        result = compute(lambda f: bar.progress(f, text=f"{label}… {100 * f:.0f}%"))
    finally:
        bar.empty()
    result_store().put(key, result)
    return result
