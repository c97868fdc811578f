"""Explain only the newest frame, on a thread of its own, and never queue frames.

Frames arrive faster than a map can be computed. :class:`LatestSlot` holds at most
one waiting frame: a newer frame replaces it (the older one is dropped and
counted), so the worker always starts on the newest frame and the delay stays at
about one map's compute time. The stream's callback calls
:meth:`LatestFrameWorker.submit` and :meth:`LatestFrameWorker.latest`, both of
which return at once; it never waits for a map.

Settings reach the worker through :class:`SettingsBox`, a lock-guarded reference
that the page replaces on each run and the worker reads once per frame, so the
worker never touches the page's state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from saliency_core.live.stats import LiveStats

T = TypeVar("T")
R = TypeVar("R")
_log = logging.getLogger("saliency_studio")


class LatestSlot(Generic[T]):
    """A one-item holder: :meth:`put` replaces what waits there, :meth:`take` waits for it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._item: tuple[T, float] | None = None
        self._closed = False

    def put(self, item: T) -> bool:
        """Hold ``item`` (with its arrival time); ``True`` if it replaced a waiting item."""
        with self._cond:
            replaced = self._item is not None
            self._item = (item, self._clock())
            self._cond.notify()
        return replaced

    def take(self, timeout: float | None = None) -> tuple[T, float] | None:
        """The waiting ``(item, arrival time)``, emptying the slot; ``None`` after
        ``timeout`` seconds without one, or once the slot is closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def empty(self) -> bool:
        """Whether nothing waits."""
        with self._cond:
            return self._item is None

    def close(self) -> None:
        """Wake a waiting :meth:`take` and make every later one return ``None``."""
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class SettingsBox(Generic[T]):
    """A thread-safe reference to the current settings (an immutable object)."""

    def __init__(self, value: T | None = None):
        self._lock = threading.Lock()
        self._value = value

    def set(self, value: T) -> None:
        """Replace the settings; the worker uses them from its next frame on."""
        with self._lock:
            self._value = value

    def get(self) -> T | None:
        """The current settings (``None`` before the first :meth:`set`)."""
        with self._lock:
            return self._value


class LatestFrameWorker(Generic[T, R]):
    """Runs ``process`` on the newest submitted item, on its own daemon thread.

    The thread starts with the first :meth:`submit` and ends by itself after
    ``idle_timeout`` seconds without frames (a closed tab leaves nothing running);
    the next frame starts it again.

    Args:
        process: turns an item (a frame) into a result; may raise, in which case the
            error's message is kept in :attr:`error` and the stream goes on.
        idle_timeout: seconds without a frame before the thread ends.
        clock: monotonic time source.
    """

    def __init__(self, process: Callable[[T], R], idle_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self._process = process
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._slot: LatestSlot[T] = LatestSlot(clock)
        self.stats = LiveStats(clock=clock)
        self._lock = threading.Lock()
        self._result: R | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.error: str | None = None
        self.received = 0
        """Frames offered so far (the page tells a camera that sends nothing from a slow
        start)."""

    def submit(self, item: T, start_thread: bool = True) -> None:
        """Offer the newest frame; a frame still waiting is dropped. Returns at once."""
        self.received += 1
        if self._slot.put(item):
            self.stats.note_dropped()
        if start_thread:
            self._ensure_thread()

    def latest(self) -> R | None:
        """The newest finished result, or ``None`` before the first one."""
        with self._lock:
            return self._result

    def process_next(self, timeout: float | None = 0.0) -> bool:
        """Process the waiting item, if one arrives within ``timeout``; ``True`` if it did."""
        taken = self._slot.take(timeout)
        if taken is None:
            return False
        item, arrived = taken
        started = self._clock()
        try:
            result = self._process(item)
        except Exception as exc:  # the stream must go on; the page shows the message
            _log.exception("Live frame could not be explained")
            self.error = str(exc) or type(exc).__name__
            return True
        finished = self._clock()
        with self._lock:
            self._result = result
        self.error = None
        self.stats.record(finished - started, finished - arrived, finished)
        return True

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="live-saliency",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            if self.process_next(self.idle_timeout):
                continue
            with self._lock:  # idle: end, unless a frame arrived just now
                if self._stopped or self._slot.empty():
                    self._thread = None
                    return

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        with self._lock:
            return self._thread is not None

    def stop(self) -> None:
        """End the thread now; later frames are ignored."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._slot.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
