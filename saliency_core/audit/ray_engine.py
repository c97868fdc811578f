"""The Ray engine of ``python -m saliency_core explain --engine ray``: Ray Data batch inference.

The file list (names, paths and output stems, not the decoded images) becomes a
Ray dataset with one row per batch of ``batch_size`` files. ``map_batches``
sends each row to a pool of actors (``ActorPoolStrategy``) that each load the
model once and run :func:`saliency_core.audit.engine.explain_files`, the same
per-batch function as the local engine, with the same file size limit and
decoding checks. The outcomes stream back in input order and the driver writes
them through the same :class:`~saliency_core.audit.engine.OutputFolder`, so
the output folder only has to exist where the command runs.

Ray is optional (``requirements-scale.txt``) and imported only here, when a run
asks for it. Without ``address`` a local Ray starts for the run and stops with
it; with one, the run connects to that cluster and leaves it running.

A local Ray is private to the run (:func:`local_ray_environment`): every Ray
process listens on the loopback address only (``ray.init`` would otherwise
advertise and bind the host's network address, and anyone who reaches a Ray
port can run code on it), the dashboard is off, Ray's token authentication is
on with a fresh random token that is never written to disk, and Ray's session
files go to one temporary folder that the run removes.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from saliency_core.audit.batch import AuditSettings
from saliency_core.audit.engine import (
    AuditFile,
    EngineError,
    FileOutcome,
    ModelChoice,
    ModelChoiceError,
    explain_files,
    open_model,
    split_batches,
)
from saliency_core.audit.outputs import ModelIdentity

INSTALL_HINT = "pip install -r requirements-scale.txt"
"""How to install the optional Ray dependency (from the repository's root)."""

_PASSED_ENV = ("TF_CPP_MIN_LOG_LEVEL", "SALIENCY_STUDIO_OFFLINE")
"""Environment variables the driver hands to the actors, if set."""

_LOCAL_ENV = ("SALIENCY_STUDIO_CACHE", "KERAS_HOME")
"""Paths the driver hands to the actors of a local Ray only (a cluster has its own)."""


class RayUnavailableError(RuntimeError):
    """Ray is not installed; the message says how to install it."""


class RayRunError(EngineError):
    """The cluster cannot run the audit (too few resources, a failed worker); for the user."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs.

    Attributes:
        address: an existing cluster (``"auto"``, ``"HOST:6379"`` or
            ``"ray://HOST:10001"``), or ``None`` to start a local Ray for the run.
        workers: actors in the pool, each with its own copy of the model; ``None``
            sizes the pool from the cluster (one per two CPUs, or one per
            ``gpus_per_worker`` share of its GPUs).
        cpus_per_worker: CPUs each actor reserves. Fractional by default, so that
            a small machine keeps CPUs free for Ray Data's own tasks.
        gpus_per_worker: GPUs each actor reserves (0 for none).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 0.5
    gpus_per_worker: float = 0.0


def import_ray():
    """The ``ray`` module, with usage statistics off.

    Raises:
        RayUnavailableError: Ray (with Ray Data) is not installed.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401 (the [data] extra)
    except ImportError as exc:
        raise RayUnavailableError(f"--engine ray needs Ray Data, which is not installed "
                                  f"({exc.name or exc}); install it with: {INSTALL_HINT}"
                                  ) from None
    return ray


class BatchExplainer:
    """A Ray Data actor: loads the model once, then explains one batch of files per row.

    Args:
        choice: the model to open.
        model: the model as the command loaded it; the actor's copy must be the same
            (on a cluster a registered model's weights come from the worker's own pod).
        settings: the audit settings.
        engine: the provenance's ``engine`` record.

    Raises:
        ModelChoiceError: the model cannot be loaded here, or its weights differ.
    """

    def __init__(self, choice: ModelChoice, model: ModelIdentity, settings: AuditSettings,
                 engine: dict):
        self.classifier, self.model = open_model(choice)
        if self.model != model:
            raise ModelChoiceError(
                f"the worker's {model.file or model.key} is not the command's (weights "
                f"SHA-256 {str(self.model.weights_sha256)[:12]} against "
                f"{str(model.weights_sha256)[:12]}); give every pod the same weights")
        self.settings = settings
        self.engine = engine

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"name", "path", "stem"}`` (one list of files per row) to one output row
        per file (see :func:`pack_outcomes`)."""
        outcomes = []
        for names, paths, stems in zip(rows["name"], rows["path"], rows["stem"], strict=True):
            files = [AuditFile(str(n), str(p), str(s))
                     for n, p, s in zip(names, paths, stems, strict=True)]
            outcomes += explain_files(self.classifier, self.model, self.settings, files,
                                      self.engine)
        return pack_outcomes(outcomes)


def pack_outcomes(outcomes: Sequence[FileOutcome]) -> dict[str, np.ndarray]:
    """Outcomes as dataset columns: ``row`` (the summary row as JSON), ``files`` (the
    output files' names and sizes as JSON) and ``data`` (their bytes, one after another)."""
    return {
        "row": np.array([json.dumps(o.row) for o in outcomes], dtype=object),
        "files": np.array([json.dumps([[name, len(data)] for name, data in o.files.items()])
                           for o in outcomes], dtype=object),
        "data": np.array([b"".join(o.files.values()) for o in outcomes], dtype=object),
    }


def unpack_outcomes(batch: dict[str, np.ndarray]) -> Iterator[FileOutcome]:
    """The outcomes of :func:`pack_outcomes`' columns, in order."""
    for row, files, data in zip(batch["row"], batch["files"], batch["data"], strict=True):
        outputs, start = {}, 0
        for name, size in json.loads(files):
            outputs[name] = bytes(data[start:start + size])
            start += size
        yield FileOutcome(json.loads(row), outputs)


def batch_rows(files: Sequence[AuditFile], batch_size: int) -> list[dict]:
    """The dataset's rows: one per batch, with the batch's names, paths and stems."""
    return [{"name": [f.name for f in batch], "path": [f.path for f in batch],
             "stem": [f.stem for f in batch]} for batch in split_batches(files, batch_size)]


def pool_size(options: RayOptions, resources: dict, batches: int) -> int:
    """Actors to start: as asked, or sized from the cluster's resources; at most one per batch.

    Raises:
        RayRunError: the cluster has fewer CPUs or GPUs than the pool would hold
            (Ray would wait for them forever).
    """
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if options.workers is not None:
        workers = options.workers
    elif options.gpus_per_worker > 0:
        workers = int(gpus // options.gpus_per_worker)
    else:
        workers = int(cpus // 2)
    workers = max(1, min(workers, batches))
    if options.gpus_per_worker > 0 and workers * options.gpus_per_worker > gpus:
        raise RayRunError(f"{count(workers, 'worker')} x {count(options.gpus_per_worker, 'GPU')}"
                          f" = {count(workers * options.gpus_per_worker, 'GPU')}, but the "
                          f"cluster has {gpus:g} (lower --workers or --gpus-per-worker)")
    if workers * options.cpus_per_worker > cpus:
        raise RayRunError(f"{count(workers, 'worker')} x {count(options.cpus_per_worker, 'CPU')}"
                          f" = {count(workers * options.cpus_per_worker, 'CPU')}, but the "
                          f"cluster has {cpus:g} (lower --workers or --cpus-per-worker)")
    return workers


def count(number: float, noun: str) -> str:
    """``number`` and ``noun``, plural unless the number is exactly 1: "1 GPU", "0.5 CPUs"."""
    return f"{number:g} {noun}" + ("" if number == 1 else "s")


def _actor_env(local: bool) -> dict[str, str]:
    """Environment variables for the actors: the log level, offline mode and, on a local
    Ray, the weights cache and the operator's limits file (by its absolute path)."""
    from saliency_core.safety.limits import config_path

    names = _PASSED_ENV + (_LOCAL_ENV if local else ())
    env = {name: os.environ[name] for name in names if name in os.environ}
    config = config_path()
    if local and config.is_file():  # the operator's limits apply in the actors too
        env["SALIENCY_STUDIO_CONFIG"] = str(config.resolve())
    return env


REACH_TIMEOUT_S = 10.0
"""How long to wait for a cluster's head to accept a connection before giving up."""


def check_reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Fail fast when ``host:port`` (or ``ray://host:port``) accepts no connection.

    ``ray.init`` keeps retrying an address where nothing listens, for minutes, so a
    mistyped ``--address`` would look like a hang. ``auto`` and other forms without a
    port are left to Ray.

    Raises:
        ConnectionError: nothing accepted a TCP connection within ``timeout``.
    """
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(f"nothing answered at {target} within {timeout:.0f} s "
                              f"({exc.strerror or exc})") from None


def local_ray_environment() -> dict[str, str]:
    """Environment variables that keep a local Ray private to this run.

    * ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray's single-machine mode. Without it
      ``ray.init`` replaces a loopback ``_node_ip_address`` with the host's network
      address, and its GCS server, raylet, workers and runtime-env agent listen there
      or on every interface; with it, all of them bind to 127.0.0.1. It is read when
      Ray is imported, so it must be set before that (:meth:`RaySession.__enter__`
      checks the address Ray really took).
    * ``RAY_AUTH_MODE=token`` and a fresh ``RAY_AUTH_TOKEN``: every request to the
      run's Ray needs the token, which lives only in this process's environment (and
      its children's); Ray writes no token file to ``~/.ray``.
    """
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def make_temp_root() -> str:
    """A new folder for the local Ray's session files, removed after the run.

    It goes under ``RAY_TMPDIR`` when set (Ray's own variable), else the system's
    temporary folder, unless that path is too long for Ray's Unix socket paths (at
    most 107 bytes with the session's sub-folders), then under ``/tmp``.
    """
    base = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    if len(base) > 28 and os.path.isdir("/tmp"):  # + /sray-XXXXXXXX/session_…/sockets/…
        base = "/tmp"
    return tempfile.mkdtemp(prefix="sray-", dir=base)


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP address) is 127.0.0.0/8 or ::1 (also IPv4-mapped)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _connect(ray, options: RayOptions, temp_root: str | None) -> None:
    runtime_env = {"env_vars": _actor_env(local=not options.address)}
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False,
             "runtime_env": runtime_env}
    if options.address:
        check_reachable(options.address)
        ray.init(address=options.address, **quiet)
        return
    ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
             _node_ip_address="127.0.0.1", _temp_dir=temp_root, **quiet)
    node_ip = ray.util.get_node_ip_address()
    if not is_loopback(node_ip):
        ray.shutdown()
        raise RuntimeError(f"the local Ray took the network address {node_ip} instead of "
                           "the loopback address, so it was stopped (start the command in "
                           "a fresh process)")


class RaySession:
    """Ray for one run: a local Ray started, or a cluster joined, on entering; shut down
    (or left) on exit. Enter it before loading the model, so that a missing Ray, an
    unreachable cluster or one too small is reported at once.

    Args:
        options: where and how wide to run.
    """

    def __init__(self, options: RayOptions):
        self.options = options
        self._ray = None
        self._temp_root: str | None = None
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> RaySession:
        """Import Ray and connect (a local Ray: on loopback, with a token, in a temp root).

        Raises:
            RayUnavailableError: Ray is not installed.
            RayRunError: Ray cannot be started or the cluster cannot be reached.
        """
        if not self.options.address:
            for name, value in local_ray_environment().items():
                self._saved_env.setdefault(name, os.environ.get(name))
                os.environ[name] = value
            self._temp_root = make_temp_root()
        try:
            ray = import_ray()
        except BaseException:
            self._clean_up()
            raise
        try:
            _connect(ray, self.options, self._temp_root)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            self._clean_up()
            raise RayRunError(f"cannot start or reach Ray at {self.options.address or 'local'}"
                              f": {_first_line(exc)}") from None
        except BaseException:
            self._clean_up()
            raise
        self._ray = ray
        return self

    def __exit__(self, *exc_info) -> None:
        self._ray.shutdown()
        self._clean_up()

    def _clean_up(self) -> None:
        """Remove the local Ray's temp root (its processes may take a moment to exit and
        stop writing logs) and restore the environment."""
        if self._temp_root is not None:
            deadline = time.monotonic() + 10.0
            while os.path.exists(self._temp_root) and time.monotonic() < deadline:
                shutil.rmtree(self._temp_root, ignore_errors=True)
                if os.path.exists(self._temp_root):
                    time.sleep(0.2)
            self._temp_root = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def size_pool(self, batches: int) -> int:
        """The pool's size for ``batches`` batches (see :func:`pool_size`).

        Raises:
            RayRunError: the cluster cannot hold the pool.
        """
        return pool_size(self.options, self._ray.cluster_resources(), batches)

    def iter_outcomes(self, choice: ModelChoice, model: ModelIdentity,
                      settings: AuditSettings, files: Sequence[AuditFile],
                      workers: int) -> Iterator[FileOutcome]:
        """:func:`explain_files` in a pool of ``workers`` actors; outcomes in input order.

        Raises:
            RayRunError: a worker failed (e.g. it could not load the model).
        """
        ray = self._ray
        from ray.exceptions import RayError

        rows = batch_rows(files, settings.batch_size)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # summary.csv in input order
        context.enable_progress_bars = False  # the command line draws its own
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # errors: RayRunError
        engine = {"name": "ray", "version": ray.__version__, "workers": workers}
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        dataset = _map_batches(dataset, ray, workers, self.options,
                               fn_constructor_args=(choice, model, settings, engine))
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                yield from unpack_outcomes(batch)
        except RayError as exc:
            raise RayRunError(f"a Ray worker failed: {_first_line(exc)}") from None


def _map_batches(dataset, ray, workers: int, options: RayOptions, **kwargs):
    """``dataset.map_batches`` with the actor pool: one row (one batch of files) per call."""
    pool = {"compute": ray.data.ActorPoolStrategy(size=workers),
            "num_cpus": options.cpus_per_worker, "num_gpus": options.gpus_per_worker or None}
    if options.address:
        return dataset.map_batches(BatchExplainer, batch_size=1, **pool, **kwargs)
    # Ray Data restarts dead actors, for clusters where a node can go away. On one machine an
    # actor dies from lack of memory, and restarting it would repeat that forever. Ray 2.60
    # takes max_restarts only as a deprecated extra argument; a later Ray may refuse it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        try:
            return dataset.map_batches(BatchExplainer, batch_size=1, max_restarts=0, **pool,
                                       **kwargs)
        except TypeError:
            return dataset.map_batches(BatchExplainer, batch_size=1, **pool, **kwargs)


def _first_line(exc: BaseException) -> str:
    """The most telling line of an error, for a one-line message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error:" in line:
            return line
    return lines[0] if lines else type(exc).__name__

