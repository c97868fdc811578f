"""Registered Keras models and every way of supplying their weights, offline."""

import os
import time

import numpy as np
import pytest

from conftest import shared_path
from saliency_core.imaging import fit_to_model, load_image
from saliency_core.models import registry
from saliency_core.models.registry import MODELS, WeightsUnavailableError
from saliency_core.pipeline import load_classifier, predict

MOBILENET_WEIGHTS = ("models", "mobilenet_v2_1.0_224_dequant.weights.h5")


def test_every_model_builds_with_a_linear_head():
    import keras

    for key, spec in MODELS.items():
        if key in ("vgg16",):  # 138M parameters: building it costs ~1 GB and a few seconds
            continue
        model = spec.build()
        assert tuple(model.inputs[0].shape[1:]) == (*spec.input_size, 3), key
        assert model.outputs[0].shape[-1] == 1000
        assert model.layers[-1].activation in (None, keras.activations.linear), key


def test_missing_weights_give_instructions_quickly(monkeypatch):
    monkeypatch.delenv("SALIENCY_WEIGHTS_RESNET50", raising=False)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        registry.load_registered_model("resnet50")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "SALIENCY_WEIGHTS_RESNET50" in message and "Models page" in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels.h5" in message


def test_offline_probe_never_hangs():
    start = time.monotonic()
    registry.can_reach("https://192.0.2.1:9/x", timeout=1.0)  # TEST-NET: never answers
    assert time.monotonic() - start < 3


def test_env_var_naming_a_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_WEIGHTS_MOBILENET_V2", str(tmp_path / "nope.h5"))
    with pytest.raises(WeightsUnavailableError, match="not a file"):
        registry.load_registered_model("mobilenet_v2")


def check_mobilenet_predictions(classifier, expected):
    for file_name, entry in expected.items():
        image = load_image(shared_path("testimages", file_name).read_bytes())
        model_input, _ = fit_to_model(image.pixels, classifier.input_size, "squash")
        preds = predict(classifier, model_input)
        assert entry["class_index"] in [p.index for p in preds], file_name


@pytest.mark.slow
def test_local_weights_via_environment_variable(monkeypatch, expected_testimages):
    path = shared_path(*MOBILENET_WEIGHTS)
    monkeypatch.setenv("SALIENCY_WEIGHTS_MOBILENET_V2", str(path))
    classifier, source = load_classifier("mobilenet_v2")
    assert source.origin == "environment variable SALIENCY_WEIGHTS_MOBILENET_V2"
    check_mobilenet_predictions(classifier, expected_testimages)


@pytest.mark.slow
def test_local_weights_via_config_file(monkeypatch, tmp_path):
    path = shared_path(*MOBILENET_WEIGHTS)
    config = tmp_path / "studio.toml"
    config.write_text(f'[weights]\nmobilenet_v2 = "{path}"\n')
    monkeypatch.setenv("SALIENCY_STUDIO_CONFIG", str(config))
    monkeypatch.delenv("SALIENCY_WEIGHTS_MOBILENET_V2", raising=False)
    source = registry.resolve_weights(MODELS["mobilenet_v2"], allow_download=False)
    assert source.path == path and source.origin == "config file"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Skipping nested container")  # from the wrong-model load
def test_uploaded_weights_are_validated_and_kept(monkeypatch):
    monkeypatch.delenv("SALIENCY_WEIGHTS_MOBILENET_V2", raising=False)
    with pytest.raises(WeightsUnavailableError, match="not an HDF5"):
        registry.save_uploaded_weights("mobilenet_v2", b"definitely not hdf5")
    data = shared_path(*MOBILENET_WEIGHTS).read_bytes()
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        registry.save_uploaded_weights("resnet50", data)  # wrong model
    assert registry.uploaded_weights_path(MODELS["resnet50"]) is None
    source = registry.save_uploaded_weights("mobilenet_v2", data)
    assert source.path.name == "mobilenet_v2.weights.h5"
    found = registry.find_local_weights(MODELS["mobilenet_v2"])
    assert found.origin == "uploaded file"
    model, _ = registry.load_registered_model("mobilenet_v2", allow_download=False)
    x = np.zeros((1, 224, 224, 3), np.float32)
    assert np.isfinite(model.predict(x, verbose=0)).all()
    source.path.unlink()
    assert not os.path.exists(source.path)


def test_provenance_hashes_the_file_the_registry_names(monkeypatch, tmp_path):
    """Provenance asks the registry's public :func:`weights_file` which file a registered
    model's weights come from (the default model's: its checkpoint)."""
    import hashlib

    from saliency_core.audit.provenance import registered_weights_sha256

    checkpoint = tmp_path / "lite0.pth"
    checkpoint.write_bytes(b"stand-in checkpoint")
    monkeypatch.setattr(registry, "_lite0_checkpoint", lambda: checkpoint)
    assert registry.weights_file(registry.DEFAULT_MODEL_KEY) == checkpoint
    assert registered_weights_sha256(registry.DEFAULT_MODEL_KEY) == hashlib.sha256(
        b"stand-in checkpoint").hexdigest()
    monkeypatch.setattr(registry, "weights_file", lambda key, scope=None: None)
    assert registered_weights_sha256("vgg16") is None  # no weights on this machine yet
