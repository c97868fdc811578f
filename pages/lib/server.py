"""The server around the pages: warm at start, upload quotas, orphan uploads freed.

``app.py`` builds an ``st.App`` from these parts; ``streamlit run app.py`` serves it.

* :func:`lifespan` runs when the server starts, before any browser connects: it
  removes the weights files that sessions of an earlier run uploaded, and
  loads the default model, times its passes (the work budget needs them), traces
  its score, gradient and Grad-CAM functions and starts a photo-decoding worker,
  on a background thread, so the first visitor's wait does not include any of it.
  :func:`warm_state` tells a page whether that is done (the log says so too).
* :class:`UploadQuota` is ASGI middleware on Streamlit's upload endpoint
  (``PUT /_stcore/upload_file/<session>/<file>``): a session may hold at most
  ``Limits.max_session_upload_bytes`` there, all sessions together
  ``Limits.max_upload_store_bytes``. It counts the bytes as they arrive, so a
  missing or false ``Content-Length`` does not get past it; a refused upload gets
  ``413`` with a one-line reason, and the app keeps running.
* Streamlit keeps every file sent to that endpoint until the session ends, even
  one no widget ever asked for. :func:`sweep_orphan_uploads` (every few seconds)
  frees the files no widget has read (``get_files``) within
  ``Limits.orphan_upload_seconds``.

A public server still wants a reverse proxy in front (TLS, request rates,
connection counts, body sizes): see docs/safety.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from streamlit.runtime import Runtime

from saliency_core.safety.limits import format_bytes, load_limits

_LOG = logging.getLogger("saliency_studio")
UPLOAD_PREFIX = "/_stcore/upload_file/"
SWEEP_EVERY_SECONDS = 5.0


# ------------------------------------------------------------------ warm start


@dataclass
class WarmState:
    """What the start-up warm-up has done, for pages and tests."""

    started: float = field(default_factory=time.monotonic)
    ready: threading.Event = field(default_factory=threading.Event)
    seconds: float | None = None
    error: str | None = None


_WARM = WarmState()


def warm_state() -> WarmState:
    """The warm-up's state (``ready`` is set once the default model is traced)."""
    return _WARM


def warm_up() -> None:
    """Load, time and trace the default model and start a decoding worker (a thread).

    The state turns ready as soon as a visitor's first page needs nothing more (the
    model, its measured cost, its score and gradient functions); Grad-CAM's layer
    function is traced after that (1.5 s on two cores), since only Grad-CAM maps need it.
    """
    classifier = None
    try:
        from pages.lib import caching  # imports TensorFlow: most of the warm-up
        from pages.lib.own_models import weights_token
        from saliency_core.models.registry import DEFAULT_MODEL_KEY
        from saliency_core.safety.decoding import decode_pool

        imported = time.monotonic() - _WARM.started
        decode_pool().warm()
        classifier = caching.get_classifier(DEFAULT_MODEL_KEY, weights_token(DEFAULT_MODEL_KEY))
        classifier.warm_up(layers=False)
        _WARM.seconds = time.monotonic() - _WARM.started
        _LOG.warning("Saliency Studio: the default model is loaded and traced, %.1f s after "
                     "the server started (%.1f s of it importing TensorFlow); visitors do not "
                     "wait for it.", _WARM.seconds, imported)
    except Exception as exc:  # noqa: BLE001 - the first page shows the error when it loads
        _WARM.error = str(exc)
        _LOG.exception("Saliency Studio: warming up the default model failed")
    finally:
        _WARM.ready.set()
    if classifier is not None:
        try:
            classifier.warm_up()  # Grad-CAM's layer function, after the visitors' part
        except Exception:  # noqa: BLE001 - a Grad-CAM request traces it again and says why
            _LOG.exception("Saliency Studio: tracing Grad-CAM's layer function failed")


def show_core_log() -> None:
    """Send the core's INFO lines to the server's log: jobs stopped because nobody waits
    any more, and each isolated model check's outcome and peak memory. Python shows only
    warnings from a logger without a handler, so an operator could not see a visitor's
    job being stopped. Once per process; the command line keeps its quiet output."""
    core = logging.getLogger("saliency_core")
    if any(getattr(handler, "saliency_studio", False) for handler in core.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.saliency_studio = True
    core.addHandler(handler)
    core.setLevel(logging.INFO)


# -------------------------------------------------------------- upload quotas


@dataclass
class UploadLedger:
    """When each upload arrived and whether a widget has read it."""

    arrived: dict[tuple[str, str], float] = field(default_factory=dict)
    claimed: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_LEDGER = UploadLedger()


def _manager():
    runtime = Runtime._instance  # noqa: SLF001 - the running server's runtime, if any
    return None if runtime is None else runtime.uploaded_file_mgr


def _held(manager, session_id: str) -> tuple[int, int]:
    """``(bytes this session holds, bytes all sessions hold)`` in the upload store."""
    storage = getattr(manager, "file_storage", {})
    with manager._lock:  # noqa: SLF001 - the store's own lock, as its methods take it
        session = sum(len(f.data) for f in storage.get(session_id, {}).values())
        total = sum(len(f.data) for files in storage.values() for f in files.values())
    return session, total


def track_claims(manager) -> None:
    """Record which uploads a widget has read (a file uploader reads its files through
    ``get_files`` when the script runs), once per manager."""
    if getattr(manager, "_saliency_tracked", False):
        return
    original = manager.get_files

    def get_files(session_id, file_ids):
        with _LEDGER.lock:
            _LEDGER.claimed.update((session_id, f) for f in file_ids)
        return original(session_id, file_ids)

    manager.get_files = get_files
    manager._saliency_tracked = True


def sweep_orphan_uploads(now: float | None = None) -> int:
    """Free uploads that no widget read within ``Limits.orphan_upload_seconds``.

    Returns:
        The bytes freed.
    """
    manager = _manager()
    if manager is None:
        return 0
    now = time.monotonic() if now is None else now
    limit = load_limits().orphan_upload_seconds
    freed = 0
    storage = getattr(manager, "file_storage", {})
    with _LEDGER.lock:
        held = {(s, f): len(rec.data) for s, files in list(storage.items())
                for f, rec in list(files.items())}
        for key in list(_LEDGER.arrived):
            if key not in held:  # removed by its widget or with its session
                _LEDGER.arrived.pop(key, None)
                _LEDGER.claimed.discard(key)
        orphans = [key for key in held if key not in _LEDGER.claimed
                   and now - _LEDGER.arrived.setdefault(key, now) > limit]
        for key in orphans:
            _LEDGER.arrived.pop(key, None)
    for session_id, file_id in orphans:
        manager.remove_file(session_id, file_id)
        freed += held[(session_id, file_id)]
    if orphans:
        _LOG.warning("Freed %d upload(s) (%s) that no widget asked for within %.0f s",
                     len(orphans), format_bytes(freed), limit)
    return freed


class UploadQuota:
    """ASGI middleware: refuse uploads above the per-session and server-wide quotas."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope.get("method") != "PUT"
                or not scope.get("path", "").startswith(UPLOAD_PREFIX)):
            await self.app(scope, receive, send)
            return
        parts = scope["path"][len(UPLOAD_PREFIX):].split("/")
        manager = _manager()
        if len(parts) != 2 or manager is None:
            await self.app(scope, receive, send)
            return
        session_id, file_id = parts
        limits = load_limits()
        held_session, held_total = _held(manager, session_id)
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"-1"))
        except ValueError:
            declared = -1
        room = min(limits.max_session_upload_bytes - held_session,
                   limits.max_upload_store_bytes - held_total)
        session_room = limits.max_session_upload_bytes - held_session
        if declared > room:
            await self._refuse(send, limits, declared > session_room)
            return
        received = 0
        refused = False

        async def counted_receive():
            nonlocal received, refused
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > room + 64 * 1024:  # the multipart framing's margin
                    refused = True
                    raise _QuotaExceededError()
            return message

        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _QuotaExceededError:
            if not started:
                await self._refuse(send, limits, received > session_room)
            return
        if not refused:
            with _LEDGER.lock:
                _LEDGER.arrived[(session_id, file_id)] = time.monotonic()

    @staticmethod
    async def _refuse(send, limits, session_over: bool) -> None:
        if session_over:
            reason = (f"This session's uploads would pass "
                      f"{format_bytes(limits.max_session_upload_bytes)}; remove a file "
                      "first.")
        else:
            reason = (f"The server holds too many uploads right now (at most "
                      f"{format_bytes(limits.max_upload_store_bytes)} for everyone); try "
                      "again in a minute.")
        body = reason.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _QuotaExceededError(Exception):
    pass


# ------------------------------------------------------------------- lifespan


@asynccontextmanager
async def lifespan(app):
    """Warm the default model on a thread, track uploads, sweep orphans every few seconds."""
    from saliency_core.models.registry import remove_session_uploads

    remove_session_uploads()  # left by sessions of an earlier run; none is open yet
    show_core_log()
    thread = threading.Thread(target=warm_up, name="saliency-warm-up", daemon=True)
    thread.start()
    manager = _manager()
    if manager is not None:
        track_claims(manager)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
            try:
                sweep_orphan_uploads()
            except Exception:  # noqa: BLE001 - never stop the server for the sweeper
                _LOG.exception("Sweeping orphan uploads failed")

    task = asyncio.create_task(sweep())
    try:
        yield {"warm_up": thread}
    finally:
        task.cancel()
