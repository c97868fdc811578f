"""A tiny CNN trained here on a task whose evidence region is known: the map must point there.

Each 32x32 image is grey noise with one 5x5 coloured patch at a random position;
the class is the patch's colour (reddish = 0, bluish = 1). Nothing else in the
image carries information, so a faithful saliency map must peak inside the patch.
"""

import keras
import numpy as np
import pytest

from saliency_core.methods import Target, VanillaGradient
from saliency_core.postprocess import reduce_channels
from saliency_core.tf_adapter import KerasClassifier

SIZE, PATCH = 32, 5
COLOURS = (np.array([220.0, 40.0, 40.0]), np.array([40.0, 40.0, 220.0]))


def make_dataset(n: int, seed: int):
    rng = np.random.default_rng(seed)
    grey = rng.uniform(40, 215, size=(n, SIZE, SIZE, 1))
    images = np.repeat(grey, 3, axis=-1)
    labels = rng.integers(0, 2, size=n)
    boxes = rng.integers(0, SIZE - PATCH + 1, size=(n, 2))
    for image, label, (y, x) in zip(images, labels, boxes, strict=True):
        jitter = rng.uniform(-25, 25, size=3)
        image[y:y + PATCH, x:x + PATCH] = np.clip(COLOURS[label] + jitter, 0, 255)
    return images.astype(np.float32), labels, boxes


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(1234)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    images, labels, _ = make_dataset(2000, seed=0)
    model.fit(images, labels, epochs=6, batch_size=64, verbose=0)
    return model


@pytest.mark.slow
def test_vanilla_map_peaks_inside_the_patch(trained):
    images, labels, boxes = make_dataset(200, seed=99)  # held out
    accuracy = float((trained.predict(images, verbose=0).argmax(1) == labels).mean())
    assert accuracy >= 0.95, f"the tiny CNN did not learn the task (accuracy {accuracy:.2f})"

    classifier = KerasClassifier(trained, lambda x: x, ("red", "blue"))
    method = VanillaGradient()
    inside = 0
    for image, label, (y, x) in zip(images, labels, boxes, strict=True):
        values = method.attribute(classifier, image, Target(int(label))).values
        saliency = reduce_channels(values, "max_abs")
        py, px = np.unravel_index(np.argmax(saliency), saliency.shape)
        inside += (y <= py < y + PATCH) and (x <= px < x + PATCH)
    fraction = inside / len(images)
    assert fraction >= 0.9, f"map maximum inside the patch on only {fraction:.0%} of images"


def fraction_inside(classifier, method, images, labels, boxes) -> float:
    inside = 0
    for image, label, (y, x) in zip(images, labels, boxes, strict=True):
        saliency = reduce_channels(method.attribute(classifier, image, Target(int(label))).values,
                                   "max_abs")
        py, px = np.unravel_index(np.argmax(saliency), saliency.shape)
        inside += (y <= py < y + PATCH) and (x <= px < x + PATCH)
    return inside / len(images)


@pytest.mark.slow
def test_gradcam_and_smoothgrad_point_inside_as_often_as_vanilla(trained):
    from saliency_core.methods import GradCAM, SmoothGrad

    images, labels, boxes = make_dataset(100, seed=7)
    classifier = KerasClassifier(trained, lambda x: x, ("red", "blue"))
    vanilla = fraction_inside(classifier, VanillaGradient(), images, labels, boxes)
    gradcam = fraction_inside(classifier, GradCAM(), images, labels, boxes)
    smooth = fraction_inside(classifier, SmoothGrad(samples=10), images, labels, boxes)
    assert gradcam >= vanilla, (gradcam, vanilla)
    assert smooth >= vanilla, (smooth, vanilla)


def fraction_where_top_region_covers_the_patch(classifier, method, images, labels, boxes
                                               ) -> float:
    """For region maps (XRAI): how often the patch's centre lies in the top-ranked region."""
    inside = 0
    for image, label, (y, x) in zip(images, labels, boxes, strict=True):
        values = method.attribute(classifier, image, Target(int(label))).values[..., 0]
        inside += values[y + PATCH // 2, x + PATCH // 2] >= values.max()
    return inside / len(images)


@pytest.mark.slow
@pytest.mark.parametrize("key, params", [
    ("blur_ig", {"steps": 10, "max_sigma": 8.0}), ("guided_ig", {"steps": 20}),
    ("scorecam", {}), ("layercam", {}), ("rise", {"masks": 500, "grid": 8})])
def test_peer_methods_point_inside_the_patch(trained, key, params):
    from saliency_core.methods import get_method

    images, labels, boxes = make_dataset(30, seed=7)
    classifier = KerasClassifier(trained, lambda x: x, ("red", "blue"))
    fraction = fraction_inside(classifier, get_method(key, **params), images, labels, boxes)
    assert fraction >= 0.9, f"{key}: map maximum inside the patch on only {fraction:.0%}"


@pytest.mark.slow
def test_xrai_ranks_the_patch_first(trained):
    from saliency_core.methods import get_method

    images, labels, boxes = make_dataset(10, seed=7)  # the segmentation takes a second each
    classifier = KerasClassifier(trained, lambda x: x, ("red", "blue"))
    fraction = fraction_where_top_region_covers_the_patch(
        classifier, get_method("xrai", steps=10), images, labels, boxes)
    assert fraction >= 0.9, f"the top XRAI region holds the patch on only {fraction:.0%}"
