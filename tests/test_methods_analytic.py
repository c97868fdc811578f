"""The method interface against analytic functions whose gradients are known (no TF)."""

import numpy as np
import pytest

from saliency_core.methods import (
    METHODS,
    GradientTimesInput,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
    SmoothGradSquared,
    Target,
    VanillaGradient,
    VarGrad,
    get_method,
)
from saliency_core.methods.gradcam import cam_map, gradcam_weights
from saliency_core.methods.integrated_gradients import make_baseline


class QuadraticModel:
    """S_c(x) = sum(W_c * x) + 0.5 * sum(x**2) per class; dS_c/dx = W_c + x."""

    def __init__(self, weights: np.ndarray, batch_size: int = 16):
        self.weights = weights  # (K, H, W, 3)
        self.input_size = weights.shape[1:3]
        self.batch_size = batch_size
        self.calls = 0
        self.largest_batch = 0

    def scores(self, images, target):
        return self.gradients(images, target)[1]

    def gradients(self, images, target):
        self.calls += 1
        self.largest_batch = max(self.largest_batch, len(images))
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


# --------------------------------------------------------------------- SmoothGrad family


def test_smoothgrad_with_zero_noise_equals_vanilla(model):
    image = np.random.default_rng(3).uniform(0, 255, (4, 5, 3))
    vanilla = VanillaGradient().attribute(model, image, Target(1)).values
    smooth = SmoothGrad(noise=0.0, samples=7).attribute(model, image, Target(1))
    np.testing.assert_allclose(smooth.values, vanilla, rtol=1e-6)
    assert smooth.score == pytest.approx(VanillaGradient().attribute(model, image,
                                                                     Target(1)).score)


@pytest.mark.parametrize("cls", [SmoothGrad, SmoothGradSquared, VarGrad])
def test_smoothgrad_batched_equals_unbatched(model, cls):
    image = np.random.default_rng(4).uniform(0, 255, (4, 5, 3))
    one = cls(samples=9, batch_size=1).attribute(model, image, Target(0)).values
    many = cls(samples=9, batch_size=4).attribute(model, image, Target(0)).values
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-6)


def test_samples_are_sent_in_batches(model):
    model.batch_size = 5
    SmoothGrad(samples=12).attribute(model, np.zeros((4, 5, 3)), Target(0))
    assert model.largest_batch == 4  # 4 + 4 + 4 within the bound of 5


def test_smoothgrad_aggregations_match_the_noise_statistics():
    # Gradient = W + x + noise for this model, so over many samples SmoothGrad -> W + x,
    # SmoothGrad^2 -> (W + x)^2 + sigma^2 and VarGrad -> sigma^2.
    model = QuadraticModel(np.zeros((1, 6, 6, 3)))
    image = np.zeros((6, 6, 3))
    image[0, 0, 0] = 100.0  # value range 100 -> sigma = noise * 100
    kwargs = dict(noise=0.1, samples=400, batch_size=64)
    sigma2 = (0.1 * 100.0) ** 2
    mean = SmoothGrad(**kwargs).attribute(model, image, Target(0)).values
    assert abs(mean.mean() - image.mean()) < 0.3
    var = VarGrad(**kwargs).attribute(model, image, Target(0)).values
    assert var.mean() == pytest.approx(sigma2, rel=0.05)
    square = SmoothGradSquared(**kwargs).attribute(model, image, Target(0)).values
    np.testing.assert_allclose(square.mean(), (image ** 2).mean() + sigma2, rtol=0.05)


def test_smoothgrad_rejects_bad_settings():
    with pytest.raises(ValueError):
        SmoothGrad(samples=0)
    with pytest.raises(ValueError):
        SmoothGrad(aggregate="median")


# --------------------------------------------------------------- Integrated Gradients
def test_integrated_gradients_is_exact_for_a_quadratic(model):
    # For S = W.x + |x|^2 / 2 from a black baseline, dS/dx along the path is W + a x,
    # linear in a, so the trapezoid rule is exact: IG = x * (W + x / 2).
    image = np.random.default_rng(5).uniform(0, 255, (4, 5, 3))
    result = IntegratedGradients(steps=4).attribute(model, image, Target(2))
    np.testing.assert_allclose(result.values, image * (model.weights[2] + image / 2),
                               rtol=1e-4)
    assert result.info["completeness gap"] < 1e-5
    assert result.info["score at baseline"] == pytest.approx(0.0, abs=1e-6)


def test_integrated_gradients_batched_equals_unbatched(model):
    image = np.random.default_rng(6).uniform(0, 255, (4, 5, 3))
    for baseline in ("black", "blurred", "noise"):
        one = IntegratedGradients(steps=10, baseline=baseline, batch_size=1)
        many = IntegratedGradients(steps=10, baseline=baseline, batch_size=4)
        np.testing.assert_allclose(one.attribute(model, image, Target(0)).values,
                                   many.attribute(model, image, Target(0)).values, rtol=1e-5)


def test_baselines():
    image = np.full((32, 32, 3), 200.0)
    image[:16] = 0.0
    assert not make_baseline(image, "black").any()
    blurred = make_baseline(image, "blurred")
    assert 0 < blurred[16, 16, 0] < 200  # the edge is smoothed
    noise = make_baseline(image, "noise", seed=1)
    assert noise.min() >= 0 and noise.max() <= 255 and noise.std() > 50
    np.testing.assert_array_equal(noise, make_baseline(image, "noise", seed=1))
    with pytest.raises(ValueError):
        make_baseline(image, "white")


def test_gradient_times_input(model):
    image = np.random.default_rng(7).uniform(0, 255, (4, 5, 3))
    result = GradientTimesInput().attribute(model, image, Target(0))
    np.testing.assert_allclose(result.values, image * (model.weights[0] + image), rtol=1e-5)


# ------------------------------------------------------------------------- Occlusion
class LinearModel(QuadraticModel):
    """S_c(x) = sum(W_c * x): an occluded patch lowers the score by W_c . (x - fill)."""

    def gradients(self, images, target):
        self.largest_batch = max(self.largest_batch, len(images))
        w = self.weights[target.class_index]
        return np.broadcast_to(w, images.shape), (images * w).sum(axis=(1, 2, 3))


def test_occlusion_with_one_whole_image_patch_equals_the_score_drop():
    rng = np.random.default_rng(8)
    model = LinearModel(rng.normal(size=(2, 8, 8, 3)))
    image = rng.uniform(0, 255, (8, 8, 3))
    result = Occlusion(patch=8, stride=8).attribute(model, image, Target(1))
    full = (image * model.weights[1]).sum()
    grey = (np.full_like(image, 127.5) * model.weights[1]).sum()
    assert result.values.shape == (8, 8, 1)
    np.testing.assert_allclose(result.values, full - grey, rtol=1e-5)
    assert result.info["occluded images"] == 1


def test_occlusion_single_pixel_patches_recover_linear_contributions():
    rng = np.random.default_rng(9)
    model = LinearModel(rng.normal(size=(1, 4, 4, 3)))
    image = rng.uniform(0, 255, (4, 4, 3))
    result = Occlusion(patch=1, stride=1).attribute(model, image, Target(0))
    expected = ((image - 127.5) * model.weights[0]).sum(axis=-1)
    np.testing.assert_allclose(result.values[..., 0], expected, rtol=1e-5)


def test_occlusion_batched_equals_unbatched_and_covers_edges():
    rng = np.random.default_rng(10)
    model = LinearModel(rng.normal(size=(1, 10, 10, 3)))
    image = rng.uniform(0, 255, (10, 10, 3))
    one = Occlusion(patch=4, stride=3, batch_size=1).attribute(model, image, Target(0))
    many = Occlusion(patch=4, stride=3, batch_size=5).attribute(model, image, Target(0))
    np.testing.assert_allclose(one.values, many.values, rtol=1e-6)
    assert np.all(one.values != 0)  # every pixel, the last row and column too, was covered
    assert model.largest_batch == 5


# -------------------------------------------------------------------------- Grad-CAM
def test_gradcam_weights_and_map_by_hand():
    acts = np.zeros((2, 2, 2))
    acts[..., 0] = [[1, 0], [0, 0]]
    acts[..., 1] = [[0, 0], [0, 2]]
    grads = np.zeros((2, 2, 2))
    grads[..., 0] = 4.0  # mean 4
    grads[..., 1] = -1.0  # mean -1
    weights = gradcam_weights(acts, grads, plus_plus=False)
    np.testing.assert_allclose(weights, [4.0, -1.0])
    np.testing.assert_allclose(cam_map(acts, weights), [[4, 0], [0, 0]])  # relu removes -2


def test_gradcam_plus_plus_weights_by_hand():
    acts = np.ones((1, 2, 1))  # sum over locations = 2
    grads = np.array([[[1.0], [-1.0]]])
    # alpha = g^2 / (2 g^2 + 2 g^3): 1/4 at g = 1; g = -1 gives 1/0 -> 0. weight = 1/4 * 1.
    np.testing.assert_allclose(gradcam_weights(acts, grads, plus_plus=True), [0.25])


def test_trapezoid_weights_and_adaptive_nodes():
    from saliency_core.methods.integrated_gradients import adaptive_nodes, trapezoid_weights

    nodes = np.array([0.0, 0.1, 0.5, 1.0])
    weights = trapezoid_weights(nodes)
    np.testing.assert_allclose(weights, [0.05, 0.25, 0.45, 0.25])
    assert (weights * nodes ** 1).sum() == pytest.approx(0.5)  # exact for linear g
    # a score that jumps between the 1st and 2nd of 11 probes pulls nodes into that interval
    probe = np.array([0.0, 10.0] + [10.0] * 9)
    placed = adaptive_nodes(probe)
    assert placed[0] == 0.0 and placed[-1] == 1.0 and np.all(np.diff(placed) > 0)
    assert (placed < 0.1).sum() >= 4  # half the nodes follow the jump
    np.testing.assert_allclose(adaptive_nodes(np.ones(5)), np.linspace(0, 1, 5))


def test_integrated_gradients_uniform_grid_is_exact_too(model):
    image = np.random.default_rng(11).uniform(0, 255, (4, 5, 3))
    result = IntegratedGradients(steps=3, grid="uniform").attribute(model, image, Target(0))
    np.testing.assert_allclose(result.values, image * (model.weights[0] + image / 2), rtol=1e-4)
    with pytest.raises(ValueError):
        IntegratedGradients(grid="gauss")


class TanhModel:
    """S(x) = sum(tanh(x / 20)): curved along the IG path, so few steps leave a gap."""

    input_size = (4, 5)
    batch_size = 16

    def __init__(self):
        self.calls = 0

    def scores(self, images, target):
        return self.gradients(images, target)[1]

    def gradients(self, images, target):
        self.calls += 1
        t = np.tanh(np.asarray(images, np.float64) / 20)
        return (1 - t * t) / 20, t.sum(axis=(1, 2, 3))


def test_integrated_gradients_adds_steps_until_the_target_gap_is_met():
    """Halving the intervals keeps the earlier sum: the refined result equals a direct
    run with the steps it reports, and its gap is within the target."""
    image = np.random.default_rng(3).uniform(0, 255, (4, 5, 3))
    fixed = IntegratedGradients(steps=4, grid="uniform").attribute(TanhModel(), image,
                                                                   Target(0))
    assert fixed.info["steps used"] == 4 and fixed.info["completeness gap"] > 0.01
    refined = IntegratedGradients(steps=4, grid="uniform", target_gap="1").attribute(
        TanhModel(), image, Target(0))
    steps = refined.info["steps used"]
    assert steps > 4 and steps % 4 == 0 and refined.info["completeness gap"] <= 0.01
    direct = IntegratedGradients(steps=steps, grid="uniform").attribute(TanhModel(), image,
                                                                        Target(0))
    np.testing.assert_allclose(refined.values, direct.values, rtol=1e-6)
    adaptive = IntegratedGradients(steps=4, target_gap="1").attribute(TanhModel(), image,
                                                                     Target(0))
    assert adaptive.info["completeness gap"] <= 0.01
    with pytest.raises(ValueError, match="target gap"):
        IntegratedGradients(target_gap="3")
    assert refined.info["target gap"] == 0.01 and "target gap" not in fixed.info
    # a start that cannot double within MAX_STEPS keeps its steps and says what it aimed at,
    # so the page can tell the user the target was not reached
    from saliency_core.methods.integrated_gradients import MAX_STEPS

    capped = IntegratedGradients(steps=MAX_STEPS // 2 + 1, grid="uniform",
                                 target_gap="1").attribute(TanhModel(), image, Target(0))
    assert capped.info["steps used"] == MAX_STEPS // 2 + 1
    assert capped.info["target gap"] == 0.01


def test_batches_are_split_into_nearly_equal_chunks():
    from saliency_core.batching import split_evenly

    assert split_evenly(20, 16) == [(0, 10), (10, 20)]
    assert split_evenly(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert split_evenly(3, 8) == [(0, 3)] and split_evenly(0, 4) == []
    model = QuadraticModel(np.random.default_rng(0).normal(size=(3, 4, 5, 3)), batch_size=16)
    SmoothGrad(samples=20).attribute(model, np.zeros((4, 5, 3)), Target(0))
    assert model.largest_batch == 10  # 10 + 10, not 16 + 4


def test_batch_bound_follows_memory_per_image_and_free_memory():
    from saliency_core.batching import GRADIENT_MEMORY_FACTOR, MAX_BATCH, choose_batch_size

    per_image = 50 * 2**20
    assert choose_batch_size(per_image, available_bytes=10 * 2**30, share=0.2) == \
        int(0.2 * 10 * 2**30 // (GRADIENT_MEMORY_FACTOR * per_image))
    assert choose_batch_size(per_image, available_bytes=20 * 2**30) > \
        choose_batch_size(per_image, available_bytes=5 * 2**30)
    assert choose_batch_size(4 * per_image, available_bytes=10 * 2**30) < \
        choose_batch_size(per_image, available_bytes=10 * 2**30)
    assert choose_batch_size(10**12, available_bytes=2**30) == 1
    assert choose_batch_size(1, available_bytes=2**40) == MAX_BATCH


class CountingModel(QuadraticModel):
    """Counts the images each kind of pass sees, to check :meth:`SaliencyMethod.work`."""

    def __init__(self, weights: np.ndarray, batch_size: int = 7):
        super().__init__(weights, batch_size)
        self.seen = {"gradient": 0, "forward": 0, "layer": 0}

    def gradients(self, images, target):
        self.seen["gradient"] += len(images)
        return super().gradients(images, target)

    def scores(self, images, target):
        self.seen["forward"] += len(images)
        return super().gradients(images, target)[1]

    def layer_gradients(self, images, target, layer=None):
        self.seen["layer"] += len(images)
        grads, scores = super().gradients(images, target)
        return images[:, ::2, ::2], grads[:, ::2, ::2], scores

    def layer_activations(self, images, layer=None):
        self.seen["forward"] += len(images)
        return np.asarray(images)[:, ::2, ::2]

    def default_cam_layer(self):
        return "last"


@pytest.mark.parametrize("key, params", [
    ("vanilla", {}), ("gradient_x_input", {}), ("smoothgrad", {"samples": 9}),
    ("vargrad", {"samples": 3}), ("integrated_gradients", {"steps": 10}),
    ("integrated_gradients", {"steps": 10, "grid": "uniform"}),
    ("integrated_gradients", {"steps": 10, "target_gap": "1"}),
    ("gradcam", {}), ("occlusion", {"patch": 4, "stride": 2}),
    ("occlusion", {"patch": 3, "stride": 5}), ("xrai", {"steps": 5}),
    ("blur_ig", {"steps": 6, "max_sigma": 3.0}), ("guided_ig", {"steps": 10}),
    ("scorecam", {}), ("scorecam", {"channels": "64"}), ("layercam", {}),
    ("rise", {"masks": 30, "grid": 3})])
def test_work_counts_every_model_pass_a_method_makes(key, params):
    """The budget trusts ``work()`` before anything runs, so it may never undercount;
    for fixed-cost methods it is exact."""
    rng = np.random.default_rng(3)
    model = CountingModel(rng.normal(size=(2, 9, 11, 3)))
    image = rng.uniform(0, 255, size=(9, 11, 3))
    method = get_method(key, **params)
    method.attribute(model, image, Target(1))
    declared = method.work((9, 11))
    refines = params.get("target_gap", "off") != "off"
    bounded = key == "scorecam"  # declares its channel cap: the layer is not known yet
    for kind in ("gradient", "forward", "layer"):
        if (refines and kind == "gradient") or (bounded and kind == "forward"):
            assert model.seen[kind] <= getattr(declared, kind), (kind, model.seen, declared)
        else:
            assert model.seen[kind] == getattr(declared, kind), (kind, model.seen, declared)
