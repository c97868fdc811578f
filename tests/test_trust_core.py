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
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    # Average pooling: with max pooling every map, even a random model's, is zero outside
    # the few receptive fields of the maxima, and those shared zeros alone keep the rank
    # correlation near 0.3 after full randomisation.
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
    finals = []
    for image, label in zip(images[:4], labels[:4], strict=True):
        result = run_randomization(randomizer, explain, image, Target(int(label)), "cascading")
        assert result.maps.shape == (len(randomizer.blocks) + 1, 32, 32)
        finals.append(result.spearman[-1])
        assert result.spearman[-1] < 0.3, result.spearman
        assert result.verdict.passed and result.verdict.text.endswith(": passes")
        assert f"Spearman {result.spearman[-1]:.2f}" in result.verdict.text
    _assert_bitwise_equal(before, _weights(classifier))


@pytest.mark.slow
def test_a_sobel_explanation_survives_randomisation_and_is_reported_failing(tiny, randomizer):
    classifier, images, labels = tiny
    for mode in ("cascading", "independent"):
        result = run_randomization(randomizer, explain_with_sobel, images[0],
                                   Target(int(labels[0])), mode)
        assert np.all(result.spearman > 0.99), result.spearman
        assert np.all(result.ssim > 0.99), result.ssim
        assert not result.verdict.passed and result.verdict.text.endswith(": fails")


@pytest.mark.slow
def test_the_sweep_does_not_retrace_and_restores_the_copy(tiny, randomizer):
    classifier, images, labels = tiny
    explain = make_method_explainer("vanilla")
    original_traces = classifier.trace_count
    run_randomization(randomizer, explain, images[1], Target(int(labels[1])))  # warm
    traces = randomizer.classifier.trace_count
    for mode in ("cascading", "independent"):
        result = run_randomization(randomizer, explain, images[2], Target(int(labels[2])), mode)
        assert result.retraces == 0
    assert randomizer.classifier.trace_count == traces == 1
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
def test_independent_randomisation_restores_each_block(tiny, randomizer):
    classifier, images, labels = tiny
    result = run_randomization(randomizer, make_method_explainer("vanilla"), images[3],
                               Target(int(labels[3])), "independent")
    assert len(result.spearman) == len(randomizer.blocks)
    assert result.verdict.check == "independent randomisation"
    assert result.verdict.value == pytest.approx(result.spearman.min())


@pytest.mark.slow
def test_vanilla_deletion_beats_random_and_insertion_too(tiny):
    classifier, images, labels = tiny
    explain = make_method_explainer("vanilla")
    before = _weights(classifier)
    for image, label in zip(images[:4], labels[:4], strict=True):
        target = Target(int(label))
        # The logit, because this tiny model's probability is 1.0 even on the blurred copy
        # (colour, its only evidence, survives blurring), so every probability curve is flat.
        result = run_faithfulness(classifier, image, explain(classifier, image, target), target,
                                  measure="logit")
        assert result.deletion.auc < result.random_deletion.auc, result.verdicts[0].text
        assert result.insertion.auc > result.random_insertion.auc, result.verdicts[1].text
        assert all(v.passed for v in result.verdicts)
        assert result.deletion.probabilities.shape == (33,)
    _assert_bitwise_equal(before, _weights(classifier))


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
    scores, random_deletion, random_insertion = compare_methods(
        classifier, images[0], target, {k: make_method_explainer(k) for k in
                                        ("vanilla", "gradient_x_input", "gradcam")},
        measure="logit")
    assert [s.method for s in scores] == ["vanilla", "gradient_x_input", "gradcam"]
    assert scores[0].deletion_auc < random_deletion.auc
    _assert_bitwise_equal(before, _weights(classifier))
