"""Channel reduction and normalisation against hand-computed values (no TensorFlow)."""

import numpy as np
import pytest

from saliency_core.pipeline import to_display_map
from saliency_core.postprocess import normalize_map, reduce_channels

# One 1x2 image with 3 channels: pixel A = (1, -3, 2), pixel B = (0, 0.5, -0.5).
ATTR = np.array([[[1.0, -3.0, 2.0], [0.0, 0.5, -0.5]]])


def test_max_abs_is_the_papers_reduction():
    np.testing.assert_allclose(reduce_channels(ATTR, "max_abs"), [[3.0, 0.5]])


def test_mean_abs():
    np.testing.assert_allclose(reduce_channels(ATTR, "mean_abs"), [[2.0, 1.0 / 3.0]], rtol=1e-6)


def test_l2():
    np.testing.assert_allclose(reduce_channels(ATTR, "l2"), [[np.sqrt(14.0), np.sqrt(0.5)]],
                               rtol=1e-6)


def test_signed_keeps_sign():
    np.testing.assert_allclose(reduce_channels(ATTR, "signed"), [[0.0, 0.0]])
    np.testing.assert_allclose(reduce_channels(np.array([[[1.0, 2.0, -4.0]]]), "signed"),
                               [[-1.0]])


def test_unknown_reduction_and_bad_shape():
    with pytest.raises(ValueError):
        reduce_channels(ATTR, "median")
    with pytest.raises(ValueError):
        reduce_channels(np.zeros((2, 2)), "max_abs")


def test_normalize_min_max():
    np.testing.assert_allclose(normalize_map(np.array([[2.0, 4.0], [6.0, 10.0]])),
                               [[0.0, 0.25], [0.5, 1.0]])


def test_normalize_clips_percentile():
    m = np.arange(101, dtype=float).reshape(1, -1)  # 0..100; 90th percentile = 90
    out = normalize_map(m, clip_percentile=90)
    assert out.max() == 1.0
    np.testing.assert_allclose(out[0, 90:], 1.0)
    np.testing.assert_allclose(out[0, 45], 0.5)


def test_normalize_signed_keeps_zero_at_zero():
    out = normalize_map(np.array([[-2.0, 0.0, 1.0]]), signed=True)
    np.testing.assert_allclose(out, [[-1.0, 0.0, 0.5]])


def test_constant_and_nonfinite_maps():
    np.testing.assert_array_equal(normalize_map(np.full((3, 3), 7.0)), np.zeros((3, 3)))
    out = normalize_map(np.array([[np.nan, 1.0, np.inf, 3.0]]))
    np.testing.assert_allclose(out, [[0.0, 1 / 3, 0.0, 1.0]], rtol=1e-6)


def test_to_display_map_chains_both_steps():
    out = to_display_map(ATTR, "max_abs", clip_percentile=None)
    np.testing.assert_allclose(out, [[1.0, 0.0]])
    assert out.dtype == np.float32


def test_normalize_jointly_shares_one_scale():
    from saliency_core.postprocess import normalize_jointly

    a, b = np.array([[0.0, 1.0]]), np.array([[2.0, 4.0]])
    out = normalize_jointly([a, b])
    np.testing.assert_allclose(out[0], [[0.0, 0.25]])
    np.testing.assert_allclose(out[1], [[0.5, 1.0]])
    signed = normalize_jointly([np.array([[-1.0, 0.0]]), np.array([[2.0, 0.5]])], signed=True)
    np.testing.assert_allclose(signed[0], [[-0.5, 0.0]])
    np.testing.assert_allclose(signed[1], [[1.0, 0.25]])
    assert normalize_jointly([]) == []
