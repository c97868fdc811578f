"""The methods our peers have, against the peers' own code on the same model.

XRAI, Blur IG and Guided IG against PAIR ``saliency`` (the authors' reference code),
given the same model callback and parameters; Score-CAM and LayerCAM against
tf-keras-vis. All are deterministic, so the maps must agree to float32: Pearson
r >= 0.999 and a largest difference of at most 1e-3 of the map's largest value.
RISE is random; it is checked against the paper's estimator in
``tests/test_peer_methods.py`` (and against Xplique in ``bench/run.py``, since
Xplique pins an older TensorFlow).

The peers are development requirements (``requirements-dev.txt``); without them
these tests skip with the reason.
"""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from saliency_core.imaging import resize_map
from saliency_core.methods import Target, get_method
from saliency_core.methods.layercam import layercam_map
from saliency_core.tf_adapter import KerasClassifier

pair = pytest.importorskip("saliency.core", reason="PAIR saliency is not installed "
                           "(pip install -r requirements-dev.txt)")

SIZE = 32
CLASS = 1


def tiny_model() -> keras.Model:
    """0-255 pixels in (its scaling inside), three pre-softmax scores out."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="tanh", name="conv1")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", activation="relu",
                            name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def classifier(model):
    return KerasClassifier(model, lambda x: x, ("a", "b", "c"), batch_size=8)


@pytest.fixture(scope="module")
def image():
    """A smooth picture with structure, so the segmentation finds several regions."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    rng = np.random.default_rng(3)
    picture = np.stack([200 * yy, 255 * (xx > 0.5), 120 + 80 * np.sin(6 * xx * yy)], -1)
    return np.clip(picture + rng.normal(0, 8, picture.shape), 0, 255).astype(np.float32)


def call_model(model):
    """PAIR's model callback: input gradients of the class score, by a GradientTape."""
    def call(images, call_model_args=None, expected_keys=None):
        images = tf.convert_to_tensor(np.asarray(images), tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = model(images)[:, CLASS]
        return {pair.base.INPUT_OUTPUT_GRADIENTS: tape.gradient(score, images).numpy()}
    return call


def assert_agrees(ours: np.ndarray, theirs: np.ndarray) -> None:
    ours, theirs = np.asarray(ours, np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    r = np.corrcoef(ours, theirs)[0, 1]
    difference = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert r >= 0.999 and difference <= 1e-3, (r, difference)


def test_xrai_matches_pair(model, classifier, image):
    ours = get_method("xrai", steps=12).attribute(classifier, image, Target(CLASS))
    params = pair.XRAIParameters(steps=12)
    theirs = pair.XRAI().GetMask(image, call_model(model), batch_size=5,
                                 extra_parameters=params)
    assert ours.values.shape == (SIZE, SIZE, 1) and ours.values.min() == 0.0
    assert ours.info["regions ranked"] > 3  # a real ranking, not one region
    # the map is XRAI's gains less the lowest gain, a constant recorded in info
    assert_agrees(ours.values[..., 0] + ours.info["lowest region gain (subtracted)"], theirs)


def test_blur_ig_matches_pair(model, classifier, image):
    ours = get_method("blur_ig", steps=16, max_sigma=12.0).attribute(classifier, image,
                                                                     Target(CLASS))
    # PAIR blurs in the image's dtype; in float32 its rounding, divided by the 0.01 sigma
    # step of the finite difference, can reach 1e-2 of the map on a 224 px photo (ours
    # blurs in float64), so PAIR gets the float64 image.
    theirs = pair.BlurIG().GetMask(image.astype(np.float64), call_model(model),
                                   max_sigma=12.0, steps=16, batch_size=5)
    assert_agrees(ours.values, theirs)


def test_blur_matches_scipy_gaussian_filter(image):
    """The blur is applied as matrix products; it is scipy's Gaussian (PAIR's) exactly."""
    from scipy import ndimage

    from saliency_core.methods.blur_ig import gaussian_blur

    for sigma in (0.01, 0.7, 3.0, 12.0, 50.0):
        reference = ndimage.gaussian_filter(image.astype(np.float64), [sigma, sigma, 0],
                                            mode="constant")
        np.testing.assert_allclose(gaussian_blur(image, sigma), reference, rtol=1e-9,
                                   atol=1e-9)


def test_guided_ig_matches_pair(model, classifier, image, monkeypatch):
    from saliency.core import guided_ig as pair_guided_ig

    # PAIR calls np.quantile(..., interpolation="lower"), which NumPy 2.4 no longer has;
    # the same call under its current name leaves PAIR's algorithm unchanged.
    def quantile(values, q, interpolation="linear", **kwargs):
        return np.quantile(values, q, method=interpolation, **kwargs)

    numpy = {name: getattr(np, name) for name in dir(np) if not name.startswith("__")}
    monkeypatch.setattr(pair_guided_ig, "np", types.SimpleNamespace(**{**numpy,
                                                                      "quantile": quantile}))
    ours = get_method("guided_ig", steps=20).attribute(classifier, image, Target(CLASS))

    def same_callback(images, call_model_args=None, expected_keys=None):
        # Guided IG picks features by a quantile of |gradient|, so gradients that differ in
        # the last float32 bit (an eager tape against a traced graph) can change its path:
        # both sides get the adapter's gradients, which other tests check against a tape.
        grads, _ = classifier.gradients(np.asarray(images, np.float32), Target(CLASS))
        return {pair.base.INPUT_OUTPUT_GRADIENTS: grads}

    theirs = pair.GuidedIG().GetMask(image, same_callback, x_steps=20, fraction=0.25,
                                     max_dist=0.02)
    assert_agrees(ours.values, theirs)
    assert ours.info["completeness gap"] < 0.5


@pytest.fixture(scope="module")
def keras_vis():
    pytest.importorskip("tf_keras_vis", reason="tf-keras-vis is not installed "
                        "(pip install -r requirements-dev.txt)")
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    return types.SimpleNamespace(Layercam=Layercam, Scorecam=Scorecam,
                                 score=CategoricalScore([CLASS]))


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_layercam_matches_tf_keras_vis(model, classifier, image, keras_vis, layer):
    theirs = keras_vis.Layercam(model, clone=True)(
        keras_vis.score, image[None], penultimate_layer=layer, seek_penultimate_conv_layer=False,
        expand_cam=False, normalize_cam=False)[0]
    acts, grads, _ = classifier.layer_gradients(image[None], Target(CLASS), layer)
    assert_agrees(layercam_map(acts[0], grads[0]), theirs)
    ours = get_method("layercam", layer=layer).attribute(classifier, image, Target(CLASS))
    np.testing.assert_allclose(ours.values[..., 0],
                               resize_map(np.asarray(theirs, np.float32), (SIZE, SIZE)),
                               rtol=1e-3, atol=1e-3 * float(np.max(theirs)))


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_scorecam_matches_tf_keras_vis(model, classifier, image, keras_vis, layer):
    theirs = keras_vis.Scorecam(model, clone=True)(
        keras_vis.score, image[None], penultimate_layer=layer, seek_penultimate_conv_layer=False,
        expand_cam=False, normalize_cam=False, batch_size=8)[0]
    ours = get_method("scorecam", layer=layer).attribute(classifier, image, Target(CLASS))
    expected = resize_map(np.asarray(theirs, np.float32), (SIZE, SIZE))
    assert_agrees(ours.values[..., 0], expected)
    assert ours.info["channels used"].startswith(f"{model.get_layer(layer).filters} of")


def test_faster_scorecam_keeps_the_most_varied_channels_as_tf_keras_vis(model, classifier,
                                                                        image, keras_vis):
    theirs = keras_vis.Scorecam(model, clone=True)(
        keras_vis.score, image[None], penultimate_layer="conv2",
        seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False, max_N=4)[0]
    method = get_method("scorecam", layer="conv2")
    method.limit = 4  # the options offer 64 and up; this layer has 12 channels
    ours = method.attribute(classifier, image, Target(CLASS))
    assert ours.info["channels used"] == "4 of 12"
    assert_agrees(ours.values[..., 0], resize_map(np.asarray(theirs, np.float32), (SIZE, SIZE)))
