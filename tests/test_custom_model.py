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


LIBRARY_WORDING = ("keras.src", "<class", "Please ensure", "deserialized", "Traceback",
                   "Exception encountered", "get_config")


def _edited(data: bytes, class_name: str, key: str, value) -> bytes:
    import json

    members = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    config = json.loads(members["config.json"])
    layer = next(item for item in config["config"]["layers"] if item["class_name"] == class_name)
    layer["config"][key] = value
    members["config.json"] = json.dumps(config).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    return buffer.getvalue()


@pytest.mark.parametrize("class_name, key, value, expected", [
    ("Dense", "units", 3.5, "A layer of the model declares units = 3.5; layer sizes must be "
                            "whole numbers of at least 1"),
    ("Dense", "units", "3", "declares a units that is not a number"),
    ("Conv2D", "filters", 0, "declares filters = 0"),
])
def test_a_model_with_an_impossible_layer_size_gets_the_projects_own_sentence(
        tmp_path, class_name, key, value, expected):
    data = _edited(save(small_classifier(), tmp_path), class_name, key, value)
    with pytest.raises(CustomModelError) as info:
        load_custom_model(data)
    message = str(info.value)
    assert expected in message and len(message.splitlines()) == 1, message
    assert not any(word in message for word in LIBRARY_WORDING), message


def test_what_keras_says_about_a_broken_layer_is_logged_never_shown(tmp_path, caplog):
    data = _edited(save(small_classifier(), tmp_path), "Conv2D", "padding", "sideways")
    with caplog.at_level("WARNING"), pytest.raises(CustomModelError) as info:
        load_custom_model(data)
    message = str(info.value)
    assert message.startswith("The model's layers could not be built from its description")
    assert len(message.splitlines()) == 1
    assert not any(word in message for word in LIBRARY_WORDING), message
    assert "sideways" not in message
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "sideways" in logged or "padding" in logged or "deserialized" in logged, logged


def test_a_model_with_more_classes_than_the_limit_is_refused(tmp_path, monkeypatch):
    """A Flatten head (3.2 million 'classes' on a 224-pixel input) passed every layer
    check, and the Audit page's class picker then crashed the browser tab."""
    config = tmp_path / "saliency_studio.toml"
    config.write_text("[limits]\nmax_classes = 100\n", encoding="utf-8")
    monkeypatch.setenv("SALIENCY_STUDIO_CONFIG", str(config))
    flat = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 1),
                             keras.layers.Flatten()])  # 256 scores per image
    with pytest.raises(CustomModelError, match="outputs 256 scores per image; a classifier "
                                               "here may have at most 100 classes"):
        load_custom_model(save(flat, tmp_path))
    load_custom_model(save(small_classifier(classes=100), tmp_path))  # at the limit: fine
