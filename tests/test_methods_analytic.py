"""The method interface against analytic functions whose gradients are known (no TF)."""

import numpy as np
import pytest

from saliency_core.methods import METHODS, Target, VanillaGradient, get_method


class QuadraticModel:
    """S_c(x) = sum(W_c * x) + 0.5 * sum(x**2) per class; dS_c/dx = W_c + x."""

    def __init__(self, weights: np.ndarray):
        self.weights = weights  # (K, H, W, 3)
        self.input_size = weights.shape[1:3]
        self.calls = 0

    def gradients(self, images, target):
        self.calls += 1
        w = self.weights[target.class_index]
        if target.contrast_index is not None:
            w = w - self.weights[target.contrast_index]
            quad = 0.0  # the x**2 terms cancel in S_a - S_b
        else:
            quad = 0.5 * (images ** 2).sum(axis=(1, 2, 3))
        scores = (images * w).sum(axis=(1, 2, 3)) + quad
        grads = np.broadcast_to(w, images.shape) + (0 if target.contrast_index is not None
                                                     else images)
        return grads, scores


@pytest.fixture
def model():
    rng = np.random.default_rng(0)
    return QuadraticModel(rng.normal(size=(3, 4, 5, 3)))


def test_vanilla_returns_the_analytic_gradient(model):
    image = np.random.default_rng(1).uniform(0, 255, size=(4, 5, 3))
    result = VanillaGradient().attribute(model, image, Target(2))
    np.testing.assert_allclose(result.values, model.weights[2] + image, rtol=1e-5)
    expected_score = (model.weights[2] * image).sum() + 0.5 * (image ** 2).sum()
    assert result.score == pytest.approx(expected_score, rel=1e-5)
    assert result.values.shape == (4, 5, 3) and result.values.dtype == np.float32


def test_vanilla_contrast_target(model):
    image = np.ones((4, 5, 3))
    result = VanillaGradient().attribute(model, image, Target(0, contrast_index=1))
    np.testing.assert_allclose(result.values, model.weights[0] - model.weights[1], rtol=1e-5)


def test_progress_is_reported(model):
    seen = []
    VanillaGradient().attribute(model, np.zeros((4, 5, 3)), Target(0), progress=seen.append)
    assert seen == [1.0]


def test_registry_and_target_validation():
    assert isinstance(get_method("vanilla"), VanillaGradient)
    assert all(cls.key == key for key, cls in METHODS.items())
    with pytest.raises(KeyError):
        get_method("nope")
    with pytest.raises(ValueError):
        Target(0, score="entropy")
