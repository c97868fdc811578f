"""One admission queue for the server's model work: bounded, fair, cancellable.

Every visitor shares one server, so heavy work (a map, a sanity check, a Taylor
test, an audit image) does not run in the visitor's own thread. It becomes a
:class:`Job` in the :class:`AdmissionQueue`, which

* runs at most ``max_running`` jobs at once (one per core on a small server),
  plus ``light_slots`` more for jobs estimated to take under ``light_seconds``,
  so a vanilla map is not stuck behind two long SmoothGrads;
* runs at most one job per session at a time, so one visitor cannot fill the
  server with parallel requests;
* admits a job only while the estimated peak memory of all running jobs stays
  within ``memory_bytes`` (a job alone always fits: its own size was checked
  against the budget before it was submitted);
* starts waiting jobs first come, first served, and tells each waiter its place;
* shares one job between everyone who asks for the same result (a classroom
  opening one link computes its map once), keyed by what decides the result;
* cancels a job when nobody waits for it any more: each waiter
  :meth:`~AdmissionQueue.leave`\\ s when its page run ends (a rerun, a changed
  setting, a closed tab), and a job with no waiter for ``grace_seconds`` stops
  at its next :func:`checkpoint`, which the model adapter calls before every
  batch; a queued job is dropped without running;
* stops a job that runs far beyond its estimate (``overrun_factor``), so a wrong
  estimate cannot hold a core for hours.

Nothing here knows about Streamlit or TensorFlow: pages submit plain functions
and poll :class:`Job` for their place and progress.
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

_LOG = logging.getLogger(__name__)


class JobCancelledError(Exception):
    """The job stopped because nobody was waiting for its result any more."""


class JobOverrunError(Exception):
    """The job ran far longer than its estimate and was stopped; the message is for users."""


@dataclass(frozen=True)
class Estimate:
    """What a job is expected to cost, checked before it is admitted.

    Attributes:
        seconds: wall time on this server when it runs alone.
        peak_bytes: memory it adds at its peak (its largest model call).
    """

    seconds: float
    peak_bytes: int = 0


QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class Job:
    """One unit of work in the queue, shared by everyone waiting for its result.

    Attributes:
        key: what decides the result; equal keys share one job.
        session: the session that submitted it (its per-session slot).
        label: what it computes, for people (``"SmoothGrad for tabby"``).
        estimate: its expected cost.
        state: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        progress: the fraction done, in ``[0, 1]``, as the job reports it.
    """

    _ids = itertools.count(1)

    def __init__(self, key: Hashable, session: str, label: str, estimate: Estimate,
                 fn: Callable[[Callable[[float], None]], Any], limit_seconds: float | None):
        self.id = next(self._ids)
        self.key, self.session, self.label, self.estimate = key, session, label, estimate
        self.fn = fn
        self.limit_seconds = limit_seconds
        self.state = QUEUED
        self.progress = 0.0
        self.result: Any = None
        self.error: BaseException | None = None
        # Who waits, by the token each waiter gave (``None`` for an untagged one): a
        # token ``(session, run)`` names one script run of a session (see supersede).
        self._waiting: collections.Counter[Hashable] = collections.Counter()
        self.orphaned_at: float | None = None
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.finished: float | None = None
        self._cancel = threading.Event()
        self._done = threading.Event()

    @property
    def waiters(self) -> int:
        """How many callers wait for the result."""
        return sum(self._waiting.values())

    # -- in the job's own thread ---------------------------------------------
    def report(self, fraction: float) -> None:
        """Record progress (the methods' progress callback); also a checkpoint."""
        self.progress = min(1.0, max(self.progress, float(fraction)))
        self.check()

    def check(self) -> None:
        """Raise if the job must stop: nobody waits, or it overran its limit."""
        if self._cancel.is_set():
            raise JobCancelledError()
        if (self.limit_seconds is not None and self.started is not None
                and time.monotonic() - self.started > self.limit_seconds):
            raise JobOverrunError(
                f"{self.label} took longer than {self.limit_seconds:.0f} s, far beyond its "
                "estimate, so it was stopped to keep the server responsive. Try again when "
                "the server is less busy, or choose lighter settings.")

    # -- anywhere ------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop at its next checkpoint."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job has finished; ``True`` if it has."""
        return self._done.wait(timeout)

    @property
    def finished_ok(self) -> bool:
        return self.state == DONE

    def outcome(self) -> Any:
        """The result, or the job's exception re-raised (:class:`JobCancelledError` too)."""
        if not self._done.is_set():
            raise RuntimeError("the job has not finished")
        if self.state == DONE:
            return self.result
        if self.state == CANCELLED:
            raise JobCancelledError()
        raise self.error  # type: ignore[misc]

    def elapsed(self) -> float:
        """Seconds since it started running (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def _finish(self, state: str) -> None:
        self.state = state
        self.finished = time.monotonic()
        self._done.set()


_CURRENT: contextvars.ContextVar[Job | None] = contextvars.ContextVar("saliency_job",
                                                                     default=None)


def current_job() -> Job | None:
    """The job running in this thread, or ``None`` outside the queue."""
    return _CURRENT.get()


def checkpoint() -> None:
    """Stop here if the current job was cancelled or overran (no-op outside a job).

    The model adapter calls this before every batch, so a job stops within one
    batch once nobody waits for it.
    """
    job = _CURRENT.get()
    if job is not None:
        job.check()


def _abandoned(job: Job) -> bool:
    """Nobody waits for ``job`` any more (since ``job.orphaned_at``), and it is not yet
    cancelled."""
    return not job.waiters and job.orphaned_at is not None and not job.cancelled


def _left_behind(job: Job, session: str, run: Hashable) -> bool:
    """Only earlier script runs of ``session`` wait for ``job``: runs that are being
    stopped because the session has started ``run``. Streamlit starts a rerun in a new
    thread at once and stops the old run at its next element, so the new run can ask
    for its next result before the old one has left the job it was waiting for."""
    return bool(job._waiting) and not job.cancelled and all(
        token is not None and token[0] == session and token[1] != run
        for token in job._waiting)


class AdmissionQueue:
    """The server's queue of model jobs (see the module's docstring).

    Args:
        max_running: jobs that run at once.
        per_session: jobs of one session that run at once.
        memory_bytes: the most memory all running jobs may add, by their estimates.
        light_seconds: a job estimated at most this long is *light*.
        light_slots: extra slots only light jobs may use.
        grace_seconds: how long a job with no waiter lives on (a page rerun that
            asks for the same result again picks it up instead of restarting it).
        overrun_factor, overrun_floor: a running job is stopped after
            ``max(overrun_floor, overrun_factor * sharing * estimate)`` seconds, where
            ``sharing = max_running + light_slots`` is how many jobs may share the CPU
            at once: the estimate is for a job running alone, and a job that shares the
            cores with two others runs up to three times slower without being wrong
            (under a classroom's load, Integrated Gradients was stopped at 4x alone).
    """

    def __init__(self, max_running: int = 2, per_session: int = 1,
                 memory_bytes: int = 2 << 30, light_seconds: float = 1.0,
                 light_slots: int = 1, grace_seconds: float = 2.0,
                 overrun_factor: float = 4.0, overrun_floor: float = 30.0):
        self.max_running, self.per_session = max(1, max_running), max(1, per_session)
        self.memory_bytes = memory_bytes
        self.light_seconds, self.light_slots = light_seconds, max(0, light_slots)
        self.grace_seconds = grace_seconds
        self.overrun_factor, self.overrun_floor = overrun_factor, overrun_floor
        self._lock = threading.Lock()
        self._queued: list[Job] = []
        self._running: list[Job] = []
        self._by_key: dict[Hashable, Job] = {}
        self._janitor: threading.Timer | None = None
        # Jobs the janitor stopped because their session stopped waiting, per session:
        # (key, label), said to that session when it next asks for something else (its
        # rerun can take longer than the grace to reach its next request).
        self._reaped: collections.OrderedDict[str, list[tuple[Hashable, str]]] = \
            collections.OrderedDict()
        self.started_jobs = 0  # for tests and the status line

    @property
    def sharing(self) -> int:
        """How many jobs may run at once, and so share the CPU."""
        return self.max_running + self.light_slots

    # -- public --------------------------------------------------------------
    def submit(self, key: Hashable, session: str, label: str, estimate: Estimate,
               fn: Callable[[Callable[[float], None]], Any], run: Hashable = None) -> Job:
        """Queue ``fn(progress)`` under ``key``, or join the job already computing it.

        The caller becomes one of the job's waiters and must call :meth:`leave`
        (with the same ``run``) when it stops waiting, in a ``finally``. A caller that
        waits from a script run of ``session`` passes that run's token (see
        :meth:`supersede`); callers that do not (a video frame's thread) are never taken
        for a run left behind.
        """
        with self._lock:
            job = self._by_key.get(key)
            if job is None or job.cancelled or job.state not in (QUEUED, RUNNING):
                limit = max(self.overrun_floor,
                            self.overrun_factor * self.sharing * estimate.seconds)
                job = Job(key, session, label, estimate, fn, limit)
                self._by_key[key] = job
                self._queued.append(job)
            job._waiting[self._token(session, run)] += 1
            job.orphaned_at = None
            self._dispatch_locked()
        return job

    def supersede(self, session: str, key: Hashable, run: Hashable = None) -> list[str]:
        """Cancel at once this session's jobs that nobody waits for any more, other than
        ``key``: the session has moved on to ask for something else (a rerun that asks
        for the same key again joins its job instead, within the grace). With ``run``
        (the asking script run's token), a job that only earlier runs of the session
        still wait for counts as abandoned too: those runs are being stopped. Jobs of the
        session that the janitor already stopped after the grace (a rerun can take longer
        than the grace to reach its next request) are named too, once.

        Returns:
            The labels of the jobs stopped, so the page can say so.
        """
        stopped = []
        with self._lock:
            for reaped_key, label in self._reaped.pop(session, []):
                if reaped_key != key:
                    stopped.append(label)
            for job in list(self._queued) + list(self._running):
                if job.session == session and job.key != key and (
                        _abandoned(job) or (run is not None
                                            and _left_behind(job, session, run))):
                    self._stop_locked(job)
                    stopped.append(job.label)
            self._dispatch_locked()
        return stopped

    def leave(self, job: Job, session: str | None = None, run: Hashable = None) -> None:
        """One waiter stops waiting (``session`` and ``run`` as given to :meth:`submit`);
        a job nobody waits for is cancelled after the grace."""
        with self._lock:
            token = self._token(session, run)
            if job._waiting[token] > 1:
                job._waiting[token] -= 1
            else:
                job._waiting.pop(token, None)
            if job.waiters == 0 and job.state in (QUEUED, RUNNING):
                job.orphaned_at = time.monotonic()
                self._schedule_janitor_locked()

    def position(self, job: Job) -> int:
        """0 while it runs (or has finished), else its 1-based place among waiting jobs."""
        with self._lock:
            try:
                return self._queued.index(job) + 1
            except ValueError:
                return 0

    def running_count(self) -> int:
        with self._lock:
            return len(self._running)

    def queued_count(self) -> int:
        with self._lock:
            return len(self._queued)

    def reap(self) -> None:
        """Cancel jobs whose waiters have all been gone longer than the grace."""
        with self._lock:
            self._reap_locked()
            self._dispatch_locked()

    # -- internal ------------------------------------------------------------
    @staticmethod
    def _token(session: str | None, run: Hashable) -> Hashable:
        return None if run is None or session is None else (session, run)

    def _schedule_janitor_locked(self) -> None:
        if self._janitor is not None and self._janitor.is_alive():
            return
        self._janitor = threading.Timer(self.grace_seconds + 0.05, self.reap)
        self._janitor.daemon = True
        self._janitor.start()

    def _reap_locked(self) -> None:
        now = time.monotonic()
        pending = False
        for job in list(self._queued) + list(self._running):
            if not _abandoned(job):
                continue
            if now - job.orphaned_at < self.grace_seconds:
                pending = True
                continue
            self._remember_reaped_locked(job)
            self._stop_locked(job)
        if pending:
            self._janitor = None
            self._schedule_janitor_locked()

    def _stop_locked(self, job: Job) -> None:
        """Cancel ``job``: a running one stops at its next checkpoint, a queued one is
        dropped without running."""
        job.cancel()
        if job.state == QUEUED:
            self._queued.remove(job)
            self._forget_locked(job)
            job._finish(CANCELLED)
            _LOG.info("job %s (%s) dropped from the queue: nobody waits", job.id, job.label)

    def _remember_reaped_locked(self, job: Job, per_session: int = 4,
                                sessions: int = 1000) -> None:
        said = self._reaped.setdefault(job.session, [])
        said.append((job.key, job.label))
        del said[:-per_session]
        self._reaped.move_to_end(job.session)
        while len(self._reaped) > sessions:  # sessions that never ask again
            self._reaped.popitem(last=False)

    def _forget_locked(self, job: Job) -> None:
        if self._by_key.get(job.key) is job:
            del self._by_key[job.key]

    def _is_light(self, job: Job) -> bool:
        return job.estimate.seconds <= self.light_seconds

    def _can_start_locked(self, job: Job) -> bool:
        if sum(1 for r in self._running if r.session == job.session) >= self.per_session:
            return False
        # Light jobs fill the light slots first; heavy jobs use only the general ones.
        heavy = sum(1 for r in self._running if not self._is_light(r))
        light = len(self._running) - heavy
        general_in_use = heavy + max(0, light - self.light_slots)
        if self._is_light(job):
            fits_slot = len(self._running) < self.max_running + self.light_slots
        else:
            fits_slot = general_in_use < self.max_running
        if not fits_slot:
            return False
        used = sum(r.estimate.peak_bytes for r in self._running)
        return not self._running or used + job.estimate.peak_bytes <= self.memory_bytes

    def _dispatch_locked(self) -> None:
        self._reap_locked()
        for job in list(self._queued):
            if job.cancelled:
                self._queued.remove(job)
                self._forget_locked(job)
                job._finish(CANCELLED)
                continue
            if self._can_start_locked(job):
                self._queued.remove(job)
                self._running.append(job)
                job.state, job.started = RUNNING, time.monotonic()
                self.started_jobs += 1
                threading.Thread(target=self._run, args=(job,), daemon=True,
                                 name=f"saliency-job-{job.id}").start()

    def _run(self, job: Job) -> None:
        token = _CURRENT.set(job)
        state = FAILED
        try:
            job.check()
            job.result = job.fn(job.report)
            state = DONE
        except JobCancelledError:
            state = CANCELLED
            _LOG.info("job %s (%s) cancelled after %.1f s: nobody waits", job.id, job.label,
                      job.elapsed())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiters
            job.error = exc
        finally:
            _CURRENT.reset(token)
            with self._lock:
                if job in self._running:
                    self._running.remove(job)
                self._forget_locked(job)
                job._finish(state)
                self._dispatch_locked()


_SERVER_QUEUE: AdmissionQueue | None = None
_SERVER_LOCK = threading.Lock()


def server_queue(factory: Callable[[], AdmissionQueue] | None = None) -> AdmissionQueue:
    """The one queue of this process, made by ``factory`` (or with defaults) at first use."""
    global _SERVER_QUEUE
    with _SERVER_LOCK:
        if _SERVER_QUEUE is None:
            _SERVER_QUEUE = factory() if factory is not None else AdmissionQueue()
        return _SERVER_QUEUE
