"""The TensorFlow adapter on tiny Keras models, against GradientTape and finite differences."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from saliency_core.methods import Target, VanillaGradient
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.tf_adapter import KerasClassifier, UnsupportedModelError, build_logit_model

SIZE = 8
NAMES = ("a", "b", "c")


def tiny_cnn(activation="softmax", seed=0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="tanh")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation=activation, name="head")(x)
    return keras.Model(inputs, outputs)


def random_images(n=2, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def test_gradient_matches_finite_differences():
    clf = KerasClassifier(tiny_cnn(), get_preprocessor("tf"), NAMES)
    image = random_images(1)
    grads, _ = clf.gradients(image, Target(1))
    rng = np.random.default_rng(2)
    eps = 0.5  # pixels are 0-255; tf preprocessing divides by 127.5
    for _ in range(12):
        y, x, c = rng.integers(0, SIZE), rng.integers(0, SIZE), rng.integers(0, 3)
        plus, minus = image.copy(), image.copy()
        plus[0, y, x, c] += eps
        minus[0, y, x, c] -= eps
        fd = (clf.logits(plus)[0, 1] - clf.logits(minus)[0, 1]) / (2 * eps)
        assert grads[0, y, x, c] == pytest.approx(fd, rel=2e-2, abs=2e-5)


def test_gradient_is_of_the_pre_softmax_score_through_preprocessing():
    model = tiny_cnn()
    clf = KerasClassifier(model, get_preprocessor("tf"), NAMES)
    images = random_images(3)
    grads, scores = clf.gradients(images, Target(2))
    # Ground truth with GradientTape: logits = input of the softmax, on preprocessed pixels.
    pre_softmax = keras.Model(model.inputs, model.get_layer("head").input)
    head = model.get_layer("head")
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        features = pre_softmax(x / 127.5 - 1.0)
        logits = tf.matmul(features, head.kernel) + head.bias
        target = logits[:, 2]
    expected = tape.gradient(target, x).numpy()
    np.testing.assert_allclose(grads, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(scores, target.numpy(), rtol=1e-5)


def test_probability_and_contrast_scores():
    clf = KerasClassifier(tiny_cnn(), get_preprocessor("raw"), NAMES)
    images = random_images(2)
    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        logits = clf.logit_model(x)
        prob = tf.nn.softmax(logits)[:, 0]
        contrast = logits[:, 0] - logits[:, 2]
    g_prob, s_prob = clf.gradients(images, Target(0, score="probability"))
    np.testing.assert_allclose(g_prob, tape.gradient(prob, x).numpy(), rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(s_prob, prob.numpy(), rtol=1e-5)
    g_con, s_con = clf.gradients(images, Target(0, contrast_index=2))
    np.testing.assert_allclose(g_con, tape.gradient(contrast, x).numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(s_con, contrast.numpy(), rtol=1e-5)


def test_users_model_is_not_changed():
    model = tiny_cnn("softmax")
    before = [w.copy() for w in model.get_weights()]
    images = random_images(2)
    outputs_before = model.predict(images / 127.5 - 1, verbose=0)
    clf = KerasClassifier(model, get_preprocessor("tf"), NAMES)
    VanillaGradient().attribute(clf, images[0], Target(0))
    clf.gradients(images, Target(1, score="probability"))
    assert model.get_layer("head").activation is keras.activations.softmax
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_allclose(model.predict(images / 127.5 - 1, verbose=0), outputs_before)
    np.testing.assert_allclose(outputs_before.sum(axis=1), 1.0, rtol=1e-5)  # still softmax
    assert clf.logit_model is not model
    assert "rebuilt" in clf.head_note


def test_logit_model_variants():
    softmax_layer = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                                      keras.layers.Dense(3), keras.layers.Softmax()])
    logit_model, how = build_logit_model(softmax_layer)
    assert "stopped before" in how
    images = random_images(2)
    probs = softmax_layer.predict(images, verbose=0)
    logits = logit_model.predict(images, verbose=0)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probs, rtol=1e-5)
    plain = tiny_cnn(activation=None)
    assert build_logit_model(plain) == (plain, "the model outputs logits")


def test_unsupported_models_are_refused():
    two_d = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    with pytest.raises(UnsupportedModelError, match="RGB image"):
        KerasClassifier(two_d, get_preprocessor("raw"), NAMES)
    with pytest.raises(UnsupportedModelError, match="class names"):
        KerasClassifier(tiny_cnn(), get_preprocessor("raw"), ("only", "two"))


def test_changing_class_image_or_batch_does_not_retrace():
    clf = KerasClassifier(tiny_cnn(), get_preprocessor("tf"), NAMES, batch_size=4)
    for class_index in range(3):
        for n in (1, 3, 4, 7):
            clf.gradients(random_images(n, seed=class_index + n), Target(class_index))
    clf.gradients(random_images(2), Target(0, contrast_index=1, score="probability"))
    assert clf.trace_count == 1


def test_batches_are_chunked_and_consistent():
    clf = KerasClassifier(tiny_cnn(), get_preprocessor("tf"), NAMES, batch_size=2)
    images = random_images(5)
    batched, scores = clf.gradients(images, Target(1))
    single = np.concatenate([clf.gradients(im[None], Target(1))[0] for im in images])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-8)
    assert batched.shape == (5, SIZE, SIZE, 3) and scores.shape == (5,)


def test_bad_inputs():
    clf = KerasClassifier(tiny_cnn(), get_preprocessor("tf"), NAMES)
    with pytest.raises(ValueError, match="outside"):
        clf.gradients(random_images(1), Target(3))
    with pytest.raises(ValueError, match="shape"):
        clf.logits(np.zeros((1, SIZE + 1, SIZE, 3)))


@pytest.mark.parametrize("name, mode, module", [
    ("tf", "tf", "mobilenet_v2"), ("caffe", "caffe", "vgg16"), ("caffe", "caffe", "resnet50"),
    ("tf", "tf", "inception_v3")])
def test_preprocessing_matches_keras(name, mode, module):
    images = random_images(2)
    ours = keras.ops.convert_to_numpy(get_preprocessor(name)(tf.constant(images)))
    reference = getattr(keras.applications, module).preprocess_input(images.copy())
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-4)


def test_lite_preprocessing():
    out = get_preprocessor("lite")(tf.constant([[[[0.0, 127.0, 255.0]]]]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), [[[[-127 / 128, 0, 1]]]],
                               rtol=1e-6)
    with pytest.raises(ValueError):
        get_preprocessor("torch")


def test_default_batch_bound_follows_the_models_memory_per_image():
    from saliency_core.batching import choose_batch_size
    from saliency_core.tf_adapter import activation_bytes

    model = tiny_cnn()
    clf = KerasClassifier(model, get_preprocessor("tf"), NAMES)
    assert clf.activation_bytes == activation_bytes(model) > 0
    assert abs(clf.batch_size - choose_batch_size(clf.activation_bytes)) <= 1  # free memory moves
    fixed = KerasClassifier(model, get_preprocessor("tf"), NAMES, batch_size=2)
    _, _, rows = fixed.gradients_per_row(random_images(5), [0, 1, 2, 0, 1])
    assert rows == [2, 2, 2, 2, 1]  # chunks 2 + 2 + 1 (at most 2, nearly equal)


def test_warm_up_traces_so_the_first_real_calls_do_not():
    clf = KerasClassifier(tiny_cnn(), get_preprocessor("tf"), NAMES, batch_size=4)
    clf.warm_up()
    traced = (clf._logits_fn.experimental_get_tracing_count(),
              clf._gradient_fn.experimental_get_tracing_count())
    assert traced == (1, 1)
    layer_fn = clf._layer_fn(clf.default_cam_layer())
    assert layer_fn.experimental_get_tracing_count() == 1
    clf.probabilities(random_images(3))
    clf.gradients(random_images(2), Target(2))
    clf.layer_gradients(random_images(2), Target(1))
    assert (clf._logits_fn.experimental_get_tracing_count(),
            clf._gradient_fn.experimental_get_tracing_count()) == traced
    assert layer_fn.experimental_get_tracing_count() == 1


def test_row_gradients_take_the_top_one_and_the_logits_from_the_same_call():
    model = tiny_cnn()
    clf = KerasClassifier(model, get_preprocessor("tf"), NAMES, batch_size=4)
    images = random_images(6, seed=4)
    logits = clf.logits(images)
    done = clf.row_gradients(images, [None, 0, None, 2, None, 1])
    top1 = logits.argmax(axis=1)
    expected_classes = [top1[0], 0, top1[2], 2, top1[4], 1]
    assert done.class_indices.tolist() == [int(c) for c in expected_classes]
    np.testing.assert_allclose(done.logits, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(done.probabilities, clf.probabilities(images), rtol=1e-5)
    assert done.rows == [3, 3, 3, 3, 3, 3]  # 6 images in nearly equal chunks of at most 4
    # each row's gradient is that of its own class's logit, as GradientTape gives it
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        chosen = tf.gather(clf.logit_model(x / 127.5 - 1.0), expected_classes, axis=1,
                           batch_dims=0)
        total = tf.reduce_sum(tf.linalg.diag_part(chosen))
    np.testing.assert_allclose(done.gradients, tape.gradient(total, x).numpy(), rtol=1e-4,
                               atol=1e-7)
    np.testing.assert_allclose(done.scores, logits[np.arange(6), expected_classes], rtol=1e-5)
    # the top-1 of a probability score, and other batch sizes, use the same traced function
    clf.row_gradients(images[:1], [None], score="probability")
    clf.gradients(images[:2], Target(1))
    assert clf._gradient_fn.experimental_get_tracing_count() == 1
    with pytest.raises(ValueError, match="outside"):
        clf.row_gradients(images[:1], [3])
