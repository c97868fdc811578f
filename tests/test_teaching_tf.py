"""The "How it works" maths on real Keras models: a tiny smooth CNN (the Taylor
prediction holds for small nudges) and the default model with the bundled samples
(the most salient pixels move the score more than random or least salient ones)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from saliency_core.imaging import fit_to_model, load_image
from saliency_core.methods import Target
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.samples import SAMPLES, read_sample
from saliency_core.teaching import compute_steps, make_epsilons, run_taylor_test
from saliency_core.teaching.figures import make_pipeline_figures
from saliency_core.tf_adapter import KerasClassifier

SIZE = 16


def smooth_cnn() -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="tanh")(inputs)
    x = keras.layers.Conv2D(6, 3, activation="softplus")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def test_preprocessed_is_what_the_first_layer_receives():
    preprocess = get_preprocessor("tf")
    clf = KerasClassifier(smooth_cnn(), preprocess, ("a", "b", "c", "d"))
    images = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(clf.preprocessed(images), preprocess(tf.constant(images)),
                               rtol=1e-6)
    steps = compute_steps(clf, images[0], Target(2))
    with tf.GradientTape() as tape:
        x = tf.constant(images[:1])
        tape.watch(x)
        score = clf.logit_model(preprocess(x))[0, 2]
    np.testing.assert_allclose(steps.gradient, tape.gradient(score, x)[0], rtol=1e-4,
                               atol=1e-9)
    assert steps.network_input.min() >= -1.0 and steps.network_input.max() <= 1.0


def test_small_nudges_are_predicted_within_five_percent_on_a_tiny_smooth_model():
    clf = KerasClassifier(smooth_cnn(), get_preprocessor("tf"), ("a", "b", "c", "d"))
    image = np.random.default_rng(4).uniform(30, 225, (SIZE, SIZE, 3)).astype(np.float32)
    for class_index in range(4):
        steps = compute_steps(clf, image, Target(class_index))
        test = run_taylor_test(clf, image, steps.gradient, steps.reduced, Target(class_index),
                               k=20, epsilons=make_epsilons(0.1, 2.0))
        for key in ("most", "random"):
            assert np.all(test.curves[key].relative_error() < 0.05), (class_index, key)


@pytest.mark.slow
def test_on_the_default_model_the_most_salient_pixels_matter_most(default_classifier):
    clf = default_classifier
    epsilons = make_epsilons(0.2, 1.0)  # 0.2, 0.5, 1 grey levels
    for key in SAMPLES:
        image, _view = fit_to_model(load_image(read_sample(key)).pixels, clf.input_size, "crop")
        target = Target(int(np.argmax(clf.logits(image[None])[0])))
        steps = compute_steps(clf, image, target)
        assert steps.reduced.shape == clf.input_size
        random_changes, most, least = [], None, None
        for seed in range(3):
            test = run_taylor_test(clf, image, steps.gradient, steps.reduced, target, k=100,
                                   epsilons=epsilons, random_draws=3, seed=seed)
            most, least = test.curves["most"].actual, test.curves["least"].actual
            random_changes.append(test.curves["random"].actual)
        random_mean = np.mean(random_changes, axis=0)
        assert np.all(most > random_mean), (key, most, random_mean)
        assert np.all(most > least), (key, most, least)
        assert np.all(random_mean > least), (key, random_mean, least)


@pytest.mark.slow
def test_the_pipeline_figure_has_the_default_models_input_size(default_classifier):
    image, _view = fit_to_model(load_image(read_sample("coffee")).pixels,
                                default_classifier.input_size, "crop")
    steps = compute_steps(default_classifier, image, Target(967))
    for trace in (t for fig in make_pipeline_figures(steps) for t in fig.data):
        if trace.type == "heatmap":
            assert np.shape(trace.z) == default_classifier.input_size
    assert steps.network_input.shape == (*default_classifier.input_size, 3)
