"""The trust checks' core: analytic similarity maths, and the acceptance checks on a tiny
CNN trained here on the synthetic patch task (as in ``test_synthetic_patch.py``).

Each 32x32 image is grey noise with one 5x5 coloured patch; the class is the patch's
colour. A faithful map peaks in the patch, so deleting its top pixels first must lower
the probability faster than a random order, and randomising the weights must change it.
"""

import keras
import numpy as np
import pytest
from test_synthetic_patch import make_dataset

from saliency_core.methods import Target
from saliency_core.tf_adapter import KerasClassifier
from saliency_core.trust import (
    DRAWS,
    RANDOM_ORDERS,
    RANDOM_PART,
    ModelRandomizer,
    check_edges,
    check_random_classes,
    compare_methods,
    compute_sobel_edges,
    compute_spearman,
    compute_ssim,
    define_blocks,
    explain_with_sobel,
    make_method_explainer,
    make_step_image,
    run_faithfulness,
    run_randomization,
)
from saliency_core.trust.faithfulness import compute_auc, rank_pixels
from saliency_core.trust.similarity import filter_gaussian, rank_values
from saliency_core.trust.verdicts import BARELY_DEPENDS, SIMILAR_SPEARMAN

# ----------------------------------------------------------------- analytic maths


def test_ranks_average_ties():
    assert rank_values(np.array([10, 20, 20, 5])).tolist() == [2, 3.5, 3.5, 1]
    assert rank_values(np.array([3, 3, 3])).tolist() == [2, 2, 2]


def test_spearman_is_one_for_any_increasing_transform_and_minus_one_reversed():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 16))
    assert compute_spearman(a, np.exp(3 * a) + 7) == pytest.approx(1.0)
    assert compute_spearman(a, -a ** 3) == pytest.approx(-1.0)


def test_spearman_matches_a_hand_computed_value_with_ties():
    # ranks of a: 1 2 3 4 5; ranks of b = [5, 6, 7, 8, 7]: 1 2 3.5 5 3.5.
    # Pearson of the ranks: centred a = -2 -1 0 1 2, centred b = -2 -1 0.5 2 0.5
    # sum of products 4 + 1 + 0 + 2 + 1 = 8; sqrt(10 * 9.5) -> 8 / sqrt(95).
    value = compute_spearman(np.array([1, 2, 3, 4, 5]), np.array([5, 6, 7, 8, 7]))
    assert value == pytest.approx(8 / np.sqrt(95))


def test_spearman_of_a_flat_map_is_zero_and_shapes_must_match():
    assert compute_spearman(np.ones((4, 4)), np.arange(16).reshape(4, 4)) == 0.0
    with pytest.raises(ValueError):
        compute_spearman(np.ones((4, 4)), np.ones((4, 5)))


def test_ssim_of_a_map_with_itself_is_one_and_of_its_negative_is_low():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(40, 40))
    assert compute_ssim(a, a) == pytest.approx(1.0)
    assert compute_ssim(a, 1 - a) < 0


def test_ssim_of_two_constant_maps_is_the_luminance_term():
    # Constant maps: variances and covariance are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    c1 = 0.01 ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    assert compute_ssim(np.full((32, 32), 0.2), np.full((32, 32), 0.6)) == pytest.approx(expected)
    # a map smaller than the window uses one global window: the same value
    assert compute_ssim(np.full((5, 5), 0.2), np.full((5, 5), 0.6)) == pytest.approx(expected)


def test_ssim_global_window_matches_the_formula_by_hand():
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    b = np.array([[0.0, 1.0], [0.5, 0.5]])
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = 0.5, 0.5
    var_a = np.mean(a * a) - mu_a ** 2  # 0.25
    var_b = np.mean(b * b) - mu_b ** 2  # 0.125
    cov = np.mean(a * b) - mu_a * mu_b  # 0.125
    expected = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    assert compute_ssim(a, b) == pytest.approx(expected)


def test_gaussian_filter_keeps_constants_and_sums():
    assert np.allclose(filter_gaussian(np.full((20, 20, 3), 7.0), 2.0), 7.0)
    impulse = np.zeros((41, 41))
    impulse[20, 20] = 1
    assert filter_gaussian(impulse, 2.0).sum() == pytest.approx(1.0)


def test_sobel_finds_a_vertical_edge_only_where_it_is():
    image = np.zeros((10, 10, 3))
    image[:, 5:] = 100.0
    edges = compute_sobel_edges(image)
    assert np.allclose(edges[:, [0, 1, 2, 7, 8, 9]], 0)
    assert np.allclose(edges[:, 4:6], 400.0, rtol=1e-3)  # (1 + 2 + 1) * 100


def test_step_images_and_auc():
    image = np.full((4, 4, 3), 200.0, np.float32)
    reference = np.zeros_like(image)
    order = rank_pixels(np.arange(16).reshape(4, 4))
    assert order[0] == 15
    half = make_step_image(image, reference, order, 16, "deletion", steps=32)
    assert (half[..., 0] == 0).sum() == 8 and half[3, 3, 0] == 0 and half[0, 0, 0] == 200
    assert make_step_image(image, reference, order, 0, "insertion").max() == 0
    assert make_step_image(image, reference, order, 32, "insertion").min() == 200
    x = np.linspace(0, 1, 33)
    assert compute_auc(x, np.ones(33)) == pytest.approx(1.0)
    assert compute_auc(x, x) == pytest.approx(0.5)


def test_verdicts_say_the_spread_and_are_undecided_when_it_crosses_the_line():
    from saliency_core.trust.verdicts import (
        describe_draws,
        judge_random_classes,
        judge_randomization,
    )

    assert describe_draws([0.0, 0.1, 0.2]) == "0.10 ± 0.10 over 3 draws, from 0.00 to 0.20"
    assert describe_draws([0.999, 1.0]) == "1.00 over 2 draws, all equal to two decimals"
    blocks = ["head", "stage 2", "stage 1"]
    low = np.array([[0.4, 0.3, 0.05], [0.3, 0.2, -0.02], [0.35, 0.1, 0.1]])
    passes = judge_randomization(low, "cascading", blocks)
    assert passes.outcome == "passes" and passes.passed and not passes.undecided
    assert "Spearman 0.04 ± 0.06 over 3 draws, from -0.02 to 0.10" in passes.text
    assert passes.spread == (-0.02, 0.1) and "Rule:" in passes.rule
    crossing = low.copy()
    crossing[1, -1] = 0.7
    undecided = judge_randomization(crossing, "cascading", blocks)
    assert undecided.outcome == "undecided" and undecided.text.endswith("more draws may "
                                                                        "settle it")
    stays = np.array([[0.99, 0.95, 0.2], [1.0, 0.97, 0.1]])
    fails = judge_randomization(stays, "cascading", blocks)
    assert fails.outcome == "fails" and BARELY_DEPENDS in fails.text
    assert "until 3 of 3 blocks are random" in fails.text and "(head)" in fails.text
    independent = judge_randomization(np.array([[0.2, 0.8, 0.1], [0.3, 0.9, 0.2]]),
                                      "independent", blocks)
    assert independent.outcome == "undecided" and independent.value == 2
    assert "for 2 of 3 blocks" in independent.text and "not for stage 2" in independent.text
    mostly_same = judge_randomization(np.array([[0.9, 0.8, 0.1], [0.9, 0.9, 0.2]]),
                                      "independent", blocks)
    assert mostly_same.outcome == "fails"
    classes = judge_random_classes([0.2, 0.3, 0.55])
    assert classes.outcome == "undecided" and "1 of 3 random other classes" in classes.text
    assert judge_random_classes([0.1, 0.2]).passed


def test_deletion_and_insertion_verdicts_count_random_orders():
    from saliency_core.trust.verdicts import judge_deletion, judge_insertion

    randoms = np.linspace(0.30, 0.49, 20)
    assert judge_deletion(0.305, randoms).text.startswith(
        "removing the map's top pixels first lowers the probability faster than 19 of 20 "
        "random orders")
    assert judge_deletion(0.305, randoms).outcome == "passes"
    assert judge_deletion(0.385, randoms).outcome == "undecided"  # beats 11 of 20
    assert judge_deletion(0.385, randoms).value == 11
    assert judge_deletion(0.395, randoms).outcome == "fails"  # beats 10: no better than half
    assert judge_insertion(0.5, randoms).outcome == "passes"
    assert judge_insertion(0.2, randoms).value == 0


class _AveragingModel:
    """A numpy stand-in for the classifier: two classes scored by the image's mean
    brightness; counts every image it sees."""

    batch_size = 7

    def __init__(self):
        self.seen = 0

    def logits(self, images):
        self.seen += len(images)
        m = images.mean(axis=(1, 2, 3))
        return np.stack([m, -m], axis=1)

    def probabilities(self, images):
        logits = self.logits(images)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_random_orders_share_their_images_and_insertion_reads_the_reversed_order():
    from saliency_core.trust.faithfulness import count_images, draw_random_orders, score_orders

    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
    reference = np.zeros_like(image)
    model = _AveragingModel()
    order = rank_pixels(rng.uniform(size=(8, 8)))
    randoms = draw_random_orders(64, 20, seed=1)
    deletion, insertion, random_deletion, random_insertion = score_orders(
        model, image, reference, [order], randoms, 0, steps=32, measure="logit")
    assert model.seen == count_images(32, 1, 20) == 2 + 62 + 20 * 31  # not 2 * 21 * 33
    assert random_deletion.shape == random_insertion.shape == (20, 33)

    def direct(kind, pixel_order):
        return np.array([model.logits(make_step_image(image, reference, pixel_order, s, kind,
                                                      32)[None])[0, 0] for s in range(33)])

    np.testing.assert_allclose(deletion[0], direct("deletion", order), rtol=1e-6)
    np.testing.assert_allclose(insertion[0], direct("insertion", order), rtol=1e-6)
    for i in (0, 7):
        np.testing.assert_allclose(random_deletion[i], direct("deletion", randoms[i]), rtol=1e-6)
        np.testing.assert_allclose(random_insertion[i], direct("insertion", randoms[i][::-1]),
                                   rtol=1e-6)


def test_seeds_derive_from_their_parts_only():
    from saliency_core.trust import derive_seed

    assert derive_seed("abc", "draw", 0) == derive_seed("abc", "draw", 0)
    assert derive_seed("abc", "draw", 0) != derive_seed("abc", "draw", 1)
    assert derive_seed("abc", "draw", 0) != derive_seed("abd", "draw", 0)
    assert 0 <= derive_seed("x") < 2 ** 20


# ----------------------------------------------------------------- blocks


def test_blocks_of_the_default_model_are_its_stages_and_head():
    from saliency_core.models.efficientnet_lite import build_efficientnet_lite0

    blocks = define_blocks(build_efficientnet_lite0(), "efficientnet_lite0")
    assert [b.name for b in blocks] == ["stem"] + [f"stage {i}" for i in range(1, 8)] + ["head"]
    assert blocks[-1].layers == ("conv_head", "bn1", "fc")
    assert "blocks_15_project_conv" in blocks[7].layers and "blocks_14_add" not in \
        sum((b.layers for b in blocks), ())


def test_blocks_of_a_vgg_style_model_and_the_generic_fallback():
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for b in (1, 2):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"block{b}_conv1")(x)
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"block{b}_conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for name in ("fc1", "fc2", "predictions"):
        x = keras.layers.Dense(3, name=name)(x)
    vgg_like = keras.Model(inputs, x)
    assert [b.name for b in define_blocks(vgg_like)] == ["conv block 1", "conv block 2",
                                                         "classifier"]
    inputs = keras.Input((5,))
    x = inputs
    for _ in range(20):
        x = keras.layers.Dense(5)(x)
    blocks = define_blocks(keras.Model(inputs, x))
    assert len(blocks) == 8
    assert sum(len(b.layers) for b in blocks) == 20


# ----------------------------------------------------------------- the tiny CNN


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(4321)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    # Six ReLU layers: deep enough for Guided Backpropagation to show its known
    # insensitivity to the top layers (with two, randomising the first changes every map),
    # with a margin that survives the small run-to-run differences of CPU training.
    for i in range(6):
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
        if i == 2:
            x = keras.layers.MaxPooling2D()(x)
    # Global average pooling at the end: with global max pooling every map, even a random
    # model's, is zero outside the few receptive fields of the maxima, and those shared
    # zeros alone keep the rank correlation near 0.3 after full randomisation.
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    images, labels, _ = make_dataset(2000, seed=0)
    model.fit(images, labels, epochs=6, batch_size=64, verbose=0)
    held_out, held_labels, boxes = make_dataset(8, seed=99)
    classifier = KerasClassifier(model, lambda v: v, ("red", "blue"))
    accuracy = float((classifier.probabilities(held_out).argmax(1) == held_labels).mean())
    assert accuracy >= 0.85, f"the tiny CNN did not learn the task (accuracy {accuracy:.2f})"
    return classifier, held_out, held_labels


@pytest.fixture(scope="module")
def randomizer(tiny):
    return ModelRandomizer(tiny[0], seed=3)


def _weights(classifier) -> list[np.ndarray]:
    return [np.array(w, copy=True) for w in classifier.model.get_weights()]


def _assert_bitwise_equal(before: list[np.ndarray], after: list[np.ndarray]) -> None:
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


@pytest.mark.slow
def test_cascading_randomisation_changes_the_vanilla_map(tiny, randomizer):
    classifier, images, labels = tiny
    before = _weights(classifier)
    explain = make_method_explainer("vanilla")
    for image, label in zip(images[:4], labels[:4], strict=True):
        result = run_randomization(randomizer, explain, image, Target(int(label)), "cascading")
        assert result.maps.shape == (len(randomizer.blocks) + 1, 32, 32)
        assert result.spearman.shape == (DRAWS, len(randomizer.blocks))
        assert np.all(result.spearman[:, -1] < SIMILAR_SPEARMAN), result.spearman
        assert result.verdict.passed and result.verdict.text.endswith(": passes")
        finals = result.spearman[:, -1]
        assert f"Spearman {finals.mean():.2f} ± {finals.std(ddof=1):.2f} over 3 draws" in \
            result.verdict.text
        assert "Rule:" in result.verdict.rule
    _assert_bitwise_equal(before, _weights(classifier))


@pytest.mark.slow
def test_r_draws_give_r_curves_and_the_band_contains_them(tiny, randomizer):
    """Several draws, each seeded from the image, model and draw number: R curves, all
    inside the plotted band; the same seed text gives the same draws."""
    from saliency_core.trust.figures import make_randomization_figure

    classifier, images, labels = tiny
    explain = make_method_explainer("vanilla")
    target = Target(int(labels[0]))
    result = run_randomization(randomizer, explain, images[0], target, draws=4,
                               seed_text="image-a|tiny")
    steps = len(randomizer.blocks)
    for curves in (result.spearman, result.spearman_signed, result.ssim):
        assert curves.shape == (4, steps)
    assert len(set(result.seeds)) == 4 and result.draws == 4
    assert not np.allclose(result.spearman[0], result.spearman[1])  # really other weights
    figure = make_randomization_figure(result)
    band = next(t for t in figure.data if t.fill == "toself")
    upper, lower = np.array(band.y[:steps]), np.array(band.y[steps:][::-1])
    for curve in result.spearman:
        assert np.all(lower <= curve + 1e-12) and np.all(curve <= upper + 1e-12)
    assert np.allclose(upper, result.spearman.max(axis=0))
    assert np.allclose(lower, result.spearman.min(axis=0))
    mean = next(t for t in figure.data if t.name and t.name == "Spearman |map|: mean")
    assert np.allclose(mean.y, result.spearman.mean(axis=0))
    again = run_randomization(randomizer, explain, images[0], target, draws=2,
                              seed_text="image-a|tiny")
    assert again.seeds == result.seeds[:2]
    np.testing.assert_array_equal(again.spearman, result.spearman[:2])
    other = run_randomization(randomizer, explain, images[0], target, draws=2,
                              seed_text="image-b|tiny")
    assert set(other.seeds).isdisjoint(result.seeds)
    with pytest.raises(ValueError, match="draws"):
        run_randomization(randomizer, explain, images[0], target, draws=11)


@pytest.mark.slow
def test_guided_backprop_stays_above_the_line_where_the_vanilla_gradient_drops(tiny,
                                                                                randomizer):
    """Adebayo et al. 2018: Guided Backpropagation barely changes when the top layers are
    randomised. On this six-layer CNN the vanilla map's mean Spearman falls below 0.5
    at a step where Guided Backpropagation's stays above it."""
    classifier, images, labels = tiny
    vanilla, guided = make_method_explainer("vanilla"), make_method_explainer("guided_backprop")
    for image, label in zip(images[:3], labels[:3], strict=True):
        target = Target(int(label))
        v = run_randomization(randomizer, vanilla, image, target).spearman.mean(axis=0)
        g = run_randomization(randomizer, guided, image, target).spearman.mean(axis=0)
        crossing = (v < SIMILAR_SPEARMAN) & (g >= SIMILAR_SPEARMAN)
        assert crossing.any(), (v.round(2), g.round(2))


@pytest.mark.slow
def test_a_sobel_explanation_survives_randomisation_and_is_reported_failing(tiny, randomizer):
    classifier, images, labels = tiny
    for mode in ("cascading", "independent"):
        result = run_randomization(randomizer, explain_with_sobel, images[0],
                                   Target(int(labels[0])), mode, draws=2)
        assert np.all(result.spearman > 0.99), result.spearman
        assert np.all(result.ssim > 0.99), result.ssim
        assert result.sobel_spearman > 0.99  # the baseline is the edge map itself
        assert not result.verdict.passed and result.verdict.text.endswith(": fails")
    assert BARELY_DEPENDS in result.verdict.text or "0 of" in result.verdict.text


@pytest.mark.slow
def test_the_sweep_does_not_retrace_and_restores_the_copy(tiny, randomizer):
    classifier, images, labels = tiny
    explain = make_method_explainer("vanilla")
    original_traces = classifier.trace_count
    run_randomization(randomizer, explain, images[1], Target(int(labels[1])), draws=2)  # warm
    traces = randomizer.classifier.trace_count
    for mode in ("cascading", "independent"):
        result = run_randomization(randomizer, explain, images[2], Target(int(labels[2])), mode,
                                   draws=2)
        assert result.retraces == 0
    assert randomizer.classifier.trace_count == traces
    assert classifier.trace_count == original_traces  # the cached model's graph is untouched
    _assert_bitwise_equal(_weights(classifier), [np.asarray(w) for w in
                                                 randomizer.copy_model.get_weights()])


@pytest.mark.slow
def test_randomising_really_changes_the_copy_the_classifier_reads(tiny, randomizer):
    classifier, images, _ = tiny
    block = randomizer.blocks[-1]
    with randomizer.session() as copy:
        trained = copy.classifier.logits(images[:2])
        copy.randomize(block)
        randomised = copy.classifier.logits(images[:2])
    assert not np.allclose(trained, randomised)
    assert np.allclose(randomizer.classifier.logits(images[:2]), trained)
    assert np.allclose(classifier.logits(images[:2]), trained, atol=1e-5)


@pytest.mark.slow
def test_independent_randomisation_judges_every_block(tiny, randomizer):
    classifier, images, labels = tiny
    result = run_randomization(randomizer, make_method_explainer("vanilla"), images[3],
                               Target(int(labels[3])), "independent", draws=2)
    assert result.spearman.shape == (2, len(randomizer.blocks))
    assert result.verdict.check == "independent randomisation"
    changed = int(np.sum(np.all(result.spearman < SIMILAR_SPEARMAN, axis=0)))
    assert result.verdict.value == changed
    assert f"for {changed} of {len(randomizer.blocks)} blocks" in result.verdict.text


def _evidence_map(index: int) -> np.ndarray:
    """``(32, 32, 1)``: 1 on held-out image ``index``'s patch (the task's only evidence),
    below 0.5 in a random order elsewhere: the patch first, then like a random order."""
    from test_synthetic_patch import PATCH

    _, _, boxes = make_dataset(8, seed=99)
    (y, x) = boxes[index]
    values = np.random.default_rng(index).uniform(0, 0.5, (32, 32, 1)).astype(np.float32)
    values[y:y + PATCH, x:x + PATCH] = 1.0
    return values


@pytest.mark.slow
def test_a_map_on_the_evidence_passes_against_random_orders_and_its_reverse_fails(tiny):
    classifier, images, labels = tiny
    before = _weights(classifier)
    for index in range(4):
        target = Target(int(labels[index]))
        evidence = _evidence_map(index)
        # The logit, because this tiny model's probability is 1.0 even on the blurred copy
        # (colour, its only evidence, survives blurring), so every probability curve is flat.
        result = run_faithfulness(classifier, images[index], evidence, target, measure="logit")
        assert result.random_deletion.curves.shape == (RANDOM_ORDERS, 33)
        assert result.deletion.auc < result.random_deletion.aucs.min(), result.verdicts[0].text
        assert "than 20 of 20 random orders" in result.verdicts[0].text
        assert all(v.passed for v in result.verdicts), [v.text for v in result.verdicts]
        assert result.deletion.probabilities.shape == (33,)
        backwards = run_faithfulness(classifier, images[index], 1.0 - evidence, target,
                                     measure="logit")
        assert backwards.verdicts[0].outcome == "fails", backwards.verdicts[0].text
    _assert_bitwise_equal(before, _weights(classifier))


@pytest.mark.slow
def test_the_deletion_verdict_counts_the_random_orders_it_beats(tiny):
    """The verdict is a count: how many of the random orders have a larger deletion AUC
    (smaller insertion AUC) than the map's order; a map ranked in random order itself
    beats about half of them and cannot pass."""
    classifier, images, labels = tiny
    target = Target(int(labels[1]))
    noise = np.random.default_rng(5).uniform(size=(32, 32, 1)).astype(np.float32)
    result = run_faithfulness(classifier, images[1], noise, target, measure="logit",
                              random_orders=24, seed_text="count")
    for verdict, curve, random, smaller in (
            (result.verdicts[0], result.deletion, result.random_deletion, True),
            (result.verdicts[1], result.insertion, result.random_insertion, False)):
        beaten = int(np.sum(curve.auc < random.aucs) if smaller
                     else np.sum(curve.auc > random.aucs))
        assert verdict.value == beaten == random.beaten_by(curve.auc)
        assert f"than {beaten} of 24 random orders" in verdict.text
        assert verdict.outcome == ("passes" if beaten >= 23 else "fails" if 2 * beaten <= 24
                                   else "undecided")
        assert not verdict.passed  # a random ranking is no better than random orders
        assert "Rule: passes when the map's order beats at least 23 of the 24" in verdict.rule


@pytest.mark.slow
def test_a_reversed_map_fails_deletion(tiny):
    classifier, images, labels = tiny
    target = Target(int(labels[0]))
    values = make_method_explainer("vanilla")(classifier, images[0], target)
    reversed_values = values.max() - np.abs(values)  # least salient first
    result = run_faithfulness(classifier, images[0], reversed_values, target, measure="logit")
    assert not result.verdicts[0].passed and result.verdicts[0].text.endswith(": fails")


@pytest.mark.slow
def test_cheap_checks_and_method_comparison_leave_the_model_untouched(tiny):
    classifier, images, labels = tiny
    before = _weights(classifier)
    explain = make_method_explainer("vanilla")
    target = Target(int(labels[0]))
    values = explain(classifier, images[0], target)
    classes = check_random_classes(classifier, explain, images[0], target, values)
    assert classes.classes == (1 - int(labels[0]),)  # two classes: the only other one
    edges = check_edges(values, images[0])
    assert -1 <= edges.similarity.spearman <= 1
    seen = []
    scores, random_deletion, random_insertion = compare_methods(
        classifier, images[0], target, {k: make_method_explainer(k) for k in
                                        ("vanilla", "gradient_x_input", "gradcam")},
        measure="logit", part_progress=lambda part, f: seen.append((part, f)))
    assert [s.method for s in scores] == ["vanilla", "gradient_x_input", "gradcam"]
    assert random_deletion.count == random_insertion.count == RANDOM_ORDERS
    for score in scores:
        assert score.deletion_beats == random_deletion.beaten_by(score.deletion_auc)
        assert score.insertion_beats == random_insertion.beaten_by(score.insertion_auc)
    # the same random orders as the deletion check draws for this image
    alone = run_faithfulness(classifier, images[0], values, target, measure="logit")
    np.testing.assert_allclose(alone.random_deletion.aucs, random_deletion.aucs)
    assert alone.deletion.auc == pytest.approx(scores[0].deletion_auc)
    # so the page hands them over instead of scoring them again
    calls = []
    scores_again, reused, _ = compare_methods(
        classifier, images[0], target, {"vanilla": explain}, measure="logit",
        random_curves=(alone.random_deletion, alone.random_insertion),
        part_progress=lambda part, f: calls.append(part))
    assert reused is alone.random_deletion and calls[0] == RANDOM_PART
    assert scores_again[0].deletion_beats == scores[0].deletion_beats
    # one progress bar per part: the random orders first, then each method, each to 100%
    parts = [part for part, _ in seen]
    assert list(dict.fromkeys(parts)) == [RANDOM_PART, "vanilla", "gradient_x_input",
                                          "gradcam"]
    for part in set(parts):
        assert max(f for p, f in seen if p == part) == pytest.approx(1.0)
    _assert_bitwise_equal(before, _weights(classifier))


def test_random_classes_are_drawn_per_image():
    """Each image gets its own random classes (seeded by its digest), the same ones every
    time; two images get different ones. A model with 50 classes, no training needed."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(50)(keras.layers.Flatten()(x))
    classifier = KerasClassifier(keras.Model(inputs, outputs), lambda v: v / 255.0,
                                 tuple(f"c{i}" for i in range(50)))
    rng = np.random.default_rng(0)
    first, second = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    explain = make_method_explainer("vanilla")
    a = check_random_classes(classifier, explain, first, Target(3))
    b = check_random_classes(classifier, explain, second, Target(3))
    assert len(a.classes) == len(b.classes) == 5 and 3 not in a.classes + b.classes
    assert a.classes != b.classes
    assert check_random_classes(classifier, explain, first, Target(3)).classes == a.classes
    by_digest = [check_random_classes(classifier, explain, first, Target(3),
                                      seed_text=digest).classes for digest in ("ab12", "cd34")]
    assert by_digest[0] != by_digest[1]
    # the spread: one Spearman (and one signed Spearman) per class, in the verdict's text
    assert a.spearman.shape == a.spearman_signed.shape == (5,)
    assert "over 5 classes, from" in a.verdict.text


def test_the_auc_chart_writes_no_label_over_its_bars():
    """Method names sit on the axis of horizontal bars; the random orders are a band and a
    line named in the legend; the only text in the figure is the two panel titles, above
    their panels."""
    from saliency_core.trust.faithfulness import MethodScore, RandomCurves
    from saliency_core.trust.figures import make_method_auc_figure

    fractions = np.linspace(0, 1, 33)
    rng = np.random.default_rng(0)
    randoms = [RandomCurves(kind, fractions, rng.uniform(size=(20, 33)),
                            rng.uniform(0.3, 0.4, 20)) for kind in ("deletion", "insertion")]
    names = ["Vanilla gradient", "A method with a rather long name", "Guided Grad-CAM"]
    scores = [MethodScore(k, 0.2 + i / 10, 0.5, 20, 20, 1.0) for i, k in enumerate("abc")]
    figure = make_method_auc_figure(scores, names, *randoms)
    bars = [t for t in figure.data if t.type == "bar"]
    assert len(bars) == 2 and all(b.orientation == "h" for b in bars)
    assert all(list(b.y) == names for b in bars) and not any(b.text for b in bars)
    titles = [a for a in figure.layout.annotations]
    assert [a.text for a in titles] == ["Deletion AUC (lower is better)",
                                        "Insertion AUC (higher is better)"]
    for title, axis in zip(titles, ("yaxis", "yaxis2"), strict=True):
        assert title.y >= figure.layout[axis].domain[1]  # above its panel, not on a bar
    shapes = figure.layout.shapes
    assert len(shapes) == 4 and all(s.layer == "below" for s in shapes)
    assert {s.name for s in shapes if s.showlegend} == {
        "20 random orders, lowest to highest AUC",
        f"random orders' mean AUC ({randoms[0].auc:.3f} deletion, {randoms[1].auc:.3f} "
        "insertion)"}


class _CountingScorer:
    """The classifier seen by the scoring code, counting the images it scores."""

    def __init__(self, classifier):
        self._classifier, self.images = classifier, 0

    def __getattr__(self, name):
        return getattr(self._classifier, name)

    def probabilities(self, images):
        self.images += len(images)
        return self._classifier.probabilities(images)

    def logits(self, images):
        self.images += len(images)
        return self._classifier.logits(images)


def test_each_check_declares_at_least_the_passes_it_makes(tiny, randomizer):
    """The Trust page checks a check's cost before it runs from these counts, so they
    may overcount, never undercount."""
    from saliency_core.methods.base import Work
    from saliency_core.trust.work import (
        count_comparison_work,
        count_faithfulness_work,
        count_random_class_work,
        count_randomization_work,
    )

    classifier, images, labels = tiny
    target = Target(int(labels[0]))
    maps = []
    explain_vanilla = make_method_explainer("vanilla")

    def explain(model, image, aim):
        maps.append(1)
        return explain_vanilla(model, image, aim)

    values = explain_vanilla(classifier, images[0], target)
    run_randomization(randomizer, explain, images[0], target, "cascading", 2)
    assert len(maps) == count_randomization_work(Work(gradient=1), len(randomizer.blocks),
                                                 2).gradient
    maps.clear()
    check_random_classes(classifier, explain, images[0], target, values, count=1)
    assert len(maps) == count_random_class_work(Work(gradient=1), 1).gradient
    for steps, orders in ((32, RANDOM_ORDERS), (7, 3)):  # 7 steps do not divide 32 x 32
        scorer = _CountingScorer(classifier)
        run_faithfulness(scorer, images[0], values, target, steps=steps, random_orders=orders)
        assert 0 < scorer.images <= count_faithfulness_work(orders, steps).forward
    scorer = _CountingScorer(classifier)
    compare_methods(scorer, images[0], target, {"vanilla": explain_vanilla}, steps=7,
                    random_orders=3)
    declared = count_comparison_work({"vanilla": Work()}, random_known=False,
                                     random_orders=3, steps=7)
    assert 0 < scorer.images <= sum(w.forward for w in declared.values())
