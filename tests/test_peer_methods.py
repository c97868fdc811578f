"""The six methods our peers have, against analytic models (no TensorFlow).

RISE is random, so it is checked against the paper's estimator (eq. 6 of Petsiuk et
al. 2018, with centred scores; masks built with the paper's own per-mask resize),
against eq. 6's exact expectation on a linear model, and for reproducibility with a
fixed seed. The deterministic methods are compared with their reference code in
``tests/test_peer_references.py``.
"""

import math

import numpy as np
import pytest
from skimage.transform import resize

from saliency_core.methods import FAMILIES, METHODS, RISE, Target, get_method, methods_by_family
from saliency_core.methods.rise import draw_masks
from saliency_core.methods.xrai import rank_regions


class LinearModel:
    """``S_c(x) = sum(W_c * x) + b_c``: forward passes only (RISE needs no gradient)."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, batch_size: int = 64):
        self.weights, self.bias = weights, bias
        self.input_size = weights.shape[1:3]
        self.batch_size = batch_size
        self.largest_batch = 0

    def scores(self, images, target):
        self.largest_batch = max(self.largest_batch, len(images))
        images = np.asarray(images, np.float64)
        return ((images * self.weights[target.class_index]).sum(axis=(1, 2, 3))
                + self.bias[target.class_index])


@pytest.fixture
def linear():
    rng = np.random.default_rng(0)
    return LinearModel(rng.normal(size=(2, 16, 16, 3)), np.array([0.5, -2.0]))


@pytest.fixture
def picture():
    return np.random.default_rng(1).uniform(0, 255, size=(16, 16, 3)).astype(np.float32)


def paper_masks(count: int, grid: int, keep: float, size: tuple[int, int], seed: int):
    """The masks as the paper's code builds them: each grid resized on its own
    (bilinear, reflected edges) to ``(grid + 1)`` cells, then cropped at its offset."""
    grids, offsets = draw_masks(count, grid, keep, size, seed)
    up = [(grid + 1) * math.ceil(side / grid) for side in size]
    return np.stack([resize(g.astype(np.float64), up, order=1, mode="reflect",
                            anti_aliasing=False)[y:y + size[0], x:x + size[1]]
                     for g, (y, x) in zip(grids, offsets, strict=True)])


def test_rise_is_the_papers_estimator_with_centred_scores(linear, picture):
    """Eq. 6 with the scores centred on their mean (a control variate: the same
    expectation, checked on a linear model below, without the noise of how often each
    pixel happened to be kept), on masks built as the paper's code builds them."""
    method = RISE(masks=300, grid=4, keep=0.4, seed=5)
    result = method.attribute(linear, picture, Target(0))
    masks = paper_masks(300, 4, 0.4, (16, 16), seed=5)
    scores = linear.scores(picture[None] * masks[..., None], Target(0))
    expected = np.tensordot(scores - scores.mean(), masks, axes=1) / (300 * 0.4) + scores.mean()
    mean_score = result.info["mean score of the masked images"]
    assert mean_score == pytest.approx(scores.mean(), rel=1e-6)  # float32 masked images
    shift = result.info["estimate at the least useful pixel (subtracted)"]
    assert result.values.min() == 0.0 and shift == pytest.approx(expected.min(), rel=1e-5)
    np.testing.assert_allclose(result.values[..., 0] + shift, expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    assert result.score == pytest.approx(float(linear.scores(picture[None], Target(0))[0]))


def exact_expectation(model: LinearModel, image: np.ndarray, class_index: int, grid: int,
                      keep: float) -> np.ndarray:
    """``E[S(p)]`` of RISE's estimator on a linear model, without sampling.

    With cells kept independently, ``E[M(u) M(v) | offset] = keep^2 F(u) F(v) +
    keep (1 - keep) sum_j phi_j(u) phi_j(v)``, where ``phi_j`` is cell ``j``'s upsampled
    indicator and ``F`` their sum; the offsets are uniform over one cell.
    """
    height, width = image.shape[:2]
    cells = [math.ceil(side / grid) for side in (height, width)]
    up = [(grid + 1) * c for c in cells]
    basis = []
    for j in range(grid * grid):
        one = np.zeros(grid * grid)
        one[j] = 1.0
        basis.append(resize(one.reshape(grid, grid), up, order=1, mode="reflect",
                            anti_aliasing=False))
    basis = np.stack(basis)  # (cells, up_h, up_w)
    contribution = (image * model.weights[class_index]).sum(axis=-1).ravel()  # per pixel
    bias = model.bias[class_index]
    mean_mask = np.zeros(height * width)
    second = np.zeros((height * width, height * width))
    offsets = [(y, x) for y in range(cells[0]) for x in range(cells[1])]
    for y, x in offsets:
        phi = basis[:, y:y + height, x:x + width].reshape(grid * grid, -1)
        total = phi.sum(axis=0)
        mean_mask += keep * total / len(offsets)
        second += (keep ** 2 * np.outer(total, total)
                   + keep * (1 - keep) * phi.T @ phi) / len(offsets)
    return ((contribution @ second + bias * mean_mask) / keep).reshape(height, width)


def test_rise_converges_to_the_papers_expectation_on_a_linear_model(linear, picture):
    """``E[f(x * M) M(p)] / E[M]``, eq. 6's expectation, computed exactly."""
    expected = exact_expectation(linear, picture.astype(np.float64), 1, grid=4, keep=0.5)
    errors = []
    for masks in (500, 8000):
        result = RISE(masks=masks, grid=4, keep=0.5, seed=2).attribute(linear, picture,
                                                                        Target(1))
        values = result.values[..., 0] + result.info[
            "estimate at the least useful pixel (subtracted)"]
        # the map's spread around its mean, where the estimator's noise shows
        errors.append(np.abs(values - expected).mean() / np.abs(expected - expected.mean()).mean())
        r = np.corrcoef(values.ravel(), expected.ravel())[0, 1]
    assert r >= 0.995, r
    assert errors[1] < 0.1 and errors[1] < errors[0] / 2, errors  # about 1/sqrt(N)


def test_rise_is_reproducible_with_a_seed_and_independent_of_the_batch_size(linear, picture):
    first = RISE(masks=200, grid=5, seed=11).attribute(linear, picture, Target(0)).values
    again = RISE(masks=200, grid=5, seed=11).attribute(linear, picture, Target(0)).values
    np.testing.assert_array_equal(first, again)
    linear.batch_size, linear.largest_batch = 7, 0
    chunked = RISE(masks=200, grid=5, seed=11).attribute(linear, picture, Target(0)).values
    assert linear.largest_batch <= 7
    np.testing.assert_allclose(chunked, first, rtol=1e-6, atol=1e-6 * np.abs(first).max())
    other = RISE(masks=200, grid=5, seed=12).attribute(linear, picture, Target(0)).values
    assert not np.allclose(other, first)


def test_rise_reports_progress_per_batch(linear, picture):
    seen = []
    linear.batch_size = 50
    RISE(masks=200, grid=4).attribute(linear, picture, Target(0), progress=seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0]


def test_xrai_region_ranking_by_gain_density():
    attr = np.zeros((10, 10))
    attr[:, :5] = 1.0
    attr[:5, 5:] = 3.0
    left = np.zeros((10, 10), bool)
    left[:, :5] = True
    top_right = np.zeros((10, 10), bool)
    top_right[:5, 5:] = True
    everything = np.ones((10, 10), bool)
    values, regions = rank_regions(attr, [left, everything, top_right], min_new_pixels=10)
    # The whole image first ranks second (mean 1.25 > 1.0), but gains count only new
    # pixels: once the top right (3.0) is taken, its new pixels average 50 / 75 < 1.0,
    # so the left half comes next and the whole image adds only the bottom right (0.0).
    assert regions == 3
    assert (values[:5, 5:] == 3.0).all() and (values[:, :5] == 1.0).all()
    assert (values[5:, 5:] == 0.0).all()


def test_every_method_has_a_family_and_the_new_ones_sit_in_theirs():
    assert all(cls.family in FAMILIES for cls in METHODS.values())
    groups = methods_by_family()
    assert sum(len(keys) for keys in groups.values()) == len(METHODS)
    assert {"xrai", "blur_ig", "guided_ig"} <= set(groups["paths"])
    assert {"scorecam", "layercam"} <= set(groups["cams"])
    assert "rise" in groups["perturbation"]


@pytest.mark.parametrize("key, bad", [
    ("xrai", {"steps": 1}), ("blur_ig", {"max_sigma": 0}), ("guided_ig", {"fraction": 0}),
    ("guided_ig", {"baseline": "grey"}), ("scorecam", {"channels": "7"}),
    ("rise", {"keep": 0}), ("rise", {"masks": 0})])
def test_bad_parameters_are_refused(key, bad):
    with pytest.raises(ValueError):
        get_method(key, **bad)
