"""Issue 19, one test per row: what a visitor sends is bounded by its measured cost.

The uploads go through the app's own entry points in a separate measuring process
(tests/safety_builders.py's ``Measurer``: time and the rise of its peak resident
memory per call, and the isolated checking process's peak). The decoding worker
and the work budget are also exercised directly, to see the processes they kill.
"""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
import safety_builders as build

from saliency_core.imaging import load_image
from saliency_core.safety.limits import GIB, Limits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measurer(tmp_path_factory):
    meter = build.Measurer(tmp_path_factory.mktemp("measure"))
    yield meter
    meter.close()


def report(row: str, result: dict) -> None:
    print(f"\n{row}: {json.dumps(result)}")
    assert "Traceback" not in result["message"]


@pytest.mark.parametrize("multi_head", [False, True], ids=["Attention", "MultiHeadAttention"])
def test_attention_over_8192_tokens_is_refused_by_its_measured_cost(tmp_path, measurer,
                                                                   multi_head):
    """Its layer outputs are 8192 x 3 floats, but one gradient pass holds 8192 x 8192
    score matrices: refused from the pass measured in the checking process, which the
    server never runs."""
    data = build.attention_model_bytes(tmp_path, 8192, multi_head)
    assert len(data) < 100_000
    result = measurer.measure("model", data)
    report(f"attention over 8192 tokens ({'multi-head' if multi_head else 'single'})", result)
    assert result["refused"], result
    assert "One image needs" in result["message"] and "limit is 512 MB" in result["message"]
    assert result["peak_increase_mb"] < 300, result  # the server process never ran it
    assert 500 < result["checker_peak_mb"] < 4096 + 2048, result  # the child measured it


def test_an_attention_model_that_fits_gets_its_batch_from_the_measurement(tmp_path):
    """Over 2048 tokens one image needs tens of MB: accepted, and its batch size is
    chosen so a measured call of that size fits the per-call budget."""
    from saliency_core.models.custom import load_custom_model

    custom = load_custom_model(build.attention_model_bytes(tmp_path, 2048, multi_head=True))
    cost, limits = custom.cost, Limits()
    assert cost.source == "measured in the checking process"
    assert cost.image_bytes > 20 * 2**20  # far above its layer outputs (2048 x 3 floats)
    assert 1 <= custom.batch_size <= 64
    assert cost.call_bytes + custom.batch_size * cost.image_bytes <= \
        limits.activation_budget_bytes
    assert cost.gradient_image_seconds > 0 and cost.forward_image_seconds >= 0


def test_a_progressive_jpeg_with_100000_scans_is_refused_at_once(measurer):
    data = build.scan_bomb_jpeg(100_000, side=8)
    assert data.count(b"\xff\xda") == 100_000 and len(data) < 5_000_000
    result = measurer.measure("image", data)
    report("progressive JPEG with 100,000 scans", result)
    assert result["refused"] and "more than 100 scans" in result["message"], result
    assert result["peak_increase_mb"] < 100, result  # refused before decoding: no memory


def test_a_jpeg_with_12_million_empty_app_markers_is_refused_at_once(measurer):
    data = build.app_marker_jpeg(12_000_000)
    result = measurer.measure("image", data)
    report("JPEG with 12 million empty APP markers", result)
    assert result["refused"] and "more than 10,000 markers" in result["message"], result
    assert result["peak_increase_mb"] < 100, result  # refused before decoding: no memory


def test_a_1_by_40_million_png_is_refused_before_decoding(measurer):
    data = build.thin_png(40_000_000)
    assert len(data) < 200_000
    result = measurer.measure("image", data)
    report("PNG of 1 x 40,000,000 pixels", result)
    assert result["refused"] and "sides longer than 32,768" in result["message"], result
    assert result["peak_increase_mb"] < 100, result  # refused before decoding: no memory


def _running_decoders() -> set[int]:
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"saliency_core.safety.decode_worker" in handle.read():
                    found.add(int(pid))
        except OSError:
            pass
    return found


def test_a_decode_past_its_time_limit_is_killed_and_others_go_on():
    """With the scan cap raised, a slow progressive JPEG reaches the decoder: its worker
    is killed at the time limit, and a normal photo decodes meanwhile on the pool's
    other worker."""
    from saliency_core.safety.decoding import DecodeError, DecodePool

    pool = DecodePool(size=2)
    limits = Limits(max_jpeg_scans=10**6, max_jpeg_markers=10**7, decode_timeout_seconds=0.4)
    slow = build.slow_progressive_jpeg(1500, 10)
    normal = build.jpeg_bytes(640, 480)
    before = _running_decoders()
    outcome: dict = {}

    def decode_slow():
        start = time.monotonic()
        try:
            pool.decode(slow, 50_000_000, 1024, limits)
        except DecodeError as exc:
            outcome["message"], outcome["seconds"] = str(exc), time.monotonic() - start

    thread = threading.Thread(target=decode_slow)
    thread.start()
    time.sleep(0.1)
    answer, pixels = pool.decode(normal, 50_000_000, 1024, Limits())
    assert pixels.shape == (480, 640, 3) and answer["format"] == "JPEG"
    thread.join(30)
    assert "took longer than 0.4 s" in outcome["message"]
    assert outcome["seconds"] < 3
    assert pool.killed == 1
    pool.close()
    time.sleep(0.2)
    assert _running_decoders() <= before  # the killed worker is gone, none is left over


def test_a_decode_stops_when_its_job_is_cancelled():
    """A visitor who leaves cancels the job; the decode stops within a tenth of a second
    and its worker process is killed."""
    from saliency_core.safety.decoding import DecodePool
    from saliency_core.safety.jobs import AdmissionQueue, Estimate, JobCancelledError

    pool = DecodePool(size=1)
    limits = Limits(max_jpeg_scans=10**6, max_jpeg_markers=10**7, decode_timeout_seconds=60)
    slow = build.slow_progressive_jpeg(2000, 8)
    queue = AdmissionQueue(grace_seconds=0.1)
    job = queue.submit("photo", "visitor", "reading the photo", Estimate(0.2),
                       lambda progress: pool.decode(slow, 50_000_000, 1024, limits))
    time.sleep(0.3)
    queue.leave(job)  # the tab was closed
    assert job.wait(5)
    with pytest.raises(JobCancelledError):
        job.outcome()
    assert pool.killed == 1


def test_load_image_uses_the_worker_and_reports_true_sizes():
    """A 6000 x 4000 JPEG without EXIF: decoded at reduced scale in the worker, no
    rotation note, and its true size recorded beside the decoded one."""
    image = load_image(build.jpeg_bytes(6000, 4000))
    assert image.original_size == (6000, 4000)
    assert image.decoded_size == (3000, 2000)
    assert not any("rotated" in note for note in image.notes)
    assert max(image.pixels.shape[:2]) == 1024


def test_the_exif_note_appears_only_when_the_tag_turned_the_image():
    import io

    from PIL import Image

    def with_orientation(value: int) -> bytes:
        pixels = np.zeros((20, 40, 3), np.uint8)
        exif = Image.Exif()
        exif[0x0112] = value
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", exif=exif.tobytes())
        return buffer.getvalue()

    upright = load_image(with_orientation(1))
    assert upright.notes == () and upright.original_size == (40, 20)
    turned = load_image(with_orientation(6))
    assert "rotated upright from its EXIF orientation" in turned.notes
    assert turned.original_size == (20, 40) and turned.pixels.shape[:2] == (40, 20)


def test_occlusion_at_stride_2_on_a_1024_pixel_model_is_refused_with_what_to_change(tmp_path):
    """A valid own model with valid settings: 247,010 forward passes, hours of CPU.
    The budget refuses it before it runs, from the model's measured cost, and names
    the smallest stride that fits."""
    import keras

    from saliency_core.methods import METHODS, get_method
    from saliency_core.models.custom import load_custom_model, make_classifier
    from saliency_core.models.preprocessing import get_preprocessor
    from saliency_core.safety.budget import OverBudgetError, check_method

    inputs = keras.Input((1024, 1024, 3))
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model.save(tmp_path / "big.keras")
    custom = load_custom_model((tmp_path / "big.keras").read_bytes())
    classifier = make_classifier(custom, get_preprocessor("raw"))
    params = {"patch": 32, "stride": 2}
    assert get_method("occlusion", **params).work((1024, 1024)).forward == 247_010
    limits = Limits(job_memory_bytes=2 * GIB)
    with pytest.raises(OverBudgetError) as refused:
        check_method(METHODS["occlusion"], params, (1024, 1024), classifier.cost,
                     classifier.batch_size, limits)
    message = str(refused.value)
    assert "247,010 forward passes" in message and "the limit is 60 s" in message
    assert "Stride (pixels) at least" in message
    stride = int(message.split("Stride (pixels) at least ")[1].split(";")[0].rstrip("."))
    fits = get_method("occlusion", patch=32, stride=stride).work((1024, 1024))
    assert classifier.cost.seconds(fits, classifier.batch_size) <= limits.max_job_seconds


def test_the_jpeg_walk_skips_stuffing_restarts_and_fill_bytes_as_one_run():
    """Entropy-coded bytes are skipped to the next real marker in one regex search (a
    Python step per FF00 pair took 4.5 s on a 50 MB upload, in the server's thread):
    the walk still counts what a byte-by-byte walk counts."""
    import io

    from PIL import Image

    from saliency_core.safety.images import walk_jpeg

    limits = Limits()
    for filler in (b"\xff\x00", b"\xff\xd3", b"\xff"):
        assert walk_jpeg(b"\xff\xd8" + filler * 100_000 + b"\xff\xd9", limits) == (1, 0, 0)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buffer, "JPEG", progressive=True)
    clean = buffer.getvalue()
    markers, scans, metadata = walk_jpeg(clean, limits)
    assert scans > 1 and markers > scans
    # fill bytes before every marker after the header change nothing
    padded = clean[:2] + clean[2:].replace(b"\xff\xda", b"\xff\xff\xff\xda")
    assert walk_jpeg(padded, limits) == (markers, scans, metadata)


def test_a_gif_cut_into_one_byte_blocks_is_refused():
    from saliency_core.safety.images import UnsafeUploadError, count_gif_frames

    header = b"GIF89a" + (1).to_bytes(2, "little") * 2 + b"\x00\x00\x00"
    comment = b"\x21\xfe" + b"\x01x" * 200_000 + b"\x00"  # 200,000 one-byte sub-blocks
    with pytest.raises(UnsafeUploadError, match="far more data blocks"):
        count_gif_frames(header + comment + b"\x3b", 10)
    normal = b"\x21\xfe" + (b"\xff" + b"x" * 255) * 100 + b"\x00"
    assert count_gif_frames(header + normal + b"\x3b", 10) == 1  # at least one, as Pillow
