"""Issue 27: own models with a non-square input see a centre crop with *their* shape.

A 64×128 (height × width) and a 128×64 model, each a tiny ``.keras`` classifier
built here. The cat sample is 451×300 (width × height).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from saliency_core.imaging import crop_box, fit_to_model, load_image
from saliency_core.samples import read_sample

CAT_SIZE = (451, 300)
EXPECTED_BOX = {  # worked out by hand from 451×300 and the model's aspect ratio
    (64, 128): (0, 37, 451, 263),  # 2:1 -> 451 wide, 451/2 = 225.5 -> 226 high, centred
    (128, 64): (150, 0, 300, 300),  # 1:2 -> 300 high, 150 wide, centred
}


def save_model(path, input_size: tuple[int, int]) -> bytes:
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((*input_size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3, name="head")(x)).save(path)
    return path.read_bytes()


@pytest.fixture(scope="module", params=[(64, 128), (128, 64)], ids=["64x128", "128x64"])
def own_model(request, tmp_path_factory):
    """``(input_size, .keras path, classifier)`` of one non-square own model."""
    from saliency_core.models.custom import load_custom_model, make_classifier
    from saliency_core.models.preprocessing import get_preprocessor

    path = tmp_path_factory.mktemp("nonsquare") / f"m{request.param[0]}x{request.param[1]}.keras"
    data = save_model(path, request.param)
    classifier = make_classifier(load_custom_model(data), get_preprocessor("raw"))
    assert classifier.input_size == request.param
    return request.param, path, classifier


def test_the_fitted_input_is_the_centre_crop_with_the_models_shape_undistorted(own_model):
    input_size, _path, classifier = own_model
    cat = load_image(read_sample("chelsea")).pixels
    assert cat.shape[:2] == CAT_SIZE[::-1]
    box = EXPECTED_BOX[input_size]
    assert crop_box(*CAT_SIZE, "crop", input_size) == box
    model_input, view = fit_to_model(cat, classifier.input_size, "crop")
    left, top, right, bottom = box
    # independently: cut the box out with Pillow and resize it to the model's input
    expected = np.asarray(Image.fromarray(cat).crop(box).resize(
        (input_size[1], input_size[0]), Image.Resampling.BICUBIC, reducing_gap=None),
        dtype=np.float32)
    assert model_input.shape == (*input_size, 3)
    np.testing.assert_array_equal(model_input, expected)
    np.testing.assert_array_equal(view, cat[top:bottom, left:right])
    # undistorted: the horizontal and vertical scale factors agree to within half a percent
    scale_x, scale_y = input_size[1] / view.shape[1], input_size[0] / view.shape[0]
    assert abs(scale_x / scale_y - 1) < 0.005, (scale_x, scale_y)
    # squash keeps the whole photo and stretches it
    squashed, whole = fit_to_model(cat, classifier.input_size, "squash")
    assert whole.shape == cat.shape and squashed.shape == (*input_size, 3)


def test_maps_of_a_non_square_model_line_up_with_its_view(own_model):
    from saliency_core.methods import Target
    from saliency_core.pipeline import explain

    input_size, _path, classifier = own_model
    model_input, view = fit_to_model(load_image(read_sample("chelsea")).pixels,
                                     classifier.input_size, "crop")
    for method in ("vanilla", "gradcam", "occlusion"):
        values = explain(classifier, model_input, Target(0), method).attribution.values
        assert values.shape[:2] == input_size, method


def test_the_preview_frames_a_region_with_the_models_shape(own_model):
    from saliency_core.plotting import make_crop_preview

    input_size, _path, _classifier = own_model
    cat = load_image(read_sample("chelsea")).pixels
    box = crop_box(*CAT_SIZE, "crop", input_size)
    preview = make_crop_preview(cat, box)
    framed = np.all(preview == [228, 87, 46], axis=2)
    rows, cols = np.nonzero(framed)
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == EXPECTED_BOX[input_size]
    frame_width, frame_height = cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()
    assert abs(frame_width / frame_height - input_size[1] / input_size[0]) < 0.01


@pytest.mark.slow
def test_the_command_line_records_the_crop_box(own_model, tmp_path):
    from saliency_core.__main__ import main

    input_size, path, _classifier = own_model
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cat.png").write_bytes(read_sample("chelsea"))
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "in"), "--out", str(out), "--model", str(path)]) == 0
    record = json.loads((out / "cat.json").read_text())
    left, top, right, bottom = EXPECTED_BOX[input_size]
    assert record["fit"] == "crop"
    assert record["crop"]["box"] == [left, top, right, bottom]
    assert record["crop"]["of_size"] == list(CAT_SIZE)
    assert record["crop"]["fraction"] == pytest.approx(
        [left / 451, top / 300, right / 451, bottom / 300], abs=1e-6)
    assert record["model"]["input_size"] == list(input_size)
    assert np.load(out / "cat.npy").shape == (*input_size, 3)
    assert Image.open(out / "cat.png").size == (right - left, bottom - top)


@pytest.mark.slow
def test_explore_with_a_non_square_own_model_frames_its_shape_and_never_says_square(
        own_model):
    from apptest_support import new_app

    input_size, path, _classifier = own_model
    at = new_app(180)
    at.switch_page("models.py").run()
    at.file_uploader(key="custom_model_upload").set_value(
        (path.name, path.read_bytes(), "application/octet-stream"))
    at.run()
    next(b for b in at.button if b.label == "Add this model").click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page("explore.py").run()
    assert not at.exception, [e.value for e in at.exception]
    fit = at.radio(key="w_fit")
    assert not any("square" in label.lower() for label in fit.options), fit.options
    assert "square" not in fit.help.lower() and f"{input_size[1]}×{input_size[0]}" in fit.help
    left, top, right, bottom = EXPECTED_BOX[input_size]
    caption = " ".join(image.proto.imgs[0].caption for image in at.get("image"))
    assert (f"The model sees the framed {right - left}×{bottom - top} region, resized to "
            f"{input_size[1]}×{input_size[0]}") in caption, caption
    fit.set_value("squash").run()
    caption = " ".join(image.proto.imgs[0].caption for image in at.get("image"))
    assert re.search(r"whole photo (stretched|squeezed) to "
                     f"{input_size[1]}×{input_size[0]}", caption), caption
    for page in ("compare", "trust", "how_it_works", "audit"):
        at.switch_page(f"{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])


