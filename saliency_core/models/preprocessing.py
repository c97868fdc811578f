"""Each model's own input preprocessing, written with ``keras.ops``.

These run *inside* the differentiated graph, so gradients are taken with respect
to the 0-255 RGB pixels the user sees, not the normalised tensor. Each input is
``(B, H, W, 3)`` float32 RGB in 0-255.

* ``"lite"``: ``(x - 127) / 128``, EfficientNet-Lite's TF training scaling
  (MEAN_RGB=127, STDDEV_RGB=128). Verified against the checkpoint's first
  BatchNorm statistics, see ``tests/test_default_model.py``.
* ``"tf"``: ``x / 127.5 - 1`` (MobileNetV2, InceptionV3; Keras ``mode="tf"``).
* ``"caffe"``: RGB -> BGR, minus the ImageNet BGR mean (VGG16, ResNet50;
  Keras ``mode="caffe"``).
* ``"raw"``: identity, for models that rescale inside themselves (EfficientNetB0).
* ``"unit"``: ``x / 255``, common for models trained on ``[0, 1]`` images.
"""

from __future__ import annotations

from collections.abc import Callable

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def _lite(x):
    return (x - 127.0) / 128.0


def _tf(x):
    return x / 127.5 - 1.0


def _caffe(x):
    from keras import ops  # here, so that reading the labels below does not start TensorFlow

    bgr = ops.flip(x, axis=-1)
    return bgr - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=x.dtype)


def _raw(x):
    return x


def _unit(x):
    return x / 255.0


PREPROCESSORS: dict[str, Callable] = {"lite": _lite, "tf": _tf, "caffe": _caffe, "raw": _raw,
                                      "unit": _unit}

PREPROCESSING_LABELS: dict[str, str] = {
    "raw": "none: the model takes 0-255 pixels",
    "unit": "x / 255 (pixels in [0, 1])",
    "tf": "x / 127.5 - 1 (pixels in [-1, 1]; MobileNet, Inception)",
    "lite": "(x - 127) / 128 (EfficientNet-Lite)",
    "caffe": "RGB to BGR minus the ImageNet mean (VGG, ResNet)",
}


def get_preprocessor(name: str) -> Callable:
    """Return the preprocessing function called ``name`` (see module docstring)."""
    try:
        return PREPROCESSORS[name]
    except KeyError:
        known = sorted(PREPROCESSORS)
        raise ValueError(f"unknown preprocessing {name!r}; known: {known}") from None
