"""Heavy work through the server's admission queue, with the wait shown on the page.

Pages never run a model pass in their own script thread. They check the work
budget first (:func:`check_method`, :func:`check_work`), then hand a plain
function to :func:`run_job`, which submits it to the one
:class:`~saliency_core.safety.jobs.AdmissionQueue` of the server and waits:

* a job that finishes within a moment shows nothing;
* otherwise a progress bar shows the place in the queue ("2 jobs ahead of
  yours"), then the job's own progress;
* the bar is redrawn a few times a second, and every redraw is a point where
  Streamlit stops the script when the visitor reruns, changes a setting or
  closes the tab. The ``finally`` then leaves the job, and a job nobody waits
  for is cancelled at its next batch (:mod:`saliency_core.safety.jobs`);
* each wait is tagged with its script run (the run's thread): Streamlit starts a
  rerun in a new thread before the old run has stopped, and a job only the old
  run still waits for is stopped, and named, as soon as the new run asks for
  something else.

Refusals (:class:`~saliency_core.safety.budget.OverBudgetError`) and overruns are
shown by :func:`pages.lib.layout.guarded` in the project's words; the rest of the
page, and every other visitor, carries on.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Hashable
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from saliency_core.methods import METHODS, Work
from saliency_core.safety import budget
from saliency_core.safety.jobs import AdmissionQueue, Estimate, Job, server_queue
from saliency_core.safety.limits import Limits, load_limits
from saliency_core.tf_adapter import KerasClassifier

SHOW_AFTER_SECONDS = 0.2
REDRAW_SECONDS = 0.25
LIGHT = Estimate(seconds=0.2, peak_bytes=0)
"""The estimate of small bookkeeping jobs (reading a photo: its worker is bounded)."""


def _make_queue() -> AdmissionQueue:
    limits = load_limits()
    return AdmissionQueue(max_running=limits.max_running_jobs,
                          per_session=limits.max_jobs_per_session,
                          memory_bytes=limits.job_memory_bytes)


def queue() -> AdmissionQueue:
    """The server's admission queue (one per process)."""
    return server_queue(_make_queue)


def session_id() -> str:
    """This browser session's id (its slot in the queue)."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "no-session"


def _status(q: AdmissionQueue, job: Job) -> str:
    place = q.position(job)
    if place:
        running = q.running_count()
        others = "1 other job" if running == 1 else f"{running} other jobs"
        return (f"In the queue, place {place}: the server is computing {others}; "
                f"{job.label} starts when a slot is free.")
    return f"Computing {job.label}… {100 * job.progress:.0f}%"


def run_job(key: Hashable, label: str, estimate: Estimate,
            compute: Callable[[Callable[[float], None]], Any],
            draw: Callable[[float], None] | None = None) -> Any:
    """Run ``compute(progress)`` in the queue and wait for it, showing the wait.

    Args:
        key: what decides the result; sessions asking for the same key share one job.
        label: what it computes, for people.
        estimate: its cost, checked against the budget before (see :func:`check_method`).
        compute: a pure function of a progress callback; it runs in a job thread,
            so it must not call Streamlit.
        draw: if given, draws the job's progress (a fraction) once it runs, instead of
            the one bar (e.g. a bar per part); called in the script thread, and the
            caller clears what it drew.

    Returns:
        ``compute``'s result.
    """
    q = queue()
    session, run = session_id(), threading.get_ident()  # this script run's thread
    stopped = q.supersede(session, key, run)
    if stopped:  # never silently: the page says what it stopped, and for what
        said = f"Stopped {', '.join(stopped)}: you asked for {label} instead."
        st.toast(said, icon=":material/stop_circle:")
        st.caption(f":material/stop_circle: {said}")  # stays where the new result appears
    job = q.submit(key, session, label, estimate, compute, run)
    try:
        if not job.wait(SHOW_AFTER_SECONDS):
            slot = st.empty()
            while not job.wait(REDRAW_SECONDS):
                if draw is not None and not q.position(job):
                    slot.empty()
                    draw(job.progress)  # a point where a rerun stops us, too
                else:
                    slot.progress(job.progress, text=_status(q, job))  # a rerun stops us here
            slot.empty()
    finally:
        q.leave(job, session, run)
    return job.outcome()


def ensure_cost(classifier: KerasClassifier) -> budget.ModelCost:
    """The classifier's measured cost (registered models are timed here once if the
    server's warm-up has not done it yet; own models were measured in their check)."""
    if classifier.cost is None:
        from saliency_core.models.cost import measure_time

        classifier.cost = measure_time(classifier)
    return classifier.cost


def check_work(classifier: KerasClassifier, label: str, work: Work,
               limits: Limits | None = None) -> Estimate:
    """The estimate of ``work`` on ``classifier``, or :class:`OverBudgetError`."""
    return budget.check_work(label, work, ensure_cost(classifier), classifier.batch_size,
                             limits or load_limits())


def check_method(classifier: KerasClassifier, method: str, params: dict, repeats: int = 1,
                 label: str | None = None, extra: Work | None = None,
                 max_seconds: float | None = None) -> Estimate:
    """The estimate of ``repeats`` maps of ``method`` (plus ``extra`` passes), with advice
    on what to change when it is above the budget (``max_seconds`` instead of
    ``Limits.max_job_seconds``, e.g. for one live frame)."""
    limits = load_limits()
    if max_seconds is not None:
        limits = dataclasses.replace(limits, max_job_seconds=max_seconds)
    cls = METHODS[method]
    cost = ensure_cost(classifier)
    if extra is None:
        return budget.check_method(cls, params, classifier.input_size, cost,
                                   classifier.batch_size, limits, label=label, repeats=repeats)
    work = cls(**params).work(classifier.input_size) * repeats + extra
    return budget.check_work(label or cls.label, work, cost, classifier.batch_size, limits)
