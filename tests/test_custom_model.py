"""Uploading one's own .keras classifier: safe loading and validation."""

import io
import os
import zipfile

import keras
import numpy as np
import pytest

from saliency_core.methods import Target, VanillaGradient
from saliency_core.models.custom import (
    CustomModelError,
    load_custom_model,
    make_classifier,
    parse_labels,
)
from saliency_core.models.preprocessing import get_preprocessor


def save(model: keras.Model, tmp_path) -> bytes:
    path = tmp_path / "model.keras"
    model.save(path)
    return path.read_bytes()


def small_classifier(classes=3, activation="softmax") -> keras.Model:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation=activation)(x))


def test_a_valid_model_with_labels_loads_and_explains(tmp_path):
    data = save(small_classifier(), tmp_path)
    custom = load_custom_model(data, b"cat\ndog\nbird\n")
    assert custom.class_names == ("cat", "dog", "bird")
    assert "rebuilt" in custom.head_note
    clf = make_classifier(custom, get_preprocessor("unit"))
    image = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    values = VanillaGradient().attribute(clf, image, Target(1)).values
    assert values.shape == (32, 32, 3) and np.abs(values).max() > 0


def test_lambda_layer_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"

    def touch(x):
        marker.write_text("the Lambda's code ran")
        return x

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: touch(t))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    data = save(model, tmp_path)
    marker.unlink()  # building the model ran it once; loading must not
    with pytest.raises(CustomModelError, match="Python code"):
        load_custom_model(data)
    assert not marker.exists()


@pytest.mark.parametrize("model, phrase", [
    (lambda: keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)]), "RGB image"),
    (lambda: keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 1)]),
     "class scores"),
    (lambda: keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(2)]), "fixed"),
])
def test_models_that_are_not_image_classifiers_are_refused(tmp_path, model, phrase):
    with pytest.raises(CustomModelError, match=phrase):
        load_custom_model(save(model(), tmp_path))


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(CustomModelError, match="empty"):
        load_custom_model(b"")
    with pytest.raises(CustomModelError, match="not a .keras"):
        load_custom_model(b"PK\x03\x04 not really a zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(CustomModelError, match="config.json"):
        load_custom_model(buffer.getvalue())


def test_size_limits(monkeypatch, tmp_path):
    from saliency_core.models import custom

    data = save(small_classifier(), tmp_path)
    monkeypatch.setattr(custom, "MAX_MODEL_BYTES", len(data) - 1)
    with pytest.raises(CustomModelError, match="limit"):
        load_custom_model(data)
    monkeypatch.setattr(custom, "MAX_MODEL_BYTES", 10**9)
    monkeypatch.setattr(custom, "MAX_UNPACKED_BYTES", 100)
    with pytest.raises(CustomModelError, match="unpacks"):
        load_custom_model(data)


def test_labels_must_match_the_outputs():
    assert parse_labels(None, 2) == ("class 0", "class 1")
    assert parse_labels("\ufeffa\n\nb\n".encode(), 2) == ("a", "b")
    with pytest.raises(CustomModelError, match="3 names, but the model has 2"):
        parse_labels(b"a\nb\nc\n", 2)
    with pytest.raises(CustomModelError, match="UTF-8"):
        parse_labels(b"\xff\xfe\x00bad", 2)


def test_the_upload_name_is_never_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = save(small_classifier(), tmp_path)
    before = set(os.listdir(tmp_path))
    load_custom_model(data)
    assert set(os.listdir(tmp_path)) == before  # nothing written next to us
