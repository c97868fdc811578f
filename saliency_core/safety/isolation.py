"""Open untrusted model and weights files in a child process with a memory limit.

The pre-flight checks bound what a file *declares*; this is the second line,
and the only defence against a hang inside the HDF5 library. The child:

* is a fresh Python interpreter (``python -m saliency_core.safety.isolation``,
  the "spawn" way of starting a process): nothing is forked from the server,
  which has TensorFlow and its threads loaded, and unlike ``multiprocessing``
  nothing re-runs the server's main script. Requests and answers are JSON
  lines on the child's stdin and stdout (no pickle);
* limits its own address space (``RLIMIT_AS``) to what it has mapped after
  importing its libraries plus :attr:`Limits.isolation_memory_bytes`, with
  glibc's malloc arenas capped so threads do not reserve address space;
* first walks the HDF5 file (:mod:`saliency_core.safety.hdf5`) within
  :attr:`Limits.isolation_walk_timeout_seconds`, then imports Keras, builds
  the model, compares its weight shapes with the file, loads the weights and
  (for uploaded models) measures a forward and a backward pass at batch 1 and
  2 (:mod:`saliency_core.models.cost`), all within
  :attr:`Limits.isolation_timeout_seconds`. The tasks are named in
  :data:`TASKS` and live with the model code (:mod:`saliency_core.models.checks`).

The parent kills the child's process group on timeout, and when the job that
asked for the check is cancelled (the visitor left). A child that runs out
of memory, crashes or hangs gives a clean refusal; the server and every other
session keep running. Only a file that passed here is then opened in the
server. At most :data:`MAX_CONCURRENT_CHECKS` children run at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from saliency_core.safety.errors import UnsafeUploadError, is_out_of_memory
from saliency_core.safety.hdf5 import WeightsMismatchError
from saliency_core.safety.jobs import checkpoint
from saliency_core.safety.limits import Limits, format_bytes
from saliency_core.safety.rlimits import limit_address_space, peak_resident_mb

MAX_CONCURRENT_CHECKS = 2
"""At most this many checks run at once, so parallel uploads cannot multiply the memory limit."""

_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_MAX_MESSAGE_BYTES = 1 << 20
_LOG = logging.getLogger(__name__)


class IsolatedLoadError(Exception):
    """The file is not hostile as far as the checks can tell, but it did not load.

    ``str(exc)`` is the project's own one-line sentence for the user; ``detail`` is
    the library's wording, for the log only (it can name classes, paths and advice
    meant for the model's author, not for a visitor).
    """

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


BUILD_MESSAGE = ("The model's layers could not be built from its description (config.json): "
                 "a layer has a setting Keras does not accept, for example a size that is "
                 "not a whole number. Save the model again with model.save('name.keras').")
UNKNOWN_MESSAGE = ("The model uses custom layers or functions that this app does not know; "
                   "only built-in Keras layers are supported.")
WEIGHTS_MESSAGE = ("The model's weights could not be loaded into its layers: the weights file "
                   "in the archive is damaged or belongs to another model.")
RUN_MESSAGE = ("The model failed on a test image: its layers do not fit together for an "
               "image input.")
OPEN_MESSAGE = "The file could not be opened as a model."
"""The project's own sentences for a model that did not load; the cause is logged."""


def classify_load_failure(exc: BaseException, fallback: str) -> IsolatedLoadError:
    """The user's sentence for a library exception while loading a model (``fallback``
    unless it is about Python code or unknown objects), with the library text as detail.
    """
    from saliency_core.safety.keras_archive import CODE_MESSAGE

    text = str(exc)
    detail = f"{type(exc).__name__}: {' '.join(text.split())[:2000]}"
    if isinstance(exc, RecursionError):
        return IsolatedLoadError("The model's description is nested too deeply to build.",
                                 detail)
    if any(word in text for word in ("Lambda", "lambda", "safe_mode", "Python code")):
        return IsolatedLoadError(CODE_MESSAGE, detail)
    if "Unknown" in text or "custom" in text.lower():
        return IsolatedLoadError(UNKNOWN_MESSAGE, detail)
    return IsolatedLoadError(fallback, detail)


@contextlib.contextmanager
def failing_as(message: str) -> Iterator[None]:
    """Turn a library exception in the block into an :class:`IsolatedLoadError` with the
    project's sentence (memory errors and the checks' own refusals pass through)."""
    try:
        yield
    except (MemoryError, UnsafeUploadError, IsolatedLoadError):
        raise
    except Exception as exc:
        if is_out_of_memory(exc):  # e.g. TensorFlow's OOM while building a huge layer
            raise MemoryError() from exc
        raise classify_load_failure(exc, message) from exc


# ----------------------------------------------------------------- in the child


def import_keras(limits: Limits):
    """Import Keras under the memory limit, then give the load its own budget.

    The server has Keras, so a failure to import it here (``failed to map
    segment``) means the address-space limit was too small: reported as such.
    """
    try:
        import keras
    except (ImportError, OSError) as exc:
        raise MemoryError() from exc
    limit_address_space(limits.isolation_memory_bytes)
    return keras


TASKS = {
    "keras_archive": "saliency_core.models.checks:check_keras_archive_in_child",
    "weights": "saliency_core.models.checks:check_weights_in_child",
}
"""The tasks a child may run, by name: ``module:function(args, limits, phase) -> dict``.

They are named, not imported, so this runner does not depend on the model code
it runs (the models package imports the runner, never the other way round).
"""


def _task(name: str) -> Callable[[dict, Limits, Callable[[str], None]], dict]:
    module, function = TASKS[name].split(":")
    return getattr(importlib.import_module(module), function)


def child_main() -> None:
    """Entry point of the child process: one request on stdin, JSON lines on stdout."""
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the channel

    def send(kind: str, value: object = "", detail: str = "") -> None:
        channel.write(json.dumps({"kind": kind, "value": value, "detail": detail,
                                  "peak_mb": peak_resident_mb()}) + "\n")

    try:
        request = json.loads(sys.stdin.read(_MAX_MESSAGE_BYTES))
        limits = Limits(**request["limits"])
        args = request["args"]
        tempfile.tempdir = args["workdir"]
        limit_address_space(limits.isolation_memory_bytes)
        send("phase", "walk")
        send("ok", _task(request["task"])(args, limits, lambda name: send("phase", name)))
    except WeightsMismatchError as exc:
        send("failed", str(exc))
    except UnsafeUploadError as exc:
        send("refused", str(exc))
    except MemoryError:
        send("memory")
    except IsolatedLoadError as exc:
        send("failed", str(exc), exc.detail)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        if is_out_of_memory(exc):
            send("memory")
            return
        failure = classify_load_failure(exc, OPEN_MESSAGE)
        send("failed", str(failure), failure.detail)
    finally:
        channel.close()


# ---------------------------------------------------------------- in the parent


def _memory_message(limits: Limits) -> str:
    return (f"Checking the file needed more than the memory limit "
            f"({format_bytes(limits.isolation_memory_bytes)}), so it is refused to protect "
            "the server.")


def run_isolated(task: str, args: dict, limits: Limits) -> dict:
    """Run one check task in a child process under the memory limit and timeouts.

    Args:
        task: a name in :data:`TASKS`.
        args: the task's arguments; ``args["workdir"]`` is a private folder
            the child uses as its temporary directory.
        limits: the limits in force.

    Returns:
        The task's small result dictionary.

    Raises:
        UnsafeUploadError: refused by a check, out of memory, timed out or crashed.
        IsolatedLoadError: the file did not load for an ordinary reason.
    """
    deadline = time.monotonic() + limits.isolation_timeout_seconds
    while not _SLOTS.acquire(timeout=0.25):
        checkpoint()  # the visitor left while waiting
        if time.monotonic() > deadline:
            raise UnsafeUploadError("The server is busy checking other uploads; try again in "
                                    "a minute.")
    try:
        return _run(task, args, limits)
    finally:
        _SLOTS.release()


def _child_env(workdir: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(TMPDIR=workdir, MALLOC_ARENA_MAX="2", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONDONTWRITEBYTECODE="1", CUDA_VISIBLE_DEVICES="")
    return env


def _run(task: str, args: dict, limits: Limits) -> dict:
    request = json.dumps({"task": task, "args": args,
                          "limits": dataclasses.asdict(limits)}).encode("utf-8")
    start, peak = time.monotonic(), 0.0
    process = subprocess.Popen(
        [sys.executable, "-m", __spec__.name if __spec__ else "saliency_core.safety.isolation"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=args["workdir"], env=_child_env(args["workdir"]), start_new_session=True)
    selector = selectors.DefaultSelector()
    try:
        process.stdin.write(request)
        process.stdin.close()
        selector.register(process.stdout, selectors.EVENT_READ)
        phase, buffer, outcome = "start", b"", "crashed"
        while True:
            checkpoint()  # nobody waits for this check any more: the child is killed below
            walking = phase in ("start", "walk")
            timeout = (limits.isolation_walk_timeout_seconds if walking
                       else limits.isolation_timeout_seconds)
            remaining = start + timeout - time.monotonic()
            if remaining <= 0:
                outcome, peak = "timed out", max(peak, peak_resident_mb(process.pid))
                what = "reading the file's structure" if walking else "loading it"
                raise UnsafeUploadError(
                    f"Checking the file took longer than {math.ceil(timeout)} s ({what}); it "
                    "may be damaged or built to stall the server, so it is refused.")
            if not selector.select(timeout=min(remaining, 0.25)):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                raise _crash(process)
            buffer += chunk
            if len(buffer) > _MAX_MESSAGE_BYTES:
                raise UnsafeUploadError("Checking the file stopped unexpectedly, so it is "
                                        "refused.")
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                kind, value = message["kind"], message["value"]
                peak, outcome = max(peak, float(message.get("peak_mb", 0))), kind
                if kind == "phase":
                    phase = value
                elif kind == "ok":
                    return value
                elif kind == "refused":
                    raise UnsafeUploadError(value)
                elif kind == "memory":
                    raise UnsafeUploadError(_memory_message(limits))
                else:
                    detail = str(message.get("detail", ""))
                    if detail:  # the library's words go to the log, never to the user
                        _LOG.warning("isolated %s check: %s (%s)", task, value, detail)
                    raise IsolatedLoadError(value, detail)
    except BrokenPipeError:
        raise _crash(process) from None
    finally:
        selector.close()
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
        process.stdout.close()
        seconds = time.monotonic() - start
        _LOG.info("isolated %s check: %s after %.1f s, child peak %.0f MB", task, outcome,
                  seconds, peak, extra={"checker_peak_mb": peak, "checker_seconds": seconds})


def _crash(process: subprocess.Popen) -> UnsafeUploadError:
    try:
        code = process.wait(2)
    except subprocess.TimeoutExpired:
        code = None
    if code is not None and code < 0 and -code in (signal.SIGKILL, signal.SIGABRT,
                                                   signal.SIGSEGV, signal.SIGBUS):
        return UnsafeUploadError(
            "Checking the file stopped the check process (it ran out of memory or crashed), "
            "so the file is refused to protect the server.")
    return UnsafeUploadError("Checking the file stopped unexpectedly, so it is refused.")


def make_workdir(prefix: str) -> str:
    """A private temporary folder for one load; remove it with :func:`remove_workdir`."""
    return tempfile.mkdtemp(prefix=f"saliency-{prefix}-")


def remove_workdir(path: str) -> None:
    """Remove a folder made by :func:`make_workdir` and everything in it."""
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    # Run the importable module's child_main, not this __main__ copy's: the tasks raise
    # saliency_core.safety.isolation.IsolatedLoadError, which must be the class caught.
    from saliency_core.safety.isolation import child_main as _child_main

    _child_main()
