"""Provenance: everything needed to reproduce a map, as a JSON-ready dict.

:func:`make_provenance` is shared by the command line, the Audit page and
Explore's "Download provenance (JSON)" button. :func:`reproduce_values` runs the
core again from a provenance record and returns the same raw attribution, bit for
bit, on any machine with the same libraries.

Batch sizes shape the floats: on a CPU a model call of 33 images can round
differently from one of 16, and Integrated Gradients, SmoothGrad and occlusion send
their samples in chunks whose size follows the free memory
(:mod:`saliency_core.batching`). So the record keeps ``method.batch_size``, the most
images per model call (calls are split into nearly equal chunks of at most that
many, so with the method's parameters it fixes the size of every call), fills a
method's own ``batch_size`` parameter with the value it used, and reproduction
sends its calls at that size whatever this machine's memory would choose.
"""

from __future__ import annotations

import functools
import hashlib
import io
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from saliency_core.audit.batch import ROW_METHODS, method_parameters
from saliency_core.audit.border import BORDER_BAND, border_share, uniform_border_share
from saliency_core.imaging import crop_box
from saliency_core.methods import METHODS, Target
from saliency_core.pipeline import Prediction, explain, explain_rows, to_display_map, top_k
from saliency_core.postprocess import DEFAULT_CLIP_PERCENTILE
from saliency_core.tf_adapter import KerasClassifier

FORMAT = "saliency-studio-provenance/1"
_PACKAGES = ("numpy", "tensorflow", "keras", "pillow", "h5py", "streamlit")


def library_versions() -> dict[str, str]:
    """Python, the platform and the versions of the libraries that compute a map."""
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    # Looked up once per process: reading the packages' metadata took about 10 ms, on
    # every image of an audit.
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks and remembered per (path, mtime, size)."""
    stat = Path(path).stat()
    return _file_digest(str(path), stat.st_mtime_ns, stat.st_size)


def registered_weights_sha256(key: str, scope: str | None = None) -> str | None:
    """SHA-256 of the weights file a registered model loads, or ``None`` if none is found.

    The default model's is its PyTorch checkpoint's (the converted cache is made
    from it), so it is the same on every machine and on the first start.
    """
    from saliency_core.models.registry import WeightsUnavailableError, weights_file

    try:
        path = weights_file(key, scope)
    except WeightsUnavailableError:
        return None
    return None if path is None else sha256_file(path)


def map_statistics(values: np.ndarray, saliency: np.ndarray) -> dict:
    """Statistics of a raw attribution ``(h, w, C)`` and its display map ``(h, w)``."""
    raw = np.asarray(values, dtype=np.float64)
    shown = np.asarray(saliency, dtype=np.float64)
    share = border_share(shown)
    return {
        "shape": list(np.shape(values)),
        "dtype": str(np.asarray(values).dtype),
        "raw_min": float(raw.min()), "raw_max": float(raw.max()),
        "raw_mean": float(raw.mean()), "raw_std": float(raw.std()),
        "raw_abs_sum": float(np.abs(raw).sum()),
        "map_mean": float(shown.mean()),
        "border_share": share,
        "border_share_uniform": uniform_border_share(shown.shape),  # a uniform map's value
        "border_band": BORDER_BAND,
    }


def npy_bytes(values: np.ndarray) -> bytes:
    """The ``.npy`` file of ``values`` (as Explore's download)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values))
    return buffer.getvalue()


def _prediction(p: Prediction) -> dict:
    return {"index": p.index, "name": p.name, "probability": p.probability}


def make_provenance(*, model_key: str, model_file: str | None, weights_sha256: str | None,
                    preprocessing: str, classifier: KerasClassifier, image_name: str,
                    image_sha256: str, image_size: tuple[int, int], fit: str,
                    probabilities: np.ndarray, target: Target, method: str, params: dict,
                    values: np.ndarray, seconds: float, reduction: str = "max_abs",
                    clip_percentile: float | None = DEFAULT_CLIP_PERCENTILE,
                    class_choice: str = "fixed",
                    batch_rows: int = 1, info: dict | None = None,
                    decoded_size: tuple[int, int] | None = None,
                    fitted_size: tuple[int, int] | None = None,
                    saliency: np.ndarray | None = None, npy: bytes | None = None) -> dict:
    """The provenance record of one map: enough to reproduce it.

    Args:
        model_key: a registered key, ``"file"`` for a ``.keras`` file, or an own
            model's key on the app.
        model_file: the ``.keras`` file's name, if the model came from one.
        weights_sha256: SHA-256 of the weights (or ``.keras``) file.
        preprocessing: the preprocessing key (see
            :mod:`saliency_core.models.preprocessing`).
        classifier: the model (input size, class names, head).
        image_name: the image's file name.
        image_sha256: SHA-256 of the image file's bytes.
        image_size: ``(width, height)`` of the image file's pixels, after EXIF rotation.
        decoded_size: ``(width, height)`` the decoder produced, recorded when it
            differs from ``image_size`` (a large JPEG decoded at reduced scale).
        fit: ``"crop"`` or ``"squash"``.
        probabilities: ``(K,)`` softmax probabilities of the image.
        target: the explained class, contrast and score kind.
        method, params: the method key and the parameters given (defaults are
            filled in, so every parameter and seed is recorded).
        values: ``(h, w, C)`` the raw attribution.
        seconds: time taken for the map.
        reduction, clip_percentile: how the display map was made.
        class_choice: ``"top1"`` (each image's own top class) or ``"fixed"``.
        batch_rows: images in the model call that computed the map.
        info: method-specific facts.
        fitted_size: ``(width, height)`` of the pixels the model's input was fitted
            from (:attr:`LoadedImage.pixels`, at most 1024 on the longer side); the
            crop box is in these pixels. Default ``image_size``.
        saliency: the display map of ``values`` with ``reduction`` and
            ``clip_percentile``, if the caller has it already (else it is made here).
        npy: the ``.npy`` bytes of ``values``, if the caller has them already.

    ``method.batch_size`` is ``classifier.batch_size``, the bound every model call of
    the map was split by; a ``batch_size`` parameter left at ``None`` is recorded as
    that bound, the value the method used.

    Returns:
        A JSON-serialisable dict. ``crop`` records the region the model saw:
        ``box`` ``[left, top, right, bottom]`` in the pixels of ``of_size``
        (the image as fitted), and ``fraction``, the same box as fractions of the
        image's width and height, which hold at any resolution (the file's too).
    """
    names = classifier.class_names
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if saliency is None:
        saliency = to_display_map(values, reduction, clip_percentile)
    full = method_parameters(method, params)
    if "layer" in full and full["layer"] is None:
        full["layer"] = classifier.default_cam_layer()
    if "batch_size" in full and full["batch_size"] is None:
        full["batch_size"] = int(classifier.batch_size)
    image = {"name": image_name, "sha256": image_sha256,
             "width": int(image_size[0]), "height": int(image_size[1])}
    if decoded_size and tuple(decoded_size) != tuple(image_size) and min(decoded_size) > 0:
        image["decoded_width"], image["decoded_height"] = (int(v) for v in decoded_size)
    return {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "image": image,
        "model": {"key": model_key, "file": model_file, "weights_sha256": weights_sha256,
                  "preprocessing": preprocessing,
                  "input_size": [int(v) for v in classifier.input_size],
                  "num_classes": classifier.num_classes, "head": classifier.head_note},
        "fit": fit,
        "crop": crop_record(fitted_size or image_size, fit, classifier.input_size),
        "target": {
            "class_index": int(target.class_index), "class_name": names[target.class_index],
            "probability": float(probabilities[target.class_index]),
            "class_choice": class_choice, "contrast_index": target.contrast_index,
            "contrast_name": (None if target.contrast_index is None
                              else names[target.contrast_index]),
            "score": target.score,
        },
        "top5": [_prediction(p) for p in top_k(probabilities, names, min(5, len(names)))],
        "method": {"key": method, "label": METHODS[method].label,
                   "citation": METHODS[method].citation, "params": full,
                   "seed": full.get("seed"), "batch_rows": int(batch_rows),
                   "batch_size": int(classifier.batch_size)},
        "versions": library_versions(),
        "seconds": float(seconds),
        "map": {**map_statistics(values, saliency), "reduction": reduction,
                "clip_percentile": clip_percentile,
                "npy_sha256": sha256_bytes(npy_bytes(values) if npy is None else npy)},
        "info": {k: (float(v) if isinstance(v, (int, float, np.floating)) else str(v))
                 for k, v in (info or {}).items()},
    }


def crop_record(size: tuple[int, int], fit: str, input_size: tuple[int, int]) -> dict:
    """Where the model's view lies in an image of ``size`` ``(width, height)``.

    The same rule as :func:`saliency_core.imaging.fit_to_model` (the centre crop has
    the aspect ratio of ``input_size``, the model's ``(height, width)``).
    """
    width, height = (int(v) for v in size)
    box = crop_box(width, height, fit, input_size)
    return {"box": [int(v) for v in box], "of_size": [width, height],
            "fraction": [round(box[0] / width, 6), round(box[1] / height, 6),
                         round(box[2] / width, 6), round(box[3] / height, 6)]}


def reproduce_values(provenance: dict, classifier: KerasClassifier,
                     model_input: np.ndarray) -> np.ndarray:
    """Compute the raw attribution again from a provenance record.

    Args:
        provenance: a record from :func:`make_provenance`.
        classifier: the model the record names (same weights and preprocessing).
        model_input: ``(h, w, 3)`` the image fitted as the record says.

    Returns:
        ``(h, w, C)`` float32, equal to the recorded ``.npy``: a map computed in
        a batch of ``n`` images is recomputed in a batch of ``n`` (copies of
        this image), and every model call is split by the recorded
        ``batch_size`` rather than this machine's, because the last float bits
        can depend on the batch size.
    """
    target_info, method_info = provenance["target"], provenance["method"]
    recorded = method_info.get("batch_size")
    if recorded:
        classifier = classifier.with_batch_size(int(recorded))
    target = Target(target_info["class_index"], target_info["contrast_index"],
                    target_info["score"])
    method, params = method_info["key"], dict(method_info["params"])
    rows = int(method_info.get("batch_rows", 1))
    if method in ROW_METHODS and rows > 1 and target.contrast_index is None:
        batch = np.repeat(np.asarray(model_input, np.float32)[None], rows, axis=0)
        return explain_rows(classifier, batch, [target.class_index] * rows, method, params,
                            target.score).values[0]
    return explain(classifier, model_input, target, method, params).attribution.values
