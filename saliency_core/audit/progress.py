"""A small text progress bar for the terminal (stderr), no dependency."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``[#######.............]  35/100  4.2 img/s  ETA 15 s`` redrawn in place.

    Drawn only when ``stream`` is a terminal (or ``force`` is set), so logs and
    pipes get the one-line messages only. :meth:`message` prints a line above the bar.

    Args:
        total: the number of steps.
        stream: where to draw (default ``sys.stderr``).
        force: draw even when ``stream`` is not a terminal.
        width: characters of the bar itself.
    """

    def __init__(self, total: int, stream: TextIO | None = None, force: bool = False,
                 width: int = 30):
        self.total = max(0, int(total))
        self.stream = stream or sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.done = 0
        self._start = time.monotonic()
        self._shown = ""

    def render(self) -> str:
        """The bar's current text (without the carriage return)."""
        fraction = self.done / self.total if self.total else 1.0
        filled = int(round(fraction * self.width))
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = f"ETA {eta:.0f} s" if eta == eta else "ETA -"
        digits = len(str(self.total))
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done:>{digits}}/"
                f"{self.total}  {rate:.1f} img/s  {eta_text}")

    def _draw(self) -> None:
        if self.enabled:
            text = self.render()
            self.stream.write("\r" + text + " " * max(0, len(self._shown) - len(text)))
            self.stream.flush()
            self._shown = text

    def advance(self, steps: int = 1) -> None:
        """Mark ``steps`` more steps done and redraw."""
        self.done = min(self.total, self.done + steps)
        self._draw()

    def message(self, text: str) -> None:
        """Print ``text`` on its own line, keeping the bar below it."""
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * len(self._shown) + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self._shown:
            self._draw()

    def close(self) -> None:
        """Finish the bar's line."""
        if self.enabled and self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = ""
