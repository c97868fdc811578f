"""Checks for a weights file uploaded for a registered model.

A file whose MD5 matches the official Keras Applications file for that model
is trusted as is. Every other file is untrusted: it is walked and loaded in
the isolated child process (:mod:`saliency_core.safety.isolation`) first.

The check itself, which loads the file into the registered model in the isolated
child process, is :func:`saliency_core.models.registry.check_weights_upload` (the
safety layer never imports the model registry).

Keras Applications publishes MD5 hashes only (the ``file_hash`` arguments in
``keras/src/applications/*.py``), so MD5 is what is compared; a forged file
would need an MD5 second preimage of the official file, which is not
practical. MobileNetV2's file has no published hash, so its uploads always go
through the child process.
"""

from __future__ import annotations

import hashlib

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
