"""The Python API (``import saliency_core as sc``): the documented example, equal to the app.

The example in docs/python-api.md is executed as it is written, so the documentation cannot
rot, and each of its maps is compared with the map Explore shows for the same settings.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from apptest_support import new_app
from PIL import Image

import saliency_core as sc
from conftest import ROOT
from saliency_core.audit.provenance import reproduce_values
from saliency_core.imaging import ImageError
from saliency_core.plotting import blend_overlay
from saliency_core.postprocess import reduce_channels

DOCS = ROOT / "docs" / "python-api.md"


def documented_example() -> str:
    """The first Python block under "A first map" in docs/python-api.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## A first map", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def decode(array) -> np.ndarray:
    """A Plotly data array: nested lists, or Plotly 6's base64 typed array."""
    if isinstance(array, dict) and "bdata" in array:
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        return flat.reshape([int(n) for n in str(array.get("shape", len(flat))).split(",")])
    return np.asarray(array, dtype=float)


def app_overlay(method: str) -> dict:
    """The heat map of Explore's overlay for the cat sample with ``method``'s defaults."""
    at = new_app(method=method)
    assert not at.exception, at.exception
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return next(t for f in figures for t in f["data"] if t["type"] == "heatmap")


@pytest.fixture(scope="module")
def model():
    return sc.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def cat():
    return sc.load_sample("chelsea")


def test_import_is_quick_and_the_api_names_load_on_first_use():
    code = ("import sys, saliency_core as sc\n"
            "image = sc.load_sample('chelsea')\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'plotly', 'streamlit') "
            "if m in sys.modules]\n"
            "print(image.pixels.shape, image.name, heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(300, 451, 3) chelsea.png []"
    assert sorted(sc.__all__) == sorted(sc._EXPORTS)  # noqa: SLF001
    for name in sc.__all__:
        assert getattr(sc, name) is not None and name in dir(sc)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        sc.nothing_here  # noqa: B018


@pytest.mark.slow
def test_the_documented_example_runs_and_its_maps_equal_the_apps(monkeypatch, capsys):
    shown = []
    monkeypatch.setattr("plotly.graph_objects.Figure.show", lambda fig, *a, **k: shown.append(fig))
    namespace: dict = {}
    exec(compile(documented_example(), str(DOCS), "exec"), namespace)  # noqa: S102
    maps = namespace["maps"]
    assert list(maps) == ["vanilla", "smoothgrad", "gradcam"] and len(shown) == 3
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("vanilla ") and "(224, 224, 3)" in printed[0], printed
    assert "(224, 224, 1)" in printed[2]  # Grad-CAM: one value per pixel
    for method, explanation in maps.items():
        heat = app_overlay(method)
        assert heat["customdata"] is not None
        app_raw = decode(heat["customdata"])  # the hover's raw attribution, channels reduced
        api_raw = reduce_channels(explanation.values, explanation.reduction)
        assert app_raw.shape == api_raw.shape == (224, 224)
        np.testing.assert_array_equal(app_raw, api_raw, err_msg=method)
        np.testing.assert_allclose(decode(heat["z"]), np.round(explanation.saliency, 3),
                                   atol=1e-6, err_msg=method)
        # the figure the example shows is the app's figure
        figure = json.loads(shown[list(maps).index(method)].to_json())
        heat_shown = next(t for t in figure["data"] if t["type"] == "heatmap")
        np.testing.assert_array_equal(decode(heat_shown["z"]), decode(heat["z"]))


def test_the_docs_list_every_method():
    from saliency_core.methods import METHODS

    text = DOCS.read_text(encoding="utf-8")
    assert [key for key in METHODS if f"`{key}`" not in text] == []


@pytest.mark.slow
def test_explain_records_provenance_that_reproduces_the_map(model, cat):
    explanation = sc.explain(model, cat, "smoothgrad", samples=6, seed=3)
    record = explanation.provenance
    json.dumps(record)  # JSON-ready
    assert record["engine"] == {"name": "python-api"}
    assert record["image"]["name"] == "chelsea.png"
    assert record["image"]["sha256"] == cat.digest
    assert record["model"]["key"] == "efficientnet_lite0"
    assert record["target"]["class_choice"] == "top1"
    assert record["method"]["params"]["samples"] == 6 and record["method"]["seed"] == 3
    assert explanation.params == record["method"]["params"]
    assert explanation.target.class_index == explanation.top5[0].index
    again = reproduce_values(record, model, explanation.model_input)
    np.testing.assert_array_equal(again, explanation.values)
    np.testing.assert_allclose(explanation.probabilities.sum(), 1.0, rtol=1e-5)
    assert explanation.logits.shape == explanation.probabilities.shape == (1000,)
    assert explanation.view.shape == (300, 300, 3)  # the centre crop of the 451 x 300 photo


@pytest.mark.slow
def test_classes_by_name_contrasts_and_refusals(model, cat):
    by_name = sc.explain(model, cat, target="tabby")
    assert by_name.target.class_index == 281 and by_name.class_name == "tabby"
    assert by_name.provenance["target"]["class_choice"] == "fixed"
    np.testing.assert_array_equal(by_name.values, sc.explain(model, cat, target=281).values)
    contrast = sc.explain(model, cat, target="tabby", contrast="tiger cat")
    assert contrast.signed and contrast.saliency.min() < 0 < contrast.saliency.max()
    assert contrast.contrast_name == "tiger cat"
    occlusion = sc.explain(model, cat, "occlusion", patch=56, stride=56)
    assert occlusion.reduction == "signed" and occlusion.values.shape == (224, 224, 1)
    squashed = sc.explain(model, cat, fit="squash")
    assert squashed.view.shape == (300, 451, 3)
    with pytest.raises(ValueError, match="known: noise, samples"):
        sc.explain(model, cat, "smoothgrad", sample=3)
    with pytest.raises(ValueError, match="unknown method 'no_such_method'"):
        sc.explain(model, cat, "no_such_method")
    with pytest.raises(ValueError, match="close: golden retriever"):
        sc.explain(model, cat, target="golden")
    with pytest.raises(ValueError, match="outside 0..999"):
        sc.explain(model, cat, target=1000)
    with pytest.raises(ValueError, match="itself"):
        sc.explain(model, cat, target=281, contrast="tabby")
    with pytest.raises(TypeError, match="load_model"):
        sc.explain(model.model, cat)


@pytest.mark.slow
def test_overlay_png_and_figure(model, cat):
    explanation = sc.explain(model, cat, "gradcam")
    png = sc.overlay_png(explanation, colormap="cividis", opacity=0.7)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    height, width = explanation.view.shape[:2]
    assert image.shape[0] > height and image.shape[1] > width  # colour bar and caption
    expected = blend_overlay(explanation.view, explanation.saliency, "cividis", 0.7, fade=True)
    np.testing.assert_array_equal(image[:height, :width], expected)
    figure = sc.overlay_figure(explanation, opacity=0.7, title="cat")
    assert figure.layout.sliders[0].active == 7 and figure.layout.title.text == "cat"
    bar = figure.data[1].colorbar
    assert bar.title.text == "attribution (normalised)"


def small_classifier(classes: int = 3) -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def test_an_in_memory_keras_model_is_trusted_and_never_modified():
    network = small_classifier()
    classifier = sc.load_model(network, preprocessing="unit", labels=["cat", "dog", "bird"])
    assert classifier.class_names == ("cat", "dog", "bird")
    assert network.layers[-1].activation is keras.activations.softmax  # unchanged
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    explanation = sc.explain(classifier, pixels, target="dog")
    # ground truth: d(pre-softmax dog score)/d(0-255 pixels), through the /255 scaling
    x = tf.constant(explanation.model_input[None])
    logits_model = keras.Model(network.inputs, network.layers[-1].input)
    with tf.GradientTape() as tape:
        tape.watch(x)
        dense = network.layers[-1]
        score = tf.matmul(logits_model(x / 255.0), dense.kernel)[:, 1] + dense.bias[1]
    np.testing.assert_allclose(explanation.values, tape.gradient(score, x).numpy()[0],
                               rtol=1e-5, atol=1e-8)
    record = explanation.provenance
    assert record["model"]["key"] == "keras.Model" and record["model"]["preprocessing"] == "unit"
    before = record["model"]["weights_sha256"]
    network.layers[-1].set_weights([w + 1 for w in network.layers[-1].get_weights()])
    assert sc.load_model(network).class_names == ("class 0", "class 1", "class 2")
    again = sc.explain(sc.load_model(network), pixels)
    assert again.provenance["model"]["weights_sha256"] != before

    def halve(images):
        return images / 2.0

    halved = sc.load_model(network, preprocessing=halve)
    assert sc.explain(halved, pixels).provenance["model"]["preprocessing"] == "halve"
    with pytest.raises(ValueError, match="2 names, but the model has 3"):
        sc.load_model(network, labels=["cat", "dog"])
    with pytest.raises(ValueError, match="1000 outputs|3 outputs"):
        sc.load_model(network, labels="imagenet")
    with pytest.raises(ValueError, match="fixed input"):
        sc.load_model(keras.Sequential([keras.layers.Dense(2)]))


def test_a_keras_file_goes_through_the_uploads_safe_loading(tmp_path):
    path = tmp_path / "mine.keras"
    small_classifier().save(path)
    classifier = sc.load_model(path, preprocessing="unit", labels=["a", "b", "c"])
    pixels = np.full((20, 30, 3), 128, np.uint8)
    record = sc.explain(classifier, pixels).provenance
    assert record["model"]["key"] == "file" and record["model"]["file"] == "mine.keras"
    assert record["model"]["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert classifier.cost is not None  # measured in the isolated child, as for an upload

    # A Lambda layer carries Python code: the upload's checks refuse it (and never run it,
    # tests/test_custom_model.py shows) for a path given to the API too.
    unsafe = tmp_path / "unsafe.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Lambda(lambda t: t * 2.0),
                      keras.layers.Flatten(), keras.layers.Dense(2)]).save(unsafe)
    with pytest.raises(ValueError, match="unsafe.keras: .*Python code"):
        sc.load_model(unsafe)
    with pytest.raises(ValueError, match="neither a registered model"):
        sc.load_model(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="brings its own preprocessing"):
        sc.load_model("efficientnet_lite0", preprocessing="unit")
    with pytest.raises(TypeError, match="preprocessing key"):
        sc.load_model(path, preprocessing=lambda images: images)
    with pytest.raises(TypeError, match="not int"):
        sc.load_model(3)


def test_images_load_like_uploads(tmp_path):
    sample = ROOT / "saliency_core" / "samples" / "chelsea.png"
    from_path = sc.load_image(sample)
    from_bytes = sc.load_image(sample.read_bytes())
    assert from_path.name == "chelsea.png" and from_bytes.name == ""
    assert from_path.digest == from_bytes.digest
    np.testing.assert_array_equal(from_path.pixels, from_bytes.pixels)
    from_array = sc.load_image(from_path.pixels)
    np.testing.assert_array_equal(from_array.pixels, from_path.pixels)
    assert from_array.name == "array.png"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(ImageError, match="damaged|not an image"):
        sc.load_image(broken)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        sc.load_image(np.zeros((4, 4), np.float32))
    with pytest.raises(KeyError, match="unknown sample"):
        sc.load_sample("dog")
    with pytest.raises(TypeError, match="takes a path"):
        sc.load_image(42)
