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
* the gradient function also returns the logits of the forward pass it
  differentiates, and a negative class index there means "this row's top-1",
  so a caller that needs the top-5 and the map of the top class makes one model
  call, not a forward pass and then a gradient (:meth:`KerasClassifier.row_gradients`);
* large batches are split into nearly equal chunks of at most ``batch_size``
  images; by default that bound follows the model's memory per image and the
  machine's free memory (:mod:`saliency_core.batching`);
* before every chunk it passes a :func:`~saliency_core.safety.jobs.checkpoint`,
  so a job in the server's admission queue that nobody waits for any more stops
  within one batch;
* Guided Backpropagation (Springenberg et al. 2014, arXiv 1412.6806) gets its
  own traced function in which only the *gradient* of every ReLU and ReLU6 op
  is overridden (:data:`GUIDED_OVERRIDES`): the model's layers and weights are
  the user's, unchanged, and its forward pass is the same.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from saliency_core.batching import choose_batch_size, split_evenly
from saliency_core.methods.base import Target
from saliency_core.safety.jobs import checkpoint


def _guided_relu_gradient(op, grad):
    """Guided ReLU: pass a gradient back only where the input was positive *and* the
    gradient arriving from above is positive (Springenberg et al. 2014, eq. for
    "guided backpropagation"); plain backpropagation keeps only the first condition."""
    keep = tf.logical_and(op.inputs[0] > 0, grad > 0)
    return tf.where(keep, grad, tf.zeros_like(grad))


def _guided_relu6_gradient(op, grad):
    """Guided ReLU6: as :func:`_guided_relu_gradient`, and zero where the input is at
    or above 6, where ReLU6 is flat (its ordinary gradient is zero there too)."""
    x = op.inputs[0]
    keep = tf.logical_and(tf.logical_and(x > 0, x < 6), grad > 0)
    return tf.where(keep, grad, tf.zeros_like(grad))


GUIDED_OVERRIDES = {"Relu": "SaliencyStudioGuidedRelu", "Relu6": "SaliencyStudioGuidedRelu6"}
"""Op type -> the registered gradient it gets inside the guided traced function."""

for _name, _fn in ((GUIDED_OVERRIDES["Relu"], _guided_relu_gradient),
                   (GUIDED_OVERRIDES["Relu6"], _guided_relu6_gradient)):
    try:
        tf.RegisterGradient(_name)(_fn)
    except KeyError:  # registered already (the module was loaded again)
        pass


class UnsupportedModelError(ValueError):
    """The model is not a single-image-input, 2-D-output classifier."""


def start_runtime() -> None:
    """Start TensorFlow's runtime now (one tiny op): it looks for devices and prints its
    start-up notes here, where :mod:`saliency_core.quiet_tensorflow` holds them back,
    rather than at the first model call."""
    tf.constant(0.0).numpy()


TOP_ONE = -1
"""A class index that asks :meth:`KerasClassifier.row_gradients` for each row's own top-1."""


@dataclass(frozen=True)
class RowGradients:
    """One gradient call's results for a batch with one class per row.

    Attributes:
        gradients: ``(B, H, W, 3)`` d score / d pixels.
        scores: ``(B,)`` the explained score of each row.
        logits: ``(B, K)`` the pre-softmax scores of the same forward pass.
        class_indices: ``(B,)`` the class each row explains (its top-1 where
            :data:`TOP_ONE` was asked for).
        rows: for each image, the number of rows of the model call it was in
            (CPU float results can differ in the last bits between call sizes).
    """

    gradients: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    class_indices: np.ndarray
    rows: list[int]

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax probabilities ``(B, K)`` of :attr:`logits`."""
        return softmax(self.logits)


_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
            keras.layers.GlobalMaxPooling2D, keras.layers.GlobalAveragePooling2D)


def _contains(model: keras.Model, target: keras.layers.Layer) -> bool:
    return any(layer is target or (isinstance(layer, keras.Model) and _contains(layer, target))
               for layer in model.layers)


def list_spatial_layers(model: keras.Model, prefix: str = "") -> list[tuple[str, object]]:
    """Layers with a 4-D ``(B, h, w, k)`` output (h, w > 1), in graph order.

    Nested models are searched too; their layers are named ``outer/inner``.
    Pooling layers are left out, so the last entry is the last convolutional
    block's output, the usual Grad-CAM layer.
    """
    found: list[tuple[str, object]] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(list_spatial_layers(layer, f"{prefix}{layer.name}/"))
            continue
        if isinstance(layer, (keras.layers.InputLayer, *_POOLING)):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and (shape[1] or 2) > 1 and (shape[2] or 2) > 1:
            found.append((prefix + layer.name, layer))
    return found


def build_capture_model(model: keras.Model, target: keras.layers.Layer) -> keras.Model:
    """A model ``image -> [target layer's output, model output]`` sharing ``model``'s layers.

    The graph is rebuilt layer by layer (nested models are flattened into it), so
    the inner activation and the final score live in one graph and the score can
    be differentiated with respect to the activation. No layer is copied or changed.
    """
    captured: dict[str, object] = {}

    def rebuild(sub: keras.Model, x):
        if isinstance(sub, keras.Sequential):
            for layer in sub.layers:
                x = call(layer, x)
            return x
        structured = [x] if isinstance(sub.input, (list, tuple)) else x
        clone = keras.models.clone_model(sub, input_tensors=structured,
                                         clone_function=lambda lyr: lyr, call_function=call)
        return clone.outputs[0]

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Model) and _contains(layer, target):
            out = rebuild(layer, args[0])
        else:
            out = layer(*args, **kwargs)
        if layer is target:
            captured["activation"] = out
        return out

    inputs = keras.Input(tuple(model.inputs[0].shape[1:]))
    outputs = rebuild(model, inputs)
    if "activation" not in captured:
        raise ValueError(f"layer {target.name!r} is not part of the model")
    return keras.Model(inputs, [captured["activation"], outputs])


def activation_bytes(model: keras.Model) -> int:
    """The sum of every layer's output size for one image, in bytes (float32).

    A gradient keeps these for the backward pass, so this bounds what one image
    costs; pre-flight checks on the config cannot see it (an ``UpSampling2D(16)``
    is tiny on disk but makes each image 256 times larger).
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += activation_bytes(layer)
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        outputs = layer.output if isinstance(layer.output, list | tuple) else [layer.output]
        for output in outputs:
            shape = tuple(output.shape[1:])
            if None not in shape:
                total += 4 * math.prod(int(n) for n in shape)
    return total


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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``(B, K)`` of pre-softmax scores ``(B, K)``, computed in
    float64 (stable: the row maximum is subtracted first) and returned as float32."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


class KerasClassifier:
    """A Keras classifier with preprocessing, exposing scores and gradients.

    Args:
        model: a Keras model from preprocessed images to class scores; it is
            never modified.
        preprocess: maps 0-255 RGB ``(B, H, W, 3)`` to the model's input.
        class_names: one name per output.
        batch_size: largest batch sent through the model at once; ``None``
            chooses it from the model's memory per image and the free memory
            (:func:`saliency_core.batching.choose_batch_size`).
    """

    def __init__(self, model: keras.Model, preprocess: Callable, class_names: Sequence[str],
                 batch_size: int | None = None):
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
        self.activation_bytes = activation_bytes(model)
        self.batch_size = int(batch_size) if batch_size else choose_batch_size(
            self.activation_bytes)
        self.cost = None
        """The measured :class:`~saliency_core.safety.budget.ModelCost` of a pass, once known
        (set by whoever measured it: the checking child for own models, the loader for
        registered ones); the work budget needs it."""
        self.trace_count = 0
        image_spec = tf.TensorSpec((None, *self.input_size, 3), tf.float32)
        index_spec = tf.TensorSpec((None,), tf.int32)
        self._target_signature = [image_spec, index_spec, index_spec, tf.TensorSpec((), tf.bool)]
        self._logits_fn = tf.function(self._logits, input_signature=[image_spec])
        self._gradient_fn = tf.function(self._gradients, input_signature=self._target_signature)
        self._scores_fn = tf.function(self._scores, input_signature=self._target_signature)
        self._guided_fn = tf.function(self._guided_gradients,
                                      input_signature=self._target_signature)
        self._spatial_layers = list_spatial_layers(self.logit_model)
        self._layer_fns: dict[str, Callable] = {}
        self._activation_fns: dict[str, Callable] = {}

    # Traced bodies ---------------------------------------------------------
    def _logits(self, images):
        return self.logit_model(self.preprocess(images), training=False)

    def _target_scores(self, logits, class_index, contrast_index, use_probability):
        values = tf.where(use_probability, tf.nn.softmax(logits, axis=-1), logits)
        # one_hot(-1) is all zeros, so contrast_index = -1 means "no contrast".
        weights = (tf.one_hot(class_index, self.num_classes)
                   - tf.one_hot(contrast_index, self.num_classes))
        return tf.reduce_sum(values * weights, axis=-1)

    def _gradients(self, images, class_index, contrast_index, use_probability):
        self.trace_count += 1  # Python side effect: runs only while tracing.
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = self._logits(images)
            # A negative index is the row's top-1, from this same forward pass (an integer
            # choice: no gradient flows through it).
            class_index = tf.where(class_index < 0,
                                   tf.argmax(logits, axis=-1, output_type=tf.int32),
                                   class_index)
            scores = self._target_scores(logits, class_index, contrast_index, use_probability)
        return tape.gradient(scores, images), scores, logits, class_index

    def _guided_gradients(self, images, class_index, contrast_index, use_probability):
        """The gradient with every ReLU's backward pass replaced by the guided rule.

        ``gradient_override_map`` changes which gradient function the ops created
        inside it get; ``tf.gradients`` (graph-mode backprop, valid inside a
        ``tf.function``) honours it, where ``GradientTape`` would not. The forward
        ops, and so the scores, are the model's own.
        """
        self.trace_count += 1
        graph = tf.compat.v1.get_default_graph()
        with graph.gradient_override_map(GUIDED_OVERRIDES):
            scores = self._target_scores(self._logits(images), class_index, contrast_index,
                                         use_probability)
        grads = tf.gradients(scores, images)[0]
        return (tf.zeros_like(images) if grads is None else grads), scores

    def _scores(self, images, class_index, contrast_index, use_probability):
        self.trace_count += 1
        return self._target_scores(self._logits(images), class_index, contrast_index,
                                   use_probability)

    def _spatial_layer(self, layer_name: str):
        layers = dict(self._spatial_layers)
        if layer_name not in layers:
            raise ValueError(f"{layer_name!r} is not a spatial layer of this model; "
                             f"choose one of {', '.join(self.spatial_layer_names())}")
        return layers[layer_name]

    def _activation_fn(self, layer_name: str) -> Callable:
        """One traced function per layer: its output, by a forward pass up to it only."""
        if layer_name not in self._activation_fns:
            capture = build_capture_model(self.logit_model, self._spatial_layer(layer_name))
            # The sub-model keeps only the layers the activation depends on.
            upto = keras.Model(capture.inputs, capture.outputs[0])

            def run(images):
                self.trace_count += 1
                return upto(self.preprocess(images), training=False)

            image_spec = tf.TensorSpec((None, *self.input_size, 3), tf.float32)
            self._activation_fns[layer_name] = tf.function(run, input_signature=[image_spec])
        return self._activation_fns[layer_name]

    def _layer_fn(self, layer_name: str) -> Callable:
        """One traced function per layer: ``(activations, d score/d activations, scores)``."""
        if layer_name not in self._layer_fns:
            capture = build_capture_model(self.logit_model, self._spatial_layer(layer_name))

            def run(images, class_index, contrast_index, use_probability):
                self.trace_count += 1
                with tf.GradientTape() as tape:
                    activations, logits = capture(self.preprocess(images), training=False)
                    tape.watch(activations)
                    scores = self._target_scores(logits, class_index, contrast_index,
                                                 use_probability)
                return activations, tape.gradient(scores, activations), scores

            self._layer_fns[layer_name] = tf.function(run, input_signature=self._target_signature)
        return self._layer_fns[layer_name]

    # Public API ------------------------------------------------------------
    def _chunks(self, images: np.ndarray):
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != (*self.input_size, 3):
            raise ValueError(f"expected images of shape (B, {self.input_size[0]}, "
                             f"{self.input_size[1]}, 3), got {images.shape}")
        for start, stop in split_evenly(len(images), self.batch_size):
            checkpoint()
            yield start, images[start:stop]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Pre-softmax scores ``(B, K)`` for 0-255 RGB images ``(B, H, W, 3)``."""
        parts = [self._logits_fn(tf.constant(chunk)).numpy() for _, chunk in self._chunks(images)]
        return np.concatenate(parts, axis=0)

    def preprocessed(self, images: np.ndarray) -> np.ndarray:
        """What the network's first layer receives: the model's own preprocessing of
        0-255 RGB images ``(B, H, W, 3)``, as float32 ``(B, H, W, 3)``."""
        parts = [np.asarray(self.preprocess(tf.constant(chunk)), dtype=np.float32)
                 for _, chunk in self._chunks(images)]
        return np.concatenate(parts, axis=0)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(B, K)`` for images ``(B, H, W, 3)``."""
        return softmax(self.logits(images))

    def _run_batched(self, fn: Callable, images: np.ndarray, target: Target) -> list[np.ndarray]:
        """Call a traced ``fn(images, class, contrast, use_probability)`` chunk by chunk."""
        self._check_target(target)
        contrast = -1 if target.contrast_index is None else target.contrast_index
        parts: list[list[np.ndarray]] = []
        for _, chunk in self._chunks(images):
            n = len(chunk)
            outputs = fn(tf.constant(chunk), tf.fill([n], tf.constant(target.class_index)),
                         tf.fill([n], tf.constant(contrast)),
                         tf.constant(target.score == "probability"))
            parts.append([o.numpy() for o in (outputs if isinstance(outputs, tuple)
                                               else (outputs,))])
        return [np.concatenate(column, axis=0) for column in zip(*parts, strict=True)]

    def gradients(self, images: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of the target score with respect to the input pixels.

        Args:
            images: ``(B, H, W, 3)`` float 0-255 RGB.
            target: the class (and optional contrast class) and score kind.

        Returns:
            ``(gradients, scores)`` with shapes ``(B, H, W, 3)`` and ``(B,)``.
        """
        grads, scores, _logits, _classes = self._run_batched(self._gradient_fn, images, target)
        return grads, scores

    def guided_gradients(self, images: np.ndarray, target: Target
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Guided Backpropagation: the input gradient with guided ReLU gradients.

        Same shapes as :meth:`gradients`: ``(B, H, W, 3)`` and ``(B,)``. The model
        is not changed; ops other than ``Relu`` and ``Relu6`` (e.g. swish, leaky
        ReLU) keep their gradients, so a model without ReLUs gives the plain
        gradient (:meth:`guided_relu_count` tells).
        """
        grads, scores = self._run_batched(self._guided_fn, images, target)
        return grads, scores

    def guided_relu_count(self) -> int:
        """How many ``Relu``/``Relu6`` ops the guided function overrides (0: no ReLU,
        so Guided Backpropagation equals the vanilla gradient on this model)."""
        graph = self._guided_fn.get_concrete_function().graph
        return sum(op.type in GUIDED_OVERRIDES for op in graph.get_operations())

    def with_batch_size(self, batch_size: int) -> KerasClassifier:
        """The same classifier (model, traced functions) sending at most ``batch_size``
        images per model call: to repeat a recorded computation call for call, since
        CPU float results can differ in the last bits between call sizes."""
        view = copy.copy(self)
        view.batch_size = max(1, int(batch_size))
        return view

    def row_gradients(self, images: np.ndarray, class_indices, score: str = "logit"
                      ) -> RowGradients:
        """Gradients for a batch with one class per image, with the logits of the same pass.

        Class indices are a ``(None,)`` tensor in the traced signature, so several
        images with different classes share one model call and nothing retraces.
        :data:`TOP_ONE` (or ``None``) asks for the row's own top-1 class, chosen from
        the forward pass that is differentiated: the top-5 and the map of the top
        class cost one model call.

        Args:
            images: ``(B, H, W, 3)`` float 0-255 RGB.
            class_indices: ``(B,)`` the class of each image, ``TOP_ONE`` or ``None``
                for its top-1.
            score: ``"logit"`` or ``"probability"``.
        """
        images = np.asarray(images, dtype=np.float32)
        indices = np.array([TOP_ONE if c is None else int(c)
                            for c in np.asarray(class_indices, dtype=object).reshape(-1)],
                           dtype=np.int32)
        if len(indices) != len(images):
            raise ValueError("one class index per image is needed")
        for index in indices:
            if index != TOP_ONE:
                self._check_target(Target(int(index), score=score))
        parts: list[tuple[np.ndarray, ...]] = []
        rows: list[int] = []
        for start, chunk in self._chunks(images):
            n = len(chunk)
            outputs = self._gradient_fn(tf.constant(chunk),
                                        tf.constant(indices[start:start + n]),
                                        tf.fill([n], tf.constant(-1)),
                                        tf.constant(score == "probability"))
            parts.append(tuple(o.numpy() for o in outputs))
            rows.extend([n] * n)
        grads, scores, logits, chosen = (np.concatenate(c) for c in zip(*parts, strict=True))
        return RowGradients(grads, scores, logits, chosen, rows)

    def gradients_per_row(self, images: np.ndarray, class_indices, score: str = "logit"
                          ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """:meth:`row_gradients` as ``(gradients, scores, rows)``."""
        done = self.row_gradients(images, class_indices, score)
        return done.gradients, done.scores, done.rows

    def scores(self, images: np.ndarray, target: Target) -> np.ndarray:
        """The target score of each image ``(B, H, W, 3)``, shape ``(B,)`` (no gradients)."""
        return self._run_batched(self._scores_fn, images, target)[0]

    def warm_up(self, layers: bool = True) -> None:
        """Trace the score and gradient functions (then, with ``layers``, the last
        convolutional layer's, for Grad-CAM) on a blank image, so the first real
        prediction and maps do not pay for tracing (the server does this for the default
        model when it starts). Each function is traced once: calling this again only
        traces what is missing."""
        blank = np.zeros((1, *self.input_size, 3), np.float32)
        self.logits(blank)
        self.gradients(blank, Target(0))
        if layers and self._spatial_layers:
            self.layer_gradients(blank, Target(0))

    def spatial_layer_names(self) -> list[str]:
        """Layers Grad-CAM can use, in graph order (``outer/inner`` inside nested models)."""
        return [name for name, _ in self._spatial_layers]

    def describe_layer(self, name: str) -> str:
        """A layer's name with its output grid and place, for people choosing one.

        E.g. ``"re_lu_15 · 7×7 grid, 1280 channels (last)"``: later layers see
        larger regions but give coarser maps.
        """
        names = self.spatial_layer_names()
        if name not in names:
            return name
        shape = dict(self._spatial_layers)[name].output.shape
        place = "last" if name == names[-1] else f"{names.index(name) + 1} of {len(names)}"
        return f"{name} · {shape[1]}×{shape[2]} grid, {shape[3]} channels ({place})"

    def default_cam_layer(self) -> str:
        """The last convolutional (spatial, non-pooling) layer.

        Raises:
            UnsupportedModelError: the model has no such layer.
        """
        if not self._spatial_layers:
            raise UnsupportedModelError("The model has no convolutional layer for Grad-CAM.")
        return self._spatial_layers[-1][0]

    def layer_gradients(self, images: np.ndarray, target: Target, layer: str | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Activations of ``layer`` and the target score's gradient with respect to them.

        Returns:
            ``(activations, gradients, scores)``: ``(B, h, w, k)``, ``(B, h, w, k)``, ``(B,)``.
        """
        fn = self._layer_fn(layer or self.default_cam_layer())
        activations, grads, scores = self._run_batched(fn, images, target)
        return activations, grads, scores

    def layer_activations(self, images: np.ndarray, layer: str | None = None) -> np.ndarray:
        """The output of ``layer`` (default: the last convolutional one), by a forward pass
        that stops there: no score and no gradient (Score-CAM needs only this).

        Returns:
            ``(B, h, w, k)`` float32 activations for images ``(B, H, W, 3)``.
        """
        fn = self._activation_fn(layer or self.default_cam_layer())
        return np.concatenate([fn(tf.constant(chunk)).numpy() for _, chunk in self._chunks(images)],
                              axis=0)

    def _check_target(self, target: Target) -> None:
        for index in (target.class_index, target.contrast_index):
            if index is not None and not 0 <= index < self.num_classes:
                raise ValueError(f"class index {index} is outside 0..{self.num_classes - 1}")
