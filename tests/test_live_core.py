"""The live frame processor, the newest-frame-only worker and its figures, without a browser.

The classifier is a numpy stand-in whose gradient is known: the score of class ``c``
is the sum of ``weights[c] * image``, so its gradient is ``weights[c]`` everywhere,
and the map is bright exactly where ``weights[c]`` is large. No TensorFlow.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from saliency_core.imaging import crop_box, fit_to_model
from saliency_core.live import (
    LatestFrameWorker,
    LatestSlot,
    LiveSettings,
    LiveStats,
    SettingsBox,
    process_frame,
)
from saliency_core.live.frames import OUTSIDE_DIM, composite_overlay, draw_label

SIZE = 16


class LinearClassifier:
    """Three classes; class c's score is ``sum(weights[c] * image)``."""

    input_size = (SIZE, SIZE)
    batch_size = 8
    class_names = ("left, the left half", "right", "centre")

    def __init__(self, height: int = SIZE, width: int = SIZE):
        self.input_size = (height, width)
        w = np.zeros((3, height, width, 3), np.float32)
        w[0, :, : width // 2] = 1.0
        w[1, :, width // 2:] = 1.0
        w[2, height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1.0
        self.weights = w
        self.calls = 0
        self.forwards = 0

    def logits(self, images):
        return np.einsum("bhwc,khwc->bk", np.asarray(images, np.float32), self.weights) / 1e4

    def probabilities(self, images):
        self.forwards += 1
        z = self.logits(images)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def scores(self, images, target):
        return self.logits(images)[:, target.class_index]

    def gradients(self, images, target):
        self.calls += 1
        images = np.asarray(images, np.float32)
        grads = np.broadcast_to(self.weights[target.class_index], images.shape).copy()
        return grads, self.scores(images, target)

    def row_gradients(self, images, class_indices, score="logit"):
        """One call: each row's class (its top-1 for ``None``), gradient and logits."""
        from saliency_core.tf_adapter import RowGradients

        self.calls += 1
        images = np.asarray(images, np.float32)
        logits = self.logits(images)
        chosen = np.array([int(np.argmax(z)) if c is None else int(c)
                           for c, z in zip(class_indices, logits, strict=True)])
        grads = self.weights[chosen].copy()
        return RowGradients(grads, logits[np.arange(len(images)), chosen], logits, chosen,
                            [len(images)] * len(images))

    def default_cam_layer(self):
        return "image"

    def layer_gradients(self, images, target, layer=None):
        """The image itself as the "layer": its gradient is the class's weights."""
        grads, scores = self.gradients(images, target)  # counts the call
        return np.asarray(images, np.float32), grads, scores


@pytest.fixture
def classifier():
    return LinearClassifier()


def frame(height: int, width: int, bright: str = "left") -> np.ndarray:
    """A grey frame whose left or right half is brighter (so that class wins top-1)."""
    pixels = np.full((height, width, 3), 60, np.uint8)
    if bright == "left":
        pixels[:, : width // 2] = 200
    else:
        pixels[:, width // 2:] = 200
    return pixels


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (97, 31), (16, 16), (720, 1280)])
@pytest.mark.parametrize("fit", ["crop", "squash"])
def test_a_frame_of_any_size_and_orientation_comes_back_the_same_size(classifier, shape, fit):
    pixels = frame(*shape)
    result = process_frame(pixels, LiveSettings(classifier, fit=fit, opacity=1.0))
    assert result.frame.shape == pixels.shape and result.frame.dtype == np.uint8
    assert result.source is not None and np.array_equal(result.source, pixels)
    if min(shape) > 8:
        assert not np.array_equal(result.frame, pixels)  # the overlay (and label) is on it


def test_the_overlay_follows_the_class_map_and_the_label_names_the_top_class(classifier):
    pixels = frame(240, 320, bright="right")
    result = process_frame(pixels, LiveSettings(classifier, fit="squash", opacity=1.0))
    assert (result.class_index, result.class_name, result.pinned) == (1, "right", False)
    out = result.frame.astype(int)
    below_label = slice(60, 240)
    changed = np.abs(out - pixels.astype(int)).sum(axis=2)[below_label]
    # class 1's gradient is 1 on the right half, 0 on the left: only the right is coloured
    assert changed[:, 200:].mean() > 50 and changed[:, :140].mean() < 1
    model_input, _ = fit_to_model(pixels, classifier.input_size, "squash")
    expected = classifier.probabilities(model_input[None])[0, 1]
    assert result.probability == pytest.approx(expected) and expected > 0.5


def test_a_vanilla_frame_takes_class_probability_and_map_from_one_model_call(classifier):
    pixels = frame(120, 160, bright="right")
    result = process_frame(pixels, LiveSettings(classifier, fit="squash"))
    assert (classifier.calls, classifier.forwards) == (1, 0)  # no forward pass before it
    model_input, _ = fit_to_model(pixels, classifier.input_size, "squash")
    expected = classifier.probabilities(model_input[None])[0]
    assert result.class_index == int(np.argmax(expected)) == 1
    assert result.probability == pytest.approx(expected[1])
    pinned = process_frame(pixels, LiveSettings(classifier, pinned_class=2, fit="squash"))
    assert (classifier.calls, pinned.class_index) == (2, 2)
    assert pinned.probability == pytest.approx(expected[2])


def test_a_pinned_class_is_explained_whatever_the_top_one(classifier):
    pixels = frame(200, 200, bright="right")
    result = process_frame(pixels, LiveSettings(classifier, pinned_class=0, fit="squash",
                                                opacity=1.0))
    assert (result.class_index, result.class_name, result.pinned) == (0, "left", True)
    changed = np.abs(result.frame.astype(int) - pixels.astype(int)).sum(axis=2)[60:]
    assert changed[:, :80].mean() > 50 and changed[:, 120:].mean() < 1
    # a pinned class that this model does not have falls back to the top-1
    other = process_frame(pixels, LiveSettings(classifier, pinned_class=999))
    assert (other.class_index, other.pinned) == (1, False)


def test_centre_crop_dims_what_the_model_does_not_see(classifier):
    pixels = frame(100, 300)
    result = process_frame(pixels, LiveSettings(classifier, fit="crop", opacity=0.0))
    left, top, right, bottom = crop_box(300, 100, "crop", classifier.input_size)
    assert (left, right) == (100, 200)
    outside = result.frame[50:, 250:].astype(int)
    assert np.all(np.abs(outside - int(60 * OUTSIDE_DIM)) <= 1)
    assert np.array_equal(result.frame[50:, 120:180], pixels[50:, 120:180])  # opacity 0


@pytest.mark.parametrize("input_size, seen", [((8, 32), (0, 160, 640, 320)),
                                               ((32, 8), (260, 0, 380, 480))])
def test_a_non_square_model_sees_a_region_with_its_shape_and_the_rest_is_dimmed(input_size,
                                                                               seen):
    pixels = frame(480, 640)
    classifier = LinearClassifier(*input_size)
    result = process_frame(pixels, LiveSettings(classifier, fit="crop", opacity=0.0))
    assert crop_box(640, 480, "crop", input_size) == seen
    left, top, right, bottom = seen
    dimmed = np.ones((480, 640), bool)
    dimmed[top:bottom, left:right] = False
    dimmed[:60] = False  # the class label
    out = result.frame.astype(int)
    assert np.all(np.abs(out[dimmed] - (pixels[dimmed].astype(int) * OUTSIDE_DIM).astype(int))
                  <= 1)
    inside = np.zeros((480, 640), bool)
    inside[max(top, 60):bottom, left:right] = True
    assert np.array_equal(result.frame[inside], pixels[inside])  # opacity 0: untouched


def test_light_smoothgrad_runs_its_few_samples(classifier):
    settings = LiveSettings(classifier, method="smoothgrad", samples=3, noise=0.1)
    assert settings.params == {"samples": 3, "noise": 0.1}
    result = process_frame(frame(64, 48), settings)
    assert result.frame.shape == (64, 48, 3)
    assert classifier.calls == 1  # three samples, one batched gradient call


def test_layercam_is_offered_live_and_follows_the_class(classifier):
    pixels = frame(200, 200, bright="right")
    settings = LiveSettings(classifier, method="layercam", pinned_class=0, fit="squash",
                            opacity=1.0)
    assert settings.params == {}
    result = process_frame(pixels, settings)
    changed = np.abs(result.frame.astype(int) - pixels.astype(int)).sum(axis=2)[60:]
    # class 0's gradient is positive on the left half only: LayerCAM colours only the left
    assert changed[:, :80].mean() > 50 and changed[:, 120:].mean() < 1
    assert classifier.calls == 1  # one pass to the layer and back


def test_bad_settings_and_frames_are_refused(classifier):
    with pytest.raises(ValueError):
        LiveSettings(classifier, method="occlusion")
    with pytest.raises(ValueError):
        LiveSettings(classifier, colormap="rainbow")
    with pytest.raises(ValueError):
        LiveSettings(classifier, opacity=1.5)
    with pytest.raises(ValueError):
        process_frame(np.zeros((10, 10), np.uint8), LiveSettings(classifier))


@pytest.mark.parametrize("shape", [(1, 1), (480, 2), (15, 640)])
def test_a_frame_too_small_to_explain_is_refused_in_words_a_user_can_act_on(classifier, shape):
    """A 1×1 virtual camera used to be "explained" (one colour, meaningless); the worker
    keeps the refusal as its error, which the page shows instead of "Starting"."""
    from saliency_core.live import FrameTooSmallError

    with pytest.raises(FrameTooSmallError, match=f"sends {shape[1]}×{shape[0]} frames, too "
                                                 "small to explain .* at least 16×16 pixels"):
        process_frame(frame(*shape), LiveSettings(classifier))
    worker = LatestFrameWorker(lambda pixels: process_frame(pixels, LiveSettings(classifier)))
    worker.submit(frame(*shape), start_thread=False)
    assert worker.process_next()
    assert worker.latest() is None and "Choose another camera" in worker.error
    assert worker.received == 1


def test_composite_fades_weak_values_and_keeps_the_size():
    region = np.full((30, 50, 3), 100, np.uint8)
    saliency = np.zeros((8, 8), np.float32)
    saliency[:, 4:] = 1.0
    out = composite_overlay(region, saliency, "greys", 1.0)
    assert out.shape == region.shape
    assert np.array_equal(out[:, :20], region[:, :20])  # map 0: fully faded
    assert np.all(out[:, 35:] < 10)  # map 1 at opacity 1: Greys' black


def test_a_long_label_is_shortened_to_fit_a_narrow_frame():
    narrow = draw_label(np.zeros((200, 40, 3), np.uint8), "a very long class name indeed")
    assert narrow.shape == (200, 40, 3) and narrow.any()


# ------------------------------------------------------------------- dropping stale frames


def test_the_slot_keeps_only_the_newest_frame():
    slot = LatestSlot()
    assert slot.put("frame 1") is False
    assert slot.put("frame 2") is True  # frame 1 is dropped
    assert slot.put("frame 3") is True
    item, _arrived = slot.take(timeout=0)
    assert item == "frame 3"
    assert slot.take(timeout=0) is None and slot.empty()


def test_the_worker_explains_the_newest_frame_and_counts_the_dropped_ones():
    seen: list[int] = []
    worker = LatestFrameWorker(lambda n: seen.append(n) or n * 10)
    for n in range(1, 6):  # five frames arrive while the worker is busy elsewhere
        worker.submit(n, start_thread=False)
    assert worker.latest() is None
    assert worker.process_next() is True
    assert seen == [5] and worker.latest() == 50
    assert worker.stats.snapshot().dropped == 4
    assert worker.process_next() is False  # nothing is queued behind it
    worker.submit(6, start_thread=False)
    worker.process_next()
    assert seen == [5, 6] and worker.stats.snapshot().maps == 2


def test_an_error_is_kept_and_the_stream_goes_on():
    def process(n):
        if n == 1:
            raise ValueError("class index 5 is outside 0..2")
        return n

    worker = LatestFrameWorker(process)
    worker.submit(1, start_thread=False)
    worker.process_next()
    assert worker.error == "class index 5 is outside 0..2" and worker.latest() is None
    worker.submit(2, start_thread=False)
    worker.process_next()
    assert worker.error is None and worker.latest() == 2


def test_the_worker_thread_processes_frames_and_ends_when_idle():
    done = threading.Event()
    worker = LatestFrameWorker(lambda n: done.set() or n, idle_timeout=0.05)
    worker.submit(7)
    assert done.wait(10)
    for _ in range(200):  # the thread ends by itself once no frame comes
        if not worker.running:
            break
        threading.Event().wait(0.05)
    assert not worker.running and worker.latest() == 7
    worker.submit(8)  # and the next frame starts it again
    for _ in range(200):
        if worker.latest() == 8:
            break
        threading.Event().wait(0.05)
    assert worker.latest() == 8
    worker.stop()
    assert not worker.running


def test_settings_box_hands_over_the_newest_settings():
    box = SettingsBox()
    assert box.get() is None
    box.set("a")
    box.set("b")
    assert box.get() == "b"


def test_stats_rate_time_per_map_and_delay():
    now = [0.0]
    stats = LiveStats(window=2.0, clock=lambda: now[0])
    assert stats.snapshot().fps == 0.0
    for i in range(31):  # a map every 0.1 s, each took 0.08 s, its frame waited 0.02 s more
        stats.record(0.08, 0.1, now=i * 0.1)
    now[0] = 3.0
    snap = stats.snapshot()
    assert snap.fps == pytest.approx(10.0, abs=0.5)  # the last 2 s held 20 or 21 maps
    assert snap.seconds_per_map == pytest.approx(0.08) and snap.delay == pytest.approx(0.1)
    assert snap.maps == 31
    now[0] = 10.0  # nothing for a while: the rate falls to 0
    assert stats.snapshot().fps == 0.0 and stats.snapshot().maps == 31


def test_ice_servers_are_empty_by_default_and_checked():
    from saliency_core.live.network import read_ice_servers

    assert read_ice_servers("") == []
    assert read_ice_servers("[weights]\nvgg16 = 'x.h5'\n") == []
    text = ('[live]\nice_servers = [{ urls = "turn:turn.example.org:3478", username = "u", '
            'credential = "p" }, { urls = ["stun:a", "turns:b"] }, { urls = "http://x" }, 3]\n')
    assert read_ice_servers(text) == [
        {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"},
        {"urls": ["stun:a", "turns:b"]}]
    assert read_ice_servers("[live]\nice_servers = 'turn:x'\n") == []
    assert read_ice_servers("not toml [") == []


def test_the_figures_line_goes_at_the_bottom_of_frames_of_any_size():
    for shape in [(480, 640), (1, 1), (12, 300), (300, 12)]:
        out = draw_label(np.full((*shape, 3), 255, np.uint8), "7.5 maps/s · 120 ms", bottom=True)
        assert out.shape == (*shape, 3)
    out = draw_label(np.full((480, 640, 3), 255, np.uint8), "7.5 maps/s", bottom=True)
    assert (out[-30:, :5] == 0).all(axis=2).any() and out[:100].min() == 255  # bottom only
