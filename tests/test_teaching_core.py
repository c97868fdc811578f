"""The "How it works" core against analytic functions (no TensorFlow): the map's steps,
the Taylor test, and the figures' shapes."""

from __future__ import annotations

import numpy as np
import pytest

from saliency_core.methods import Target
from saliency_core.teaching import (
    compute_steps,
    make_epsilons,
    nudge_pixels,
    run_taylor_test,
    select_pixels,
)
from saliency_core.teaching.figures import make_pipeline_figures, make_taylor_figure, mark_pixels

SHAPE = (12, 10, 3)


class TanhModel:
    """``S(I) = sum A * tanh(I / 40 - 3.2)``: smooth, curved, with an exact gradient."""

    input_size = SHAPE[:2]
    batch_size = 64

    def __init__(self, seed: int = 0, linear: bool = False):
        self.weights = np.random.default_rng(seed).normal(size=SHAPE) * 3.0
        self.linear = linear
        self.score_calls: list[int] = []

    def _inner(self, images):
        return np.asarray(images, np.float64) / 40.0 - 3.2

    def scores(self, images, target: Target):
        self.score_calls.append(len(images))
        inner = self._inner(images)
        values = inner if self.linear else np.tanh(inner)
        return (values * self.weights).sum(axis=(1, 2, 3))

    def gradients(self, images, target: Target):
        inner = self._inner(images)
        slope = np.ones_like(inner) if self.linear else 1.0 - np.tanh(inner) ** 2
        grads = self.weights * slope / 40.0
        values = inner if self.linear else np.tanh(inner)
        return grads.astype(np.float32), (values * self.weights).sum(axis=(1, 2, 3))


def an_image(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(40, 215, SHAPE).astype(np.float32)


def test_steps_follow_the_paper_one_array_each():
    model, image = TanhModel(), an_image()
    steps = compute_steps(model, image, Target(0), clip_percentile=None)
    expected, score = model.gradients(image[None], Target(0))
    np.testing.assert_allclose(steps.gradient, expected[0], rtol=1e-6)
    np.testing.assert_array_equal(steps.magnitude, np.abs(steps.gradient))
    np.testing.assert_allclose(steps.reduced, np.abs(expected[0]).max(axis=-1), rtol=1e-6)
    assert steps.normalised.min() == 0.0 and steps.normalised.max() == pytest.approx(1.0)
    assert steps.reduced.shape == steps.normalised.shape == SHAPE[:2]
    assert steps.score == pytest.approx(score[0])
    np.testing.assert_array_equal(steps.network_input, image)  # no preprocessed() here


def test_small_nudges_are_predicted_within_five_percent_on_a_smooth_model():
    model, image = TanhModel(), an_image()
    steps = compute_steps(model, image, Target(0))
    test = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=20,
                           epsilons=make_epsilons(0.01, 0.5))
    for key in ("most", "random", "least"):
        assert np.all(test.curves[key].relative_error() < 0.05), key
    assert test.holds_up_to("most") == pytest.approx(0.5)
    assert test.breaks_at("most") is None


def test_large_nudges_show_where_the_straight_line_stops_holding():
    model, image = TanhModel(), an_image()
    steps = compute_steps(model, image, Target(0))
    test = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=20,
                           epsilons=make_epsilons(0.01, 100))
    holds, breaks = test.holds_up_to("most"), test.breaks_at("most")
    assert holds is not None and breaks is not None and holds < breaks
    errors = test.curves["most"].relative_error()
    assert errors[0] < 0.01 and errors[-1] > 0.1


def test_a_linear_model_is_predicted_exactly_at_every_size():
    model, image = TanhModel(linear=True), an_image()
    steps = compute_steps(model, image, Target(0))
    test = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=30,
                           epsilons=make_epsilons(0.1, 30))
    for curve in test.curves.values():
        np.testing.assert_allclose(curve.actual, curve.predicted, rtol=1e-6)
    # and the ranking: the most salient move a linear score most, the least salient least
    most, rand, least = (test.curves[k].actual[-1] for k in ("most", "random", "least"))
    assert most > rand > least > 0


def test_all_nudged_images_are_scored_in_one_call():
    model, image = TanhModel(), an_image()
    steps = compute_steps(model, image, Target(0))
    epsilons = make_epsilons(0.1, 10)
    test = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=5,
                           epsilons=epsilons, random_draws=4)
    assert model.score_calls == [1 + len(epsilons) * (2 + 4)]
    assert test.images_scored == model.score_calls[0]


def test_nudges_stay_in_range_and_the_prediction_uses_what_was_applied():
    image = np.full(SHAPE, 254.5, np.float32)
    gradient = np.ones(SHAPE, np.float32)
    nudged, delta = nudge_pixels(image, gradient, np.array([0, 7]), 4.0)
    assert nudged.max() == 255.0
    np.testing.assert_allclose(delta.reshape(-1, 3)[[0, 7]], 0.5)
    assert np.count_nonzero(delta) == 6  # two pixels, three channels each
    model = TanhModel(linear=True)
    steps = compute_steps(model, image, Target(0))
    test = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=3,
                           epsilons=np.array([1.0, 8.0]))
    for curve in test.curves.values():
        np.testing.assert_allclose(curve.actual, curve.predicted, rtol=1e-5, atol=1e-9)


def test_pixel_selections_pick_what_they_say():
    saliency = np.arange(20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_array_equal(select_pixels(saliency, 3, "most"), [19, 18, 17])
    np.testing.assert_array_equal(select_pixels(saliency, 3, "least"), [0, 1, 2])
    first = select_pixels(saliency, 8, "random", np.random.default_rng(5))
    again = select_pixels(saliency, 8, "random", np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)
    assert len(set(first.tolist())) == 8
    with pytest.raises(ValueError):
        select_pixels(saliency, 21, "most")
    with pytest.raises(ValueError):
        select_pixels(saliency, 2, "brightest")


def test_nudge_sizes_are_round_values_between_the_ends():
    np.testing.assert_allclose(make_epsilons(0.01, 10),
                               [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10])
    np.testing.assert_allclose(make_epsilons(0.003, 0.3), [0.003, 0.005, 0.01, 0.02, 0.05,
                                                           0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        make_epsilons(1.0, 1.0)


def test_figures_have_the_model_input_shape():
    model, image = TanhModel(), an_image()
    steps = compute_steps(model, image, Target(0))
    gradient, mapped = make_pipeline_figures(steps, "cividis")
    traces = [*gradient.data, *mapped.data]
    heatmaps = [t for t in traces if t.type == "heatmap"]
    assert len(heatmaps) == 5  # three channels, max over channels, normalised
    assert all(np.shape(t.z) == SHAPE[:2] for t in heatmaps)
    reduced = next(t for t in heatmaps if t.name == "max over channels")
    assert np.shape(reduced.customdata) == SHAPE  # hover: three channels + reduced value
    assert len([t for t in traces if t.type == "image"]) == 3
    assert gradient.layout.coloraxis.cmid == 0.0 and gradient.layout.coloraxis.cmin == \
        -gradient.layout.coloraxis.cmax
    # two panels a row in each figure, in the order of the steps; zooming one zooms its row
    for figure, names in ((gradient, ["input", "dS/dred", "dS/dgreen", "dS/dblue"]),
                          (mapped, ["|dS/dI|", "max over channels", "normalised", "overlay"])):
        assert [t.name for t in figure.data] == names
        assert [t.xaxis for t in figure.data] == ["x", "x2", "x3", "x4"]
        assert figure.layout.xaxis2.domain[0] > 0.4 and figure.layout.yaxis3.domain[1] < 0.6
        assert figure.layout.xaxis4.matches == "x" and figure.layout.yaxis4.matches == "y"
    test = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=4,
                           epsilons=make_epsilons(0.01, 100))
    taylor = make_taylor_figure(test)
    assert {t.name for t in taylor.data} >= {"4 most salient pixels: actual",
                                            "4 random pixels: predicted w·ΔI",
                                            "4 least salient pixels: actual ÷ predicted"}
    assert all(len(t.x) == len(test.epsilons) for t in taylor.data)
    marked = mark_pixels(image, test.pixels)
    assert marked.shape == SHAPE and marked.dtype == np.uint8
    row, col = np.unravel_index(test.pixels["most"][0], SHAPE[:2])
    np.testing.assert_array_equal(marked[row, col], [0xC0, 0x39, 0x2B])


def test_the_taylor_chart_holds_every_curve_it_draws():
    """A prediction that runs away from the actual change (as the most salient pixels'
    does at large nudges) stays inside the plot, and so do the random draws' error bars
    (issue 24: the red curves ran off the top)."""
    model, image = TanhModel(), an_image()
    steps = compute_steps(model, image, Target(0))
    test = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=20,
                           epsilons=make_epsilons(0.01, 100))
    most = test.curves["most"]
    assert most.predicted[-1] > 1.5 * most.actual[-1]  # tanh saturates, the line does not
    figure = make_taylor_figure(test)
    low, high = figure.layout.yaxis.range
    for trace in figure.data:
        if trace.xaxis != "x":
            continue
        errors = (np.asarray(trace.error_y.array) if trace.error_y.array is not None
                  else np.zeros(len(trace.y)))
        y = np.asarray(trace.y, dtype=float)
        assert np.nanmax(y + errors) <= high and np.nanmin(y - errors) >= low, trace.name


def test_changes_within_float_rounding_are_left_out_of_the_verdict():
    model, image = TanhModel(), an_image()
    steps = compute_steps(model, image, Target(0))
    tiny = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=1,
                           epsilons=np.array([1e-6, 2e-6]))
    assert not tiny.measurable("most").any()
    assert tiny.holds_up_to("most") is None and tiny.breaks_at("most") is None
    # noise at the small end no longer hides where the straight line holds
    test = run_taylor_test(model, image, steps.gradient, steps.reduced, Target(0), k=20,
                           epsilons=np.array([1e-7, 1e-6, 0.01, 0.1, 100.0]))
    measurable = test.measurable("most")
    assert measurable.tolist() == [False, False, True, True, True]
    assert test.holds_up_to("most") == pytest.approx(0.1)
    assert test.breaks_at("most") == pytest.approx(100.0)
    figure = make_taylor_figure(test)
    ratio = next(t for t in figure.data if t.name == "20 most salient pixels: actual ÷ predicted")
    assert np.isnan(ratio.y[0]) and np.isnan(ratio.y[1]) and not np.isnan(ratio.y[2])
