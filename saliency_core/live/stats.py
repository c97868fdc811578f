"""Achieved frame rate, time per map and delay of a live stream, over a sliding window."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StatsSnapshot:
    """The stream's figures at one moment.

    Attributes:
        fps: maps finished within the window, per second of the window.
        seconds_per_map: median time to compute one map over the window.
        delay: median time from a frame's arrival to its overlay being ready.
        maps: maps finished since the start.
        dropped: frames replaced by a newer one before they were explained.
    """

    fps: float
    seconds_per_map: float
    delay: float
    maps: int
    dropped: int


class LiveStats:
    """Thread-safe counters fed by the worker and read by the page.

    Args:
        window: seconds of history the rate and medians are taken over.
        clock: monotonic time source (tests pass their own).
    """

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, float, float]] = deque()
        self._maps = 0
        self._dropped = 0

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()

    def record(self, seconds: float, delay: float, now: float | None = None) -> None:
        """One map finished at ``now``: it took ``seconds``; its frame arrived ``delay`` ago."""
        now = self._clock() if now is None else now
        with self._lock:
            self._recent.append((now, seconds, delay))
            self._maps += 1
            self._trim(now)

    def note_dropped(self, count: int = 1) -> None:
        """``count`` frames were replaced by newer ones before they were explained."""
        with self._lock:
            self._dropped += count

    def snapshot(self, now: float | None = None) -> StatsSnapshot:
        """The current figures; the rate falls to 0 when no map finished within the window."""
        now = self._clock() if now is None else now
        with self._lock:
            self._trim(now)
            recent = list(self._recent)
            maps, dropped = self._maps, self._dropped
        if not recent:
            return StatsSnapshot(0.0, 0.0, 0.0, maps, dropped)
        fps = len(recent) / self.window
        return StatsSnapshot(fps, statistics.median(r[1] for r in recent),
                             statistics.median(r[2] for r in recent), maps, dropped)
