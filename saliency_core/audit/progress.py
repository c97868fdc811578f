"""The command line's progress on stderr, drawn by tqdm.

On a terminal, tqdm's bar is redrawn in place (``35/100 [00:08<00:15, 4.2img/s]``)
and messages (a skipped file) print above it. Anywhere else (a log file, a pipe,
CI), a redrawn line would pile up as one endless line of carriage returns, so each
update is written as a line of its own, at most one every :data:`LOG_EVERY_SECONDS`
and always the last one, with the same figures.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

LOG_EVERY_SECONDS = 5.0
"""Seconds between progress lines when the stream is not a terminal."""


class _OneLinePerUpdate:
    """A stream for tqdm that turns each redraw (``"\\r" + text + padding``) into a line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.split("\r"):
            line = part.strip()
            if line:
                self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Images done out of ``total``, with rate and time left.

    Args:
        total: the number of images.
        stream: where to report (default ``sys.stderr``).
        terminal: draw in place; default: whether ``stream`` is a terminal.
        log_every: seconds between lines when not drawing in place (0: every update).
    """

    def __init__(self, total: int, stream: TextIO | None = None, terminal: bool | None = None,
                 log_every: float = LOG_EVERY_SECONDS):
        self.stream = stream or sys.stderr
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self._bar = tqdm(total=max(0, int(total)), unit="img", file=(
            self.stream if self.terminal else _OneLinePerUpdate(self.stream)),
            mininterval=0.1 if self.terminal else log_every, dynamic_ncols=self.terminal,
            ascii=not self.terminal, leave=self.terminal)

    @property
    def done(self) -> int:
        """Images counted so far."""
        return int(self._bar.n)

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more images."""
        self._bar.update(steps)

    def message(self, text: str) -> None:
        """Print ``text`` on a line of its own (above the bar on a terminal)."""
        if self.terminal:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Show the final count (once) and end the bar's line."""
        if not self.terminal and self._bar.last_print_n != self._bar.n:
            self._bar.refresh()
        self._bar.close()
