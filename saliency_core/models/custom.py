"""Load a user's own Keras classifier (``.keras`` file) safely.

Safety rules:

* the file is read with ``keras.saving.load_model(..., safe_mode=True)``, which
  refuses to deserialise Python code (a ``Lambda`` layer carrying a lambda, or
  any pickled function); such a model gets a clear refusal and its code never
  runs;
* before Keras sees the file, :mod:`saliency_core.safety` inspects it: zip
  members and their declared sizes, ``config.json`` (size, nesting, an
  allowlist of built-in layers and functions, fixed input of bounded size, an
  estimated parameter count), then walks, loads and measures it in a child
  process with a memory limit and timeouts (a forward and a backward pass at
  batch 1 and 2: its time and peak memory per image, so a layer that builds a
  huge internal matrix is refused there); only a model that passed there is
  loaded here, with a batch size chosen from that measurement;
* the upload's file name is never used as a path: the bytes are written to a
  private temporary file;
* the model must be an image classifier: one ``(B, H, W, 3)`` input with fixed
  ``H, W`` and one ``(B, classes)`` output.

An optional labels file (UTF-8 text, one class name per line) names the outputs;
its line count must match the number of outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass

import keras

from saliency_core.safety.budget import ModelCost
from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.isolation import (
    IsolatedLoadError,
    classify_load_failure,
    make_workdir,
    remove_workdir,
    run_isolated,
)
from saliency_core.safety.keras_archive import inspect_keras_archive
from saliency_core.safety.limits import DEFAULT_LIMITS, Limits, format_bytes, load_limits
from saliency_core.tf_adapter import (
    KerasClassifier,
    UnsupportedModelError,
    build_logit_model,
)

_LOG = logging.getLogger(__name__)
MAX_MODEL_BYTES = DEFAULT_LIMITS.max_model_bytes
MAX_UNPACKED_BYTES = DEFAULT_LIMITS.max_unpacked_bytes
MAX_LABEL_BYTES = DEFAULT_LIMITS.max_labels_bytes
"""Defaults of the limits in :mod:`saliency_core.safety.limits` (set them in
``saliency_studio.toml``); changing a constant here in code overrides the file."""


class CustomModelError(ValueError):
    """The uploaded model cannot be used; the message says why, for the user."""


@dataclass(frozen=True)
class CustomModel:
    """A validated user model.

    Attributes:
        model: the loaded Keras model (never modified).
        class_names: one per output.
        digest: SHA-256 of the file, a cache key.
        head_note: how the pre-softmax score is obtained.
        batch_size: images per model call, chosen from the measured memory per
            image so a call fits ``Limits.activation_budget_bytes``.
        cost: time and memory per pass, measured in the checking child process.
    """

    model: keras.Model
    class_names: tuple[str, ...]
    digest: str
    head_note: str
    batch_size: int = 16
    cost: ModelCost | None = None


def parse_labels(data: bytes | None, num_classes: int) -> tuple[str, ...]:
    """Class names from a labels file, or ``class 0 … class K-1`` without one.

    Raises:
        CustomModelError: not UTF-8 text, too large, or the wrong number of lines.
    """
    if data is None:
        return tuple(f"class {i}" for i in range(num_classes))
    limit = _limits().max_labels_bytes
    if len(data) > limit:
        raise CustomModelError(f"The labels file is larger than {format_bytes(limit)}.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CustomModelError("The labels file is not UTF-8 text.") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != num_classes:
        raise CustomModelError(f"The labels file has {len(names)} names, but the model has "
                               f"{num_classes} outputs: give one name per line.")
    return tuple(names)


def _limits() -> Limits:
    """The limits in force; a module constant changed in code (tests) wins over the file."""
    limits = load_limits()
    overrides = {name: value for name, value in (("max_model_bytes", MAX_MODEL_BYTES),
                                                  ("max_unpacked_bytes", MAX_UNPACKED_BYTES),
                                                  ("max_labels_bytes", MAX_LABEL_BYTES))
                 if value != getattr(DEFAULT_LIMITS, name)}
    return dataclasses.replace(limits, **overrides)


def _load_failure(exc: BaseException) -> CustomModelError:
    """The user's sentence for a model that Keras could not load here; Keras's own words
    (class paths, advice for the model's author) go to the log only."""
    if isinstance(exc, MemoryError):
        return CustomModelError("The model could not be loaded: it needs more memory than "
                                "the server can give it.")
    failure = classify_load_failure(exc, "The model could not be loaded: Keras refused its "
                                         "layers or weights. Save it again with "
                                         "model.save('name.keras').")
    _LOG.warning("own model not loaded: %s", failure.detail)
    return CustomModelError(str(failure))


def load_custom_model(data: bytes, labels: bytes | None = None) -> CustomModel:
    """Validate and load a ``.keras`` image classifier from its bytes.

    Three steps, each only after the previous one passed: the pre-flight
    inspection of the archive in the server
    (:func:`~saliency_core.safety.keras_archive.inspect_keras_archive`), the
    load in an isolated child process with a memory limit and timeouts
    (:func:`~saliency_core.safety.isolation.run_isolated`), then the real load
    with ``safe_mode=True``. Each load has its own temporary folder, removed
    in ``finally`` whatever Keras does.

    Args:
        data: the ``.keras`` file's bytes.
        labels: optional labels file bytes (one class name per line).

    Raises:
        CustomModelError: with a message for the user, for every way it can fail.
    """
    limits = _limits()
    if not data:
        raise CustomModelError("The model file is empty.")
    if len(data) > limits.max_model_bytes:
        raise CustomModelError(f"The model file is {format_bytes(len(data))}; the limit is "
                               f"{format_bytes(limits.max_model_bytes)}.")
    try:
        inspect_keras_archive(data, limits)
    except UnsafeUploadError as exc:
        raise CustomModelError(str(exc)) from exc
    workdir = make_workdir("model")
    try:
        path = os.path.join(workdir, "upload.keras")
        with open(path, "wb") as out:
            out.write(data)
        try:
            checked = run_isolated("keras_archive", {"path": path, "workdir": workdir}, limits)
        except UnsafeUploadError as exc:
            raise CustomModelError(str(exc)) from exc
        except IsolatedLoadError as exc:  # already the project's own sentence
            raise CustomModelError(str(exc)) from exc
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:
            raise _load_failure(exc) from exc
    finally:
        remove_workdir(workdir)
    if "unsupported" in checked:
        raise CustomModelError(f"This is not an image classifier. {checked['unsupported']}")
    if not isinstance(model, keras.Model):
        raise CustomModelError("The file does not hold a Keras model.")
    try:
        _logits, head_note = build_logit_model(model)
    except UnsupportedModelError as exc:
        raise CustomModelError(f"This is not an image classifier. {exc}") from exc
    height, width = model.inputs[0].shape[1:3]
    if height is None or width is None:
        raise CustomModelError("The model's input height and width must be fixed, e.g. "
                               "keras.Input((224, 224, 3)).")
    num_classes = int(model.outputs[0].shape[-1])
    if num_classes > limits.max_classes:
        raise CustomModelError(
            f"The model outputs {num_classes:,} scores per image; a classifier here may have "
            f"at most {limits.max_classes:,} classes (is its last layer a Flatten instead of "
            "a Dense layer with one unit per class?).")
    names = parse_labels(labels, num_classes)
    try:
        cost = ModelCost.from_dict(checked["cost"])
        batch = max(1, int(checked["batch_size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CustomModelError("Checking the model did not report what a pass costs, so it "
                               "is refused.") from exc
    return CustomModel(model=model, class_names=names, digest=hashlib.sha256(data).hexdigest(),
                       head_note=head_note, batch_size=batch, cost=cost)


def make_classifier(custom: CustomModel, preprocessing) -> KerasClassifier:
    """Wrap a validated custom model with the preprocessing the user chose; its batch
    size and cost are the ones measured in the checking child process."""
    classifier = KerasClassifier(custom.model, preprocessing, custom.class_names,
                                 batch_size=custom.batch_size)
    classifier.cost = custom.cost
    return classifier
