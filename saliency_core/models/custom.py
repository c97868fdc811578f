"""Load a user's own Keras classifier (``.keras`` file) safely.

Safety rules:

* the file is read with ``keras.saving.load_model(..., safe_mode=True)``, which
  refuses to deserialise Python code (a ``Lambda`` layer carrying a lambda, or
  any pickled function); such a model gets a clear refusal and its code never
  runs;
* the file's size and the uncompressed size of the ``.keras`` zip are bounded
  before anything is read from it (no zip bombs);
* the upload's file name is never used as a path: the bytes are written to a
  private temporary file;
* the model must be an image classifier: one ``(B, H, W, 3)`` input with fixed
  ``H, W`` and one ``(B, classes)`` output.

An optional labels file (UTF-8 text, one class name per line) names the outputs;
its line count must match the number of outputs.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass

import keras

from saliency_core.tf_adapter import KerasClassifier, UnsupportedModelError, build_logit_model

MAX_MODEL_BYTES = 200 * 1024 * 1024
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
MAX_LABEL_BYTES = 2 * 1024 * 1024


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
    """

    model: keras.Model
    class_names: tuple[str, ...]
    digest: str
    head_note: str


def parse_labels(data: bytes | None, num_classes: int) -> tuple[str, ...]:
    """Class names from a labels file, or ``class 0 … class K-1`` without one.

    Raises:
        CustomModelError: not UTF-8 text, too large, or the wrong number of lines.
    """
    if data is None:
        return tuple(f"class {i}" for i in range(num_classes))
    if len(data) > MAX_LABEL_BYTES:
        raise CustomModelError("The labels file is larger than 2 MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CustomModelError("The labels file is not UTF-8 text.") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != num_classes:
        raise CustomModelError(f"The labels file has {len(names)} names, but the model has "
                               f"{num_classes} outputs: give one name per line.")
    return tuple(names)


def _check_archive(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise CustomModelError("This is not a .keras model file (a Keras 3 zip archive). "
                               "Save your model with model.save('name.keras').") from exc
    if "config.json" not in names:
        raise CustomModelError("The archive has no config.json: it is not a .keras model.")
    if unpacked > MAX_UNPACKED_BYTES:
        raise CustomModelError("The model unpacks to more than 1 GB, which is refused.")


def load_custom_model(data: bytes, labels: bytes | None = None) -> CustomModel:
    """Validate and load a ``.keras`` image classifier from its bytes.

    Args:
        data: the ``.keras`` file's bytes.
        labels: optional labels file bytes (one class name per line).

    Raises:
        CustomModelError: with a message for the user, for every way it can fail.
    """
    if not data:
        raise CustomModelError("The model file is empty.")
    if len(data) > MAX_MODEL_BYTES:
        raise CustomModelError(f"The model file is {len(data) / 2**20:.0f} MB; the limit is "
                               f"{MAX_MODEL_BYTES // 2**20} MB.")
    _check_archive(data)
    handle, path = tempfile.mkstemp(suffix=".keras")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except CustomModelError:
        raise
    except Exception as exc:
        message = str(exc)
        if "Lambda" in message or "safe_mode" in message or "lambda" in message:
            raise CustomModelError(
                "The model contains Python code (for example a Lambda layer), which is never "
                "run here for safety. Replace it with built-in Keras layers and save again."
            ) from exc
        if "Unknown" in message or "custom" in message.lower():
            raise CustomModelError(
                "The model uses custom layers or functions that this app does not know; only "
                "built-in Keras layers are supported.") from exc
        raise CustomModelError(f"The model could not be loaded: {message.splitlines()[0][:300]}"
                               ) from exc
    finally:
        os.unlink(path)
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
    names = parse_labels(labels, num_classes)
    return CustomModel(model=model, class_names=names, digest=hashlib.sha256(data).hexdigest(),
                       head_note=head_note)


def make_classifier(custom: CustomModel, preprocessing) -> KerasClassifier:
    """Wrap a validated custom model with the preprocessing the user chose."""
    return KerasClassifier(custom.model, preprocessing, custom.class_names)
