"""Checks for a weights file uploaded for a registered model.

A file whose MD5 matches the official Keras Applications file for that model
is trusted as is. Every other file is untrusted: it is walked and loaded in
the isolated child process (:mod:`saliency_core.safety.isolation`) first.

Keras Applications publishes MD5 hashes only (the ``file_hash`` arguments in
``keras/src/applications/*.py``), so MD5 is what is compared; a forged file
would need an MD5 second preimage of the official file, which is not
practical. MobileNetV2's file has no published hash, so its uploads always go
through the child process.
"""

from __future__ import annotations

import hashlib
import os

from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.isolation import (
    IsolatedLoadError,
    make_workdir,
    remove_workdir,
    run_isolated,
)
from saliency_core.safety.limits import Limits, format_bytes, load_limits

OFFICIAL_WEIGHTS_MD5: dict[str, str] = {
    # keras/src/applications/vgg16.py, file_hash of WEIGHTS_PATH (with top)
    "vgg16": "64373286793e3c8b2b4e3219cbf3544b",
    # keras/src/applications/resnet.py, WEIGHTS_HASHES["resnet50"][0]
    "resnet50": "2cb95161c43110f7111970584f804107",
    # keras/src/applications/efficientnet.py, WEIGHTS_HASHES["b0"][0]
    "efficientnet_b0": "902e53a9f72be733fc0bcb005b3ebbac",
    # keras/src/applications/inception_v3.py, file_hash of WEIGHTS_PATH (with top)
    "inception_v3": "9a0d58056eeedaa3f26cb7ebd46da564",
}
"""MD5 of the official ImageNet weights file (with the classifier) per registered model."""


def official_weights_md5(key: str) -> str | None:
    """The published MD5 of the official weights file for model ``key``, if Keras has one."""
    return OFFICIAL_WEIGHTS_MD5.get(key)


def is_official_weights(key: str, data: bytes) -> bool:
    """Whether ``data`` is byte for byte the official Keras Applications file for ``key``."""
    expected = official_weights_md5(key)
    return expected is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() == expected


def check_weights_upload(key: str, data: bytes, limits: Limits | None = None) -> None:
    """Refuse a weights upload for registered model ``key`` unless it is safe to load.

    Official files (by hash) pass at once; any other file is walked and loaded
    into a fresh model in the isolated child process, under the limits.

    Args:
        key: the registered model's key.
        data: the uploaded file's bytes.
        limits: the limits in force (default :func:`load_limits`).

    Raises:
        WeightsUnavailableError: with a message for the user.
    """
    from saliency_core.models.registry import WeightsUnavailableError, get_spec

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
