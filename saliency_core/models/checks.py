"""The checks that run in the isolated child process.

:mod:`saliency_core.safety.isolation` starts a fresh, memory-limited child and
runs one of these by name (its ``TASKS`` table); they live here, next to the
models they build, so the safety layer never imports the model registry.

* :func:`check_keras_archive_in_child`: a visitor's ``.keras`` model. Walks the
  weights file, builds the model with ``safe_mode=True``, loads the weights, and
  then **measures what a pass costs** (:func:`saliency_core.models.cost.measure_cost`):
  the real gradient call at batch 1 and 2, its time and peak memory per image.
  A model whose single image needs more than the limit is refused here, inside
  the child, so the server never runs it; the others get a batch size chosen from
  the measurement.
* :func:`check_weights_in_child`: a weights file for a registered model (the
  server's side of that check is :func:`saliency_core.models.registry.check_weights_upload`).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable

from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.hdf5 import check_expected_shapes, walk_hdf5
from saliency_core.safety.isolation import (
    BUILD_MESSAGE,
    RUN_MESSAGE,
    WEIGHTS_MESSAGE,
    IsolatedLoadError,
    classify_load_failure,
    failing_as,
    import_keras,
)
from saliency_core.safety.limits import Limits, format_bytes


def _extract_weights(archive_path: str, workdir: str, limits: Limits) -> str | None:
    with zipfile.ZipFile(archive_path) as archive:
        if "model.weights.h5" not in archive.namelist():
            return None
        target = os.path.join(workdir, "model.weights.h5")
        with archive.open("model.weights.h5") as source, open(target, "wb") as out:
            copied = 0
            while chunk := source.read(1 << 20):
                copied += len(chunk)
                if copied > limits.max_member_bytes:
                    raise UnsafeUploadError("The weights in the archive are larger than the "
                                            "archive declares, which is refused.")
                out.write(chunk)
        return target


def check_keras_archive_in_child(args: dict, limits: Limits,
                                 phase: Callable[[str], None]) -> dict:
    """Build, load and measure an uploaded model (in the child process).

    Returns:
        ``{"parameters": n, "cost": ModelCost as a dict, "batch_size": b}``, or
        ``{"parameters": n, "unsupported": reason}`` for a model that is not an
        image classifier this app can explain.
    """
    workdir = args["workdir"]
    weights = _extract_weights(args["path"], workdir, limits)
    report = walk_hdf5(weights, limits) if weights else None
    phase("load")
    keras = import_keras(limits)
    with zipfile.ZipFile(args["path"]) as archive:
        config = json.loads(archive.read("config.json").decode("utf-8"))
    config.pop("compile_config", None)
    with failing_as(BUILD_MESSAGE):  # Keras's words are logged, never shown
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    if not isinstance(model, keras.Model):
        raise IsolatedLoadError("The file does not hold a Keras model.")
    parameters = int(model.count_params())
    if parameters > limits.max_parameters:
        raise UnsafeUploadError(
            f"The model has {parameters / 1e6:,.0f} million parameters; the limit is "
            f"{limits.max_parameters / 1e6:,.0f} million.")
    if weights is not None:
        check_expected_shapes(report, [tuple(v.shape) for v in model.weights], "the model")
        with failing_as(WEIGHTS_MESSAGE):
            model.load_weights(weights)
    phase("measure")
    from saliency_core.models.cost import ModelTooCostlyError, measure_cost
    from saliency_core.tf_adapter import KerasClassifier, UnsupportedModelError, activation_bytes

    declared = activation_bytes(model)
    if declared > limits.max_activation_bytes:  # a cheap first filter before any pass
        raise UnsafeUploadError(
            f"The model's layer outputs need {format_bytes(declared)} per image (a gradient "
            f"keeps them all); the limit is {format_bytes(limits.max_activation_bytes)}, to "
            "protect the server. Layers that blow the image up (large upsampling) cause this.")
    try:
        outputs = int(model.outputs[0].shape[-1]) if len(model.outputs) == 1 else 0
        classifier = KerasClassifier(model, lambda images: images,
                                     [str(i) for i in range(outputs)], batch_size=1)
    except UnsupportedModelError as exc:  # the adapter's own sentence
        return {"parameters": parameters, "unsupported": str(exc)}
    except (TypeError, ValueError, IndexError):
        return {"parameters": parameters, "unsupported": "Its input or output does not have "
                "the shape of an image classifier."}
    try:
        cost, batch = measure_cost(classifier, limits)
    except ModelTooCostlyError as exc:
        raise UnsafeUploadError(str(exc)) from exc
    except (MemoryError, UnsafeUploadError):
        raise
    except Exception as exc:  # the model failed on the test images: Keras's words are logged
        raise classify_load_failure(exc, RUN_MESSAGE) from exc
    return {"parameters": parameters, "cost": cost.to_dict(), "batch_size": batch}


def check_weights_in_child(args: dict, limits: Limits, phase: Callable[[str], None]) -> dict:
    """Walk and load a weights file into a fresh registered model (in the child process)."""
    report = walk_hdf5(args["path"], limits)
    phase("load")
    import_keras(limits)
    from saliency_core.models.registry import get_spec

    spec = get_spec(args["key"])
    model = spec.build()
    check_expected_shapes(report, [tuple(v.shape) for v in model.weights], spec.display_name)
    suffix = ".h5" if report.legacy else ".weights.h5"
    target = os.path.join(args["workdir"], "check" + suffix)
    os.link(args["path"], target)
    with failing_as(f"Its arrays could not be loaded into {spec.display_name}: the file is "
                    "damaged or holds the weights of another model."):
        model.load_weights(target)
    return {"legacy": report.legacy}
