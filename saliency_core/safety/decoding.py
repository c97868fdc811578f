"""Decode untrusted photos in small worker processes that can be killed.

A decoder is C code: once Pillow hands a file to libjpeg or zlib, nothing in
Python can interrupt it, and whatever it allocates belongs to the process that
called it. So the server never decodes a visitor's photo itself. The structural
walkers of :mod:`saliency_core.safety.images` first refuse what they can see
cheaply (too many scans, markers, pages, pixels); then the bytes go to a worker:

* a fresh interpreter (``python -m saliency_core.safety.decode_worker``) that
  imports only Pillow and NumPy, then caps its own address space (``RLIMIT_AS``)
  at what it maps plus :attr:`Limits.decode_memory_bytes`;
* it decodes with :func:`saliency_core.imaging.decode_image`, the same code that
  would otherwise run in the server, and sends back the small, already
  downscaled RGB array (at most 1024 pixels a side) and its notes;
* the parent waits at most :attr:`Limits.decode_timeout_seconds`, checking every
  tenth of a second whether the job that asked still has someone waiting
  (:func:`saliency_core.safety.jobs.checkpoint`). A timeout, a cancelled job, a
  crash or a worker out of memory kills the worker's process group: the decode
  stops at once and takes its memory with it.

Workers are reused (starting one costs a few tenths of a second) and replaced
after :data:`MAX_USES` decodes; at most ``size`` run at once per process. Requests
and answers are a JSON line followed by raw bytes (no pickle).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from saliency_core.safety.jobs import checkpoint
from saliency_core.safety.limits import Limits, format_bytes, load_limits

MAX_USES = 200
"""Decodes one worker serves before it is replaced (bounds what it can accumulate)."""

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_MAX_HEADER = 1 << 16
_LOG = logging.getLogger(__name__)


class DecodeError(ValueError):
    """The photo could not be decoded; the message is for users."""


# ---------------------------------------------------------------- in the parent


class _Worker:
    def __init__(self, memory_bytes: int):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.update(SALIENCY_DECODE_MEMORY=str(int(memory_bytes)), MALLOC_ARENA_MAX="1",
                   PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
        # -P: the working directory stays off sys.path, so the worker imports the same
        # saliency_core as this process (PYTHONPATH above), never a folder of that name
        # wherever the app, the command line or a notebook was started.
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "saliency_core.safety.decode_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True, bufsize=0)
        self.uses = 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def decode(self, request: dict, data: bytes, timeout: float) -> tuple[dict, bytes]:
        """Send one request; the answer's header and payload. Raises on timeout/crash."""
        self.uses += 1
        deadline = time.monotonic() + timeout
        header = json.dumps({**request, "size": len(data)}).encode() + b"\n"
        writer = threading.Thread(target=self._write, args=(header + data,), daemon=True)
        writer.start()  # a large file fills the pipe before the worker has read it all
        fd = self.process.stdout.fileno()
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            answer: dict | None = None
            needed = None
            while True:
                checkpoint()  # stop (and kill) when nobody waits for this photo
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                if not selector.select(min(0.1, remaining)):
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise EOFError()
                buffer += chunk
                if answer is None:
                    if b"\n" not in buffer:
                        if len(buffer) > _MAX_HEADER:
                            raise EOFError()
                        continue
                    line, buffer = buffer.split(b"\n", 1)
                    answer = json.loads(line)
                    shape = answer.get("shape")
                    needed = int(np.prod(shape)) if shape else 0
                if needed is not None and len(buffer) >= needed:
                    return answer, buffer[:needed]

    def _write(self, payload: bytes) -> None:
        try:
            self.process.stdin.write(payload)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the reader sees the worker die


class DecodePool:
    """At most ``size`` decoding workers, reused, each killed on timeout or cancellation."""

    def __init__(self, size: int = 2):
        self.size = max(1, size)
        self._slots = threading.BoundedSemaphore(self.size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self.killed = 0  # workers killed (timeout, crash, cancellation), for tests and logs

    def _take(self, memory_bytes: int) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
        return _Worker(memory_bytes)

    def _give_back(self, worker: _Worker) -> None:
        if worker.uses >= MAX_USES or not worker.alive():
            worker.kill()
            return
        with self._lock:
            self._idle.append(worker)

    def warm(self, limits: Limits | None = None) -> None:
        """Start one worker now (unless one is idle already), so the first photo does not
        wait for its start."""
        with self._lock:
            if any(worker.alive() for worker in self._idle):
                return
        limits = limits or load_limits()
        worker = _Worker(limits.decode_memory_bytes)
        self._give_back(worker)

    def decode(self, data: bytes, max_pixels: int, display_max_side: int,
               limits: Limits) -> tuple[dict, np.ndarray]:
        """Decode ``data`` in a worker; ``(answer, pixels (H, W, 3) uint8)``.

        Raises:
            DecodeError: the decoder refused the file, ran out of memory, crashed
                or took too long (the message says which, for users).
        """
        while not self._slots.acquire(timeout=0.1):
            checkpoint()
        worker = None
        started = time.monotonic()
        outcome = "crashed"
        try:
            worker = self._take(limits.decode_memory_bytes)
            request = {"max_pixels": max_pixels, "display_max_side": display_max_side,
                       "limits": dataclasses.asdict(limits)}
            try:
                answer, payload = worker.decode(request, data, limits.decode_timeout_seconds)
            except TimeoutError:
                outcome = "timed out"
                raise DecodeError(
                    f"Decoding the image took longer than {limits.decode_timeout_seconds:g} s, "
                    "so it was stopped; the file may be built to stall the server.") from None
            except EOFError:
                raise DecodeError(
                    "The image's decoder stopped (it ran out of memory or crashed), so the "
                    "file is refused to protect the server.") from None
            if answer.get("error") == "memory":
                outcome = "out of memory"
                raise DecodeError(
                    f"The image needs more than {format_bytes(limits.decode_memory_bytes)} "
                    "to decode, so it is refused to protect the server.")
            if "error" in answer:
                outcome = "refused"
                raise DecodeError(answer["error"])
            outcome = "ok"
            pixels = np.frombuffer(payload, np.uint8).reshape(answer["shape"]).copy()
            return answer, pixels
        except BaseException:
            if outcome not in ("refused", "out of memory") and worker is not None:
                worker.kill()  # a timeout, crash or cancelled job: the process goes
                self.killed += 1
                worker = None
            raise
        finally:
            if worker is not None:
                self._give_back(worker)
            self._slots.release()
            _LOG.debug("decode in worker: %s after %.2f s", outcome,
                       time.monotonic() - started)

    def close(self) -> None:
        """Stop the idle workers."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


_POOL: DecodePool | None = None
_POOL_LOCK = threading.Lock()


def decode_pool() -> DecodePool:
    """This process's pool of decoding workers (as many as ``max_running_jobs``)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = DecodePool(load_limits().max_running_jobs)
        return _POOL


def decode_in_worker(data: bytes, max_pixels: int, display_max_side: int,
                     limits: Limits | None = None) -> tuple[dict, np.ndarray]:
    """:meth:`DecodePool.decode` on this process's pool."""
    return decode_pool().decode(data, max_pixels, display_max_side, limits or load_limits())
