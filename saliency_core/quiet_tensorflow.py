"""Start TensorFlow without its start-up lines on stderr.

TensorFlow's C++ runtime writes a few lines to file descriptor 2 when it is
imported and when it first looks for devices (the oneDNN note, "Could not find
cuda drivers", "All log messages before absl::InitializeLog() ..."), twice over
since TF 2.19 (two copies of its logging library), and ``TF_CPP_MIN_LOG_LEVEL``
no longer silences them (tensorflow/tensorflow#100442). They are not for the
user of a command line, and they bury its own messages. So
:func:`import_tensorflow` imports the adapter (and with it TensorFlow and
Keras) and starts the runtime while file descriptor 2 points to a temporary
file, then writes back every captured line except the known start-up notes: a
real warning or error still reaches the user.

This module imports nothing heavy itself; it must run before anything else
imports TensorFlow to have an effect (later calls only import what is missing).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

STARTUP_NOTES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "TensorFlow binary is optimized to use available CPU instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "To enable the following instructions:",
    "Unable to register cu",
    "TF-TRT Warning",
)
"""Parts of the lines TensorFlow prints at every start, whatever the machine does."""


def is_startup_note(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's start-up notes (see :data:`STARTUP_NOTES`)."""
    return any(note in line for note in STARTUP_NOTES)


@contextlib.contextmanager
def _held_back_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; afterwards write back what is not a
    start-up note (Python's ``sys.stderr`` is flushed first, so nothing is reordered)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines()
                    if line.strip() and not is_startup_note(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_tensorflow() -> None:
    """Import the TensorFlow adapter and start TensorFlow's runtime, holding back its
    start-up notes (see the module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Python-side INFO and WARNING lines
    with _held_back_stderr():
        from saliency_core.tf_adapter import start_runtime

        start_runtime()
