"""The one place where TensorFlow computes class scores and their gradients.

:class:`KerasClassifier` wraps a Keras image classifier so that every method in
:mod:`saliency_core.methods` can ask for ``d score / d pixels`` without knowing
about TensorFlow:

* the model's own preprocessing runs inside the differentiated graph, so
  gradients are with respect to 0-255 RGB pixels, shape ``(B, H, W, 3)``;
* the score is the **pre-softmax** class score ``S_c`` (Simonyan et al. 2013,
  arXiv 1312.6034, eq. 1), or on request the softmax probability, or a class
  contrast ``S_a - S_b``;
* a softmax head is never changed in place: :func:`build_logit_model` builds a
  new model on the same layers with a linear copy of the head;
* one ``tf.function`` is traced per model; the class indices are tensors and
  the batch dimension is unknown, so changing the class, the image or the
  batch size never retraces (:attr:`KerasClassifier.trace_count` proves it);
* large batches are split into chunks of ``batch_size`` to bound memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from saliency_core.methods.base import Target


class UnsupportedModelError(ValueError):
    """The model is not a single-image-input, 2-D-output classifier."""


def _is_softmax(fn) -> bool:
    return fn is keras.activations.softmax or getattr(fn, "__name__", "") == "softmax"


def build_logit_model(model: keras.Model) -> tuple[keras.Model, str]:
    """Return a model that outputs pre-softmax scores, without changing ``model``.

    * a final ``Softmax`` layer or ``Activation("softmax")``: the new model stops
      at that layer's input;
    * a final layer with ``activation="softmax"`` (e.g. ``Dense``): the new model
      ends in a freshly built copy of that layer with a linear activation,
      holding copies of its weights;
    * otherwise the model is taken to output logits already.

    Returns:
        ``(logit_model, how)`` where ``how`` describes what was done.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError("The model must have exactly one input and one output.")
    if len(model.inputs[0].shape) != 4 or model.inputs[0].shape[-1] != 3:
        raise UnsupportedModelError(
            f"The model's input must be an RGB image batch (B, H, W, 3), not "
            f"{tuple(model.inputs[0].shape)}.")
    if len(model.outputs[0].shape) != 2:
        raise UnsupportedModelError(
            f"The model's output must be class scores (B, classes), not "
            f"{tuple(model.outputs[0].shape)}.")
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and _is_softmax(last.activation)):
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits"), \
            "stopped before the final softmax layer"
    if _is_softmax(getattr(last, "activation", None)):
        config = last.get_config()
        config["activation"] = "linear"
        config["name"] = f"{last.name}_linear"
        head = type(last).from_config(config)
        outputs = head(last.input)
        head.set_weights([np.array(w) for w in last.get_weights()])
        return keras.Model(model.inputs, outputs, name=f"{model.name}_logits"), \
            f"rebuilt the head '{last.name}' with a linear activation"
    return model, "the model outputs logits"


class KerasClassifier:
    """A Keras classifier with preprocessing, exposing scores and gradients.

    Args:
        model: a Keras model from preprocessed images to class scores; it is
            never modified.
        preprocess: maps 0-255 RGB ``(B, H, W, 3)`` to the model's input.
        class_names: one name per output.
        batch_size: largest batch sent through the model at once.
    """

    def __init__(self, model: keras.Model, preprocess: Callable, class_names: Sequence[str],
                 batch_size: int = 16):
        self.model = model
        self.preprocess = preprocess
        self.logit_model, self.head_note = build_logit_model(model)
        height, width = model.inputs[0].shape[1:3]
        if height is None or width is None:
            raise UnsupportedModelError("The model's input height and width must be fixed.")
        self.input_size: tuple[int, int] = (int(height), int(width))
        self.num_classes = int(self.logit_model.outputs[0].shape[-1])
        if len(class_names) != self.num_classes:
            raise UnsupportedModelError(
                f"{len(class_names)} class names for {self.num_classes} outputs.")
        self.class_names = tuple(class_names)
        self.batch_size = batch_size
        self.trace_count = 0
        image_spec = tf.TensorSpec((None, *self.input_size, 3), tf.float32)
        index_spec = tf.TensorSpec((None,), tf.int32)
        self._logits_fn = tf.function(self._logits, input_signature=[image_spec])
        self._gradient_fn = tf.function(
            self._gradients,
            input_signature=[image_spec, index_spec, index_spec, tf.TensorSpec((), tf.bool)])

    # Traced bodies ---------------------------------------------------------
    def _logits(self, images):
        return self.logit_model(self.preprocess(images), training=False)

    def _gradients(self, images, class_index, contrast_index, use_probability):
        self.trace_count += 1  # Python side effect: runs only while tracing.
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = self._logits(images)
            values = tf.where(use_probability, tf.nn.softmax(logits, axis=-1), logits)
            # one_hot(-1) is all zeros, so contrast_index = -1 means "no contrast".
            weights = (tf.one_hot(class_index, self.num_classes)
                       - tf.one_hot(contrast_index, self.num_classes))
            scores = tf.reduce_sum(values * weights, axis=-1)
        return tape.gradient(scores, images), scores

    # Public API ------------------------------------------------------------
    def _chunks(self, images: np.ndarray):
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != (*self.input_size, 3):
            raise ValueError(f"expected images of shape (B, {self.input_size[0]}, "
                             f"{self.input_size[1]}, 3), got {images.shape}")
        for start in range(0, len(images), self.batch_size):
            yield start, images[start:start + self.batch_size]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Pre-softmax scores ``(B, K)`` for 0-255 RGB images ``(B, H, W, 3)``."""
        parts = [self._logits_fn(tf.constant(chunk)).numpy() for _, chunk in self._chunks(images)]
        return np.concatenate(parts, axis=0)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(B, K)`` for images ``(B, H, W, 3)``."""
        logits = self.logits(images).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def gradients(self, images: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of the target score with respect to the input pixels.

        Args:
            images: ``(B, H, W, 3)`` float 0-255 RGB.
            target: the class (and optional contrast class) and score kind.

        Returns:
            ``(gradients, scores)`` with shapes ``(B, H, W, 3)`` and ``(B,)``.
        """
        self._check_target(target)
        grads, scores = [], []
        for _, chunk in self._chunks(images):
            n = len(chunk)
            g, s = self._gradient_fn(
                tf.constant(chunk),
                tf.fill([n], tf.constant(target.class_index, tf.int32)),
                tf.fill([n], tf.constant(-1 if target.contrast_index is None
                                         else target.contrast_index, tf.int32)),
                tf.constant(target.score == "probability"))
            grads.append(g.numpy())
            scores.append(s.numpy())
        return np.concatenate(grads, axis=0), np.concatenate(scores, axis=0)

    def _check_target(self, target: Target) -> None:
        for index in (target.class_index, target.contrast_index):
            if index is not None and not 0 <= index < self.num_classes:
                raise ValueError(f"class index {index} is outside 0..{self.num_classes - 1}")
