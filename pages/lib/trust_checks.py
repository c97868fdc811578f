"""Cached wrappers for the Trust page's checks (the computations live in saliency_core.trust).

One :class:`~saliency_core.trust.ModelRandomizer` (a second copy of the model's
weights) is kept per model, at most :data:`MAX_RANDOMIZERS` at once. Check results
are kept in a bounded LRU store shared by sessions, keyed by everything that decides
them (the :class:`~pages.lib.caching.MapRequest` of the map: image, model, weights,
fit, method and its parameters, class, score), so a result is computed once per
image, model, class and method. A check that is not stored yet runs as a job in
the server's admission queue (:mod:`pages.lib.jobs`): its cost is checked first,
its place in the queue and progress are shown, and it stops when nobody waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from pages.lib import jobs
from pages.lib.caching import BoundedStore
from saliency_core.methods import METHODS
from saliency_core.methods.base import Work
from saliency_core.safety.budget import OverBudgetError
from saliency_core.safety.jobs import Estimate
from saliency_core.safety.limits import load_limits
from saliency_core.tf_adapter import KerasClassifier
from saliency_core.trust import ModelRandomizer

MAX_RANDOMIZERS = 1
MAX_RESULTS = 48


def map_work(method: str, params: dict, classifier: KerasClassifier) -> Work:
    """The passes of one map of ``method`` at the model's input size."""
    return METHODS[method](**params).work(classifier.input_size)


def estimate_check(classifier: KerasClassifier, label: str,
                   work: Work) -> tuple[Estimate | None, str | None]:
    """``(estimate, None)`` when ``work`` fits the budget, else ``(None, why not)``: a
    check is refused before it runs, with its estimate, like a map."""
    try:
        return jobs.check_work(classifier, label, work), None
    except OverBudgetError as exc:
        return None, str(exc)


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


def run_check(key: tuple, label: str, compute: Callable[[Callable[[float], None]], Any],
              estimate: Estimate | None = None,
              draw: Callable[[float], None] | None = None) -> Any:
    """Run ``compute(progress)`` as a job in the admission queue (its place and progress
    shown) and store its result under ``key``.

    Args:
        estimate: the check's cost, from :func:`pages.lib.jobs.check_work` (which
            refuses it above the budget); without one it is queued as a long job.
        draw: draws the job's progress instead of the one bar (see :func:`run_parts`).
    """
    store = result_store()
    found = store.get(key)
    if found is not None:
        return found

    def run(progress):
        result = compute(progress)
        store.put(key, result)
        return result

    if estimate is None:
        estimate = Estimate(seconds=load_limits().max_job_seconds)
    return jobs.run_job(("check", key), label.lower(), estimate, run, draw=draw)


def run_parts(key: tuple, label: str, parts: dict[str, str], weights: dict[str, float],
              compute: Callable[[Callable[[float], None]], Any],
              estimate: Estimate | None = None) -> Any:
    """:func:`run_check` with one progress bar per part instead of one for the whole job.

    The parts run one after another (the random orders, then each method), and
    ``compute`` reports the overall fraction with these ``weights`` (e.g. images
    scored per part), so each part's own fraction follows from the job's progress:
    the bars are right for every session sharing the job, not only the one that
    started it.

    Args:
        key, label, compute, estimate: as for :func:`run_check`.
        parts: each part's key and its label, in the order they run.
        weights: each part's share of the work, in any unit.
    """
    total = float(sum(weights[part] for part in parts)) or 1.0
    bars: dict[str, Any] = {}

    def draw(fraction: float) -> None:
        done = fraction * total
        for part, name in parts.items():
            if part not in bars:
                bars[part] = st.empty()
            share = min(1.0, max(0.0, done / weights[part])) if weights[part] else 1.0
            done -= weights[part]
            word = "done" if share >= 1 else ("waiting" if share <= 0 else f"{100 * share:.0f}%")
            bars[part].progress(share, text=f"{name}: {word}")

    try:
        return run_check(key, label, compute, estimate, draw=draw)
    finally:
        for bar in bars.values():
            bar.empty()
