"""Every attribution method through the TensorFlow adapter, on tiny and real models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from saliency_core.imaging import fit_to_model, load_image
from saliency_core.methods import METHODS, IntegratedGradients, Target, get_method
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.models.registry import MODELS
from saliency_core.samples import read_sample
from saliency_core.tf_adapter import KerasClassifier, UnsupportedModelError

SIZE = 16
NAMES = ("a", "b", "c")
FAST_PARAMS = {"smoothgrad": {"samples": 5}, "smoothgrad_sq": {"samples": 5},
               "vargrad": {"samples": 5}, "integrated_gradients": {"steps": 8},
               "occlusion": {"patch": 8, "stride": 4}, "xrai": {"steps": 4},
               "blur_ig": {"steps": 6, "max_sigma": 4.0}, "guided_ig": {"steps": 10},
               "rise": {"masks": 40, "grid": 4}}


def tiny_cnn(seed=0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="tanh", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="tanh", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def images(n=1, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture
def classifier():
    return KerasClassifier(tiny_cnn(), get_preprocessor("tf"), NAMES, batch_size=4)


@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_runs_with_the_right_shape(classifier, key):
    result = get_method(key, **FAST_PARAMS.get(key, {})).attribute(classifier, images()[0],
                                                                   Target(1))
    assert result.values.shape[:2] == (SIZE, SIZE) and result.values.shape[2] in (1, 3)
    assert result.values.dtype == np.float32 and np.isfinite(result.values).all()
    assert result.score == pytest.approx(float(classifier.logits(images())[0, 1]), rel=1e-4)


def test_no_method_retraces_when_the_class_or_image_changes(classifier):
    runs = [(key, c, seed) for c, seed in ((0, 1), (2, 5)) for key in METHODS]
    traces = []
    for key, class_index, seed in runs:
        get_method(key, **FAST_PARAMS.get(key, {})).attribute(
            classifier, images(seed=seed)[0], Target(class_index))
        traces.append(classifier.trace_count)
    half = len(METHODS)
    assert traces[half - 1] == traces[-1], "a method retraced on a new class or image"
    # gradients, scores, one layer function (the CAMs share the layer), one forward
    # function to that layer (Score-CAM) and the guided gradients
    assert classifier.trace_count == 5


@pytest.mark.parametrize("key", ["smoothgrad", "integrated_gradients", "occlusion"])
def test_batched_and_unbatched_agree_through_tensorflow(key):
    model = tiny_cnn()
    one = KerasClassifier(model, get_preprocessor("tf"), NAMES, batch_size=1)
    many = KerasClassifier(model, get_preprocessor("tf"), NAMES, batch_size=8)
    params = FAST_PARAMS[key]
    a = get_method(key, **params).attribute(one, images()[0], Target(0)).values
    b = get_method(key, **params).attribute(many, images()[0], Target(0)).values
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_completeness_on_a_tiny_model(classifier):
    for baseline in ("black", "blurred", "noise"):
        result = IntegratedGradients(steps=200, baseline=baseline).attribute(
            classifier, images()[0], Target(2))
        assert result.info["completeness gap"] < 0.02, (baseline, result.info)


@pytest.mark.slow
def test_integrated_gradients_completeness_on_the_default_model(default_classifier):
    image = load_image(read_sample("chelsea"))
    x, _ = fit_to_model(image.pixels, default_classifier.input_size)
    result = IntegratedGradients(steps=200).attribute(default_classifier, x, Target(281))
    assert result.info["completeness gap"] < 0.05, result.info


def test_layer_gradients_match_gradient_tape(classifier):
    x = images(2)
    acts, grads, scores = classifier.layer_gradients(x, Target(1), "conv2")
    model = classifier.model
    feature = keras.Model(model.inputs, model.get_layer("conv2").output)
    head = keras.Model(model.get_layer("pool").input, model.get_layer("head").input)
    dense = model.get_layer("head")
    with tf.GradientTape() as tape:
        a = feature(tf.constant(x) / 127.5 - 1.0)
        tape.watch(a)
        logits = tf.matmul(head(a), dense.kernel) + dense.bias
        s = logits[:, 1]
    np.testing.assert_allclose(acts, a.numpy(), rtol=1e-5, atol=1e-6)
    # the forward-only function (Score-CAM's) gives the same activations
    np.testing.assert_allclose(classifier.layer_activations(x, "conv2"), a.numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(grads, tape.gradient(s, a).numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(scores, s.numpy(), rtol=1e-5)


def test_gradcam_layer_choice(classifier):
    assert classifier.spatial_layer_names() == ["conv1", "conv2"]  # pooling is skipped
    assert classifier.default_cam_layer() == "conv2"
    with pytest.raises(ValueError, match="not a spatial layer"):
        classifier.layer_gradients(images(), Target(0), "head")
    dense_only = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                                   keras.layers.Dense(3)])
    flat = KerasClassifier(dense_only, get_preprocessor("raw"), NAMES)
    with pytest.raises(UnsupportedModelError, match="no convolutional layer"):
        flat.default_cam_layer()


@pytest.mark.parametrize("style", ["sequential", "functional"])
def test_gradcam_in_a_nested_model(style):
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False,
                                          input_shape=(64, 64, 3), alpha=0.35)
    if style == "sequential":
        outer = keras.Sequential([keras.Input((64, 64, 3)), base,
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    else:
        inputs = keras.Input((64, 64, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(base(inputs))
        outer = keras.Model(inputs, keras.layers.Dense(3)(pooled))
    weights_before = [w.copy() for w in outer.get_weights()]
    clf = KerasClassifier(outer, get_preprocessor("tf"), NAMES)
    assert clf.default_cam_layer() == f"{base.name}/out_relu"
    x = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    for key, params in (("gradcam", {}), ("layercam", {}), ("scorecam", {"channels": "64"})):
        result = get_method(key, **params).attribute(clf, x, Target(0))
        assert result.values.shape == (64, 64, 1) and (result.values >= 0).all(), key
    _, _, scores = clf.layer_gradients(x[None], Target(0))
    np.testing.assert_allclose(scores, clf.logits(x[None])[:, 0], rtol=1e-4)
    for old, new in zip(weights_before, outer.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.slow
def test_gradcam_finds_a_layer_in_every_registered_model():
    expected = {"vgg16": "block5_conv3", "mobilenet_v2": "out_relu",
                "resnet50": "conv5_block3_out", "efficientnet_b0": "top_activation",
                "inception_v3": "mixed10"}
    for key, spec in MODELS.items():
        model = spec.build()
        clf = KerasClassifier(model, get_preprocessor(spec.preprocessing), spec.class_names,
                              batch_size=1)
        layer = clf.default_cam_layer()
        if key in expected:
            assert layer == expected[key], (key, layer)
        shape = model.get_layer(layer.split("/")[-1]).output.shape
        assert len(shape) == 4 and shape[1] > 1, (key, layer, shape)
        del model, clf
        keras.backend.clear_session()


@pytest.mark.slow
def test_gradcam_on_the_default_model_points_at_the_cat(default_classifier):
    assert default_classifier.default_cam_layer().startswith("re_lu")
    image = load_image(read_sample("chelsea"))
    x, _ = fit_to_model(image.pixels, default_classifier.input_size)
    cam = get_method("gradcam").attribute(default_classifier, x, Target(285)).values[..., 0]
    assert cam.shape == (224, 224) and cam.max() > 0
    # the cat fills the crop: the map's mass is not in the outer frame
    inner = cam[32:-32, 32:-32].sum() / cam.sum()
    assert inner > 0.5


@pytest.mark.parametrize("key", ["vanilla", "gradient_x_input", "gradcam", "guided_backprop",
                                 "guided_gradcam"])
def test_several_classes_of_one_image_match_one_by_one(classifier, key):
    """explain_classes sends gradient methods' classes through the model in one call
    (one class per row) and gives what explaining each class alone gives."""
    from saliency_core.pipeline import batches_classes, explain, explain_classes

    x = images()[0]
    calls = []
    original = classifier.row_gradients
    classifier.row_gradients = lambda *a, **k: calls.append(1) or original(*a, **k)
    together = explain_classes(classifier, x, [2, 0, 1], key)
    assert len(calls) == (1 if batches_classes(key) else 0)
    for class_index, explanation in zip([2, 0, 1], together, strict=True):
        alone = explain(classifier, x, Target(class_index), key).attribution
        np.testing.assert_allclose(explanation.attribution.values, alone.values, rtol=1e-4,
                                   atol=1e-6)
        assert explanation.attribution.score == pytest.approx(alone.score, rel=1e-5)


# ----------------------------------------------------------------- Guided Backpropagation


def relu_cnn(seed=0) -> keras.Model:
    """ReLU in three forms: a fused ``activation="relu"``, a ``ReLU(max_value=6)`` layer
    (a Relu6 op, as in EfficientNet-Lite0 and MobileNetV2) and a ReLU dense layer."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = keras.layers.ReLU(max_value=6.0, name="relu6")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(10, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def guided_reference(model: keras.Model, x: np.ndarray, class_index: int) -> np.ndarray:
    """Guided Backpropagation written out by hand: the forward pass of ``relu_cnn`` with
    its own weights, every ReLU replaced by one whose gradient is the guided rule."""

    @tf.custom_gradient
    def guided_relu(z):
        def backward(upstream):
            return tf.where((z > 0) & (upstream > 0), upstream, tf.zeros_like(upstream))
        return tf.nn.relu(z), backward

    @tf.custom_gradient
    def guided_relu6(z):
        def backward(upstream):
            return tf.where((z > 0) & (z < 6) & (upstream > 0), upstream,
                            tf.zeros_like(upstream))
        return tf.nn.relu6(z), backward

    layer = model.get_layer
    images = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(images)
        h = images / 127.5 - 1.0  # the "tf" preprocessing, inside the gradient
        h = guided_relu(tf.nn.conv2d(h, layer("conv1").kernel, 1, "SAME") + layer("conv1").bias)
        h = guided_relu6(tf.nn.conv2d(h, layer("conv2").kernel, 1, "SAME")
                         + layer("conv2").bias)
        h = tf.reshape(h, (len(x), -1))
        h = guided_relu(h @ layer("hidden").kernel + layer("hidden").bias)
        score = (h @ layer("head").kernel + layer("head").bias)[:, class_index]  # logit
    return tape.gradient(score, images).numpy()


def test_guided_backprop_matches_the_relu_override_written_out():
    model = relu_cnn()
    weights = [w.copy() for w in model.get_weights()]
    activations = {layer.name: getattr(layer, "activation", None) for layer in model.layers}
    clf = KerasClassifier(model, get_preprocessor("tf"), NAMES, batch_size=4)
    x = images(3, seed=7)
    expected = guided_reference(model, x, 2)
    grads, scores = clf.guided_gradients(x, Target(2))
    np.testing.assert_allclose(grads, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(scores, clf.logits(x)[:, 2], rtol=1e-5)
    single = get_method("guided_backprop").attribute(clf, x[1], Target(2))
    np.testing.assert_allclose(single.values, expected[1], rtol=1e-4,
                               atol=1e-6 * np.abs(expected).max())
    assert single.info["ReLUs with guided gradients"] == clf.guided_relu_count() == 3
    # it is not the plain gradient (the test would be empty if it were) ...
    vanilla, _ = clf.gradients(x, Target(2))
    assert not np.allclose(vanilla, expected, atol=1e-3 * np.abs(expected).max())
    # ... and the plain gradient is still the plain one: the override stayed inside
    with tf.GradientTape() as tape:
        t = tf.constant(x)
        tape.watch(t)
        s = clf.logit_model(t / 127.5 - 1.0)[:, 2]
    np.testing.assert_allclose(vanilla, tape.gradient(s, t).numpy(), rtol=1e-4, atol=1e-7)
    # the user's model is unchanged: weights, activations, outputs
    for old, new in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert {layer.name: getattr(layer, "activation", None) for layer in model.layers} == \
        activations


def test_guided_gradcam_is_guided_backprop_times_the_upsampled_cam():
    clf = KerasClassifier(relu_cnn(1), get_preprocessor("tf"), NAMES, batch_size=4)
    x = images(seed=3)[0]
    result = get_method("guided_gradcam").attribute(clf, x, Target(0))
    cam = get_method("gradcam").attribute(clf, x, Target(0))
    guided = guided_reference(clf.model, x[None], 0)[0]
    assert result.info["layer"] == "relu6" == cam.info["layer"]
    assert result.values.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(result.values, guided * cam.values, rtol=1e-4,
                               atol=1e-6 * np.abs(result.values).max())


def test_guided_backprop_without_relus_is_the_vanilla_gradient(classifier):
    assert classifier.guided_relu_count() == 0  # tiny_cnn uses tanh
    x = images(2)
    guided, _ = classifier.guided_gradients(x, Target(1))
    vanilla, _ = classifier.gradients(x, Target(1))
    np.testing.assert_allclose(guided, vanilla, rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_guided_backprop_fails_cascading_randomisation_on_the_default_model(default_classifier):
    """The page's red verdict, on the default model and the cat: Guided Backpropagation
    stays almost unchanged when the head is randomised, the vanilla gradient does not."""
    from saliency_core.trust import ModelRandomizer, make_method_explainer, run_randomization
    from saliency_core.trust.verdicts import BARELY_DEPENDS

    image = load_image(read_sample("chelsea"))
    x, _ = fit_to_model(image.pixels, default_classifier.input_size)
    randomizer = ModelRandomizer(default_classifier, "efficientnet_lite0")
    guided = run_randomization(randomizer, make_method_explainer("guided_backprop"), x,
                               Target(285), seed_text=image.digest)
    assert guided.verdict.outcome == "fails" and BARELY_DEPENDS in guided.verdict.text
    assert np.all(guided.spearman[:, 0] >= 0.9), guided.spearman
    assert np.all(guided.spearman_signed[:, 0] >= 0.9), guided.spearman_signed
    vanilla = run_randomization(randomizer, make_method_explainer("vanilla"), x, Target(285),
                                seed_text=image.digest)
    assert vanilla.verdict.passed, vanilla.verdict.text
    assert np.all(vanilla.spearman[:, 0] < 0.5), vanilla.spearman
