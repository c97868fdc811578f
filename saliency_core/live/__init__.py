"""Live saliency on a camera stream: fit each frame, explain it, draw the overlay.

Nothing here knows about Streamlit or WebRTC. :mod:`.frames` turns one RGB frame
``(H, W, 3)`` into a frame of the same size with the map and the class drawn on it;
:mod:`.worker` runs that on its own thread and only ever on the newest frame (stale
frames are dropped, never queued); :mod:`.stats` measures the achieved rate and delay.
"""

from saliency_core.live.frames import (
    LIVE_METHODS,
    MIN_FRAME_SIDE,
    FrameTooSmallError,
    LiveResult,
    LiveSettings,
    process_frame,
)
from saliency_core.live.stats import LiveStats, StatsSnapshot
from saliency_core.live.worker import LatestFrameWorker, LatestSlot, SettingsBox

__all__ = ["LIVE_METHODS", "MIN_FRAME_SIDE", "FrameTooSmallError", "LatestFrameWorker",
           "LatestSlot", "LiveResult", "LiveSettings", "LiveStats", "SettingsBox",
           "StatsSnapshot", "process_frame"]
