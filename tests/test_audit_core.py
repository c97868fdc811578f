"""Audit core without a real model: border share, uploads and zips, progress bar, CLI parsing."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest

from saliency_core.audit.border import border_mask, border_share, uniform_border_share
from saliency_core.audit.outputs import StemNamer
from saliency_core.audit.progress import Progress
from saliency_core.audit.uploads import UploadLimits, collect_uploads


@pytest.mark.parametrize("size", [10, 50, 100, 1000])
def test_uniform_map_has_a_border_share_of_0_36(size):
    # The inner square keeps (1 - 2 * 0.1)^2 = 0.64 of a uniform map's mass.
    assert border_share(np.ones((size, size))) == pytest.approx(1 - 0.8 ** 2, abs=1e-12)


def test_border_share_on_model_sized_maps_follows_the_rounded_band():
    # 224 * 0.1 = 22.4 rounds to 22 pixels per side: 1 - (180 / 224)^2.
    assert border_share(np.full((224, 224), 0.3)) == pytest.approx(1 - (180 / 224) ** 2)
    assert border_share(np.ones((299, 299))) == pytest.approx(1 - (299 - 60) ** 2 / 299 ** 2)


def test_border_share_of_concentrated_maps():
    centre = np.zeros((100, 100))
    centre[40:60, 40:60] = 1.0
    assert border_share(centre) == 0.0
    frame = np.zeros((100, 100))
    frame[:10] = 1.0
    assert border_share(frame) == 1.0
    half = np.zeros((100, 100))
    half[0, 0], half[50, 50] = 1.0, 1.0
    assert border_share(half) == pytest.approx(0.5)
    assert border_share(-frame) == 1.0  # signed maps count their magnitude


def test_the_uniform_value_is_computed_for_the_input_size_and_a_constant_map_is_uniform():
    # whole-pixel bands: 22 px at 224 (not 22.4), 10 px at 96 (not 9.6), 10 px at 100
    assert uniform_border_share((224, 224)) == (224 ** 2 - 180 ** 2) / 224 ** 2  # 0.35427...
    assert uniform_border_share((96, 96)) == (96 ** 2 - 76 ** 2) / 96 ** 2  # 0.37326...
    assert uniform_border_share((100, 100)) == 0.36
    assert uniform_border_share((50, 80)) == (50 * 80 - 40 * 64) / (50 * 80)
    assert f"{uniform_border_share((224, 224)):.3f}" == "0.354"
    for constant in (np.zeros((224, 224)), np.full((224, 224), 0.7), np.full((96, 96), -2.0)):
        share = border_share(constant)  # normalising a constant map gives zeros: no NaN
        assert not np.isnan(share) and share == uniform_border_share(constant.shape)
    with_nan = np.ones((20, 20))
    with_nan[3, 3] = np.nan
    assert 0.0 < border_share(with_nan) < 1.0


def test_border_mask_counts_one_tenth_per_side():
    mask = border_mask((50, 80))
    assert mask[:5].all() and mask[-5:].all() and mask[:, :8].all() and mask[:, -8:].all()
    assert not mask[5:45, 8:72].any()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_uploads_keep_images_open_nested_zips_and_list_non_images():
    archive = _zip({"photos/": b"", "photos/a.png": b"A", "photos/deep/b.JPG": b"BB",
                    "photos/notes.txt": b"hello", "__MACOSX/photos/._a.png": b"x"})
    found = collect_uploads([("one.png", b"1"), ("readme.md", b"#"), ("set.zip", archive)])
    assert [name for name, _ in found.images] == ["one.png", "set.zip/photos/a.png",
                                                  "set.zip/photos/deep/b.JPG"]
    assert found.images[2][1] == b"BB"
    assert {name for name, _ in found.skipped} == {"readme.md", "set.zip/photos/notes.txt"}
    assert not found.refused


def test_zip_over_the_limits_is_refused_before_extraction():
    limits = UploadLimits(max_file_bytes=100, max_total_bytes=1000, max_files=3,
                          max_zip_members=5)
    big = _zip({f"{i}.png": bytes(400) for i in range(3)})  # 1200 bytes declared
    found = collect_uploads([("big.zip", big)], limits)
    assert not found.images and "unpacks to" in found.refused[0]
    many = _zip({f"{i}.png": b"x" for i in range(6)})
    assert "entries" in collect_uploads([("many.zip", many)], limits).refused[0]
    four = _zip({f"{i}.png": b"x" for i in range(4)})
    assert "at most 3 images" in collect_uploads([("four.zip", four)], limits).refused[0]
    assert "not a readable" in collect_uploads([("bad.zip", b"PK no zip")], limits).refused[0]
    one = _zip({"huge.png": bytes(200), "ok.png": b"y"})
    found = collect_uploads([("one.zip", one)], limits)
    assert [n for n, _ in found.images] == ["one.zip/ok.png"]
    assert found.skipped[0][0] == "one.zip/huge.png"


def test_zip_that_lies_about_its_size_is_not_extracted_past_it():
    data = bytearray(_zip({"a.png": bytes(1000)}))
    # Shrink the declared size in the central directory to 10 bytes.
    directory = data.rfind(b"PK\x01\x02")
    data[directory + 24:directory + 28] = (10).to_bytes(4, "little")
    found = collect_uploads([("liar.zip", bytes(data))])
    assert not found.images and found.skipped and found.skipped[0][0] == "liar.zip/a.png"


def test_single_uploads_respect_per_file_and_total_limits():
    limits = UploadLimits(max_file_bytes=10, max_total_bytes=15, max_files=5)
    found = collect_uploads([("a.png", bytes(11)), ("b.png", bytes(8)), ("c.png", bytes(8))],
                            limits)
    assert [n for n, _ in found.images] == ["b.png"]
    assert [n for n, _ in found.skipped] == ["a.png", "c.png"]


def test_stems_are_safe_and_unique():
    stem = StemNamer()
    assert stem("cat.png") == "cat"
    assert stem("a/b/cat.jpg") == "cat_2"
    assert stem("../../etc/pass wd.png") == "pass_wd"
    assert stem("summary.png") == "summary_2"  # never overwrites summary.csv
    assert stem(".png") == "png"


def test_progress_on_a_terminal_is_redrawn_in_place_with_messages_above_it():
    stream = io.StringIO()
    bar = Progress(4, stream=stream, terminal=True)
    bar.advance()
    bar.message("skipped x.png: broken")
    bar.advance(3)
    bar.close()
    text = stream.getvalue()
    assert "\r" in text and "1/4" in text and text.rstrip().endswith(
        text.rstrip().rsplit("\r", 1)[-1])  # the last redraw is the final state
    assert "4/4" in text.rsplit("\r", 1)[-1]
    assert "skipped x.png: broken\n" in text and text.endswith("\n")


def test_progress_elsewhere_is_one_line_per_update_and_always_the_last():
    stream = io.StringIO()  # not a terminal: a log or a pipe
    assert not Progress(1, stream=io.StringIO()).terminal
    bar = Progress(3, stream=stream, log_every=0)
    bar.advance()
    bar.message("skipped x.png: broken")
    bar.advance(2)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split("|")[2].split()[0] for line in lines if "|" in line] == [
        "0/3", "1/3", "3/3"]
    assert lines[2] == "skipped x.png: broken"
    quiet = io.StringIO()  # lines at most every few seconds, but the last one always
    bar = Progress(50, stream=quiet)
    for _ in range(50):
        bar.advance()
    bar.close()
    lines = quiet.getvalue().splitlines()
    assert "0/50" in lines[0] and "50/50" in lines[-1] and len(lines) <= 3


def test_cli_arguments_are_parsed_and_checked():
    from saliency_core.__main__ import UsageError, parse_params, resolve_class
    from saliency_core.labels import load_imagenet_labels

    assert parse_params("smoothgrad", ["samples=10", "seed=3", "noise=0.2"]) == {
        "samples": 10, "seed": 3, "noise": 0.2}
    for bad in (["samples=ten"], ["nope=1"], ["samples"], ["aggregate=median"]):
        with pytest.raises(UsageError):
            parse_params("smoothgrad", bad)
    names = load_imagenet_labels()
    assert resolve_class("281", names) == 281
    assert resolve_class("Tabby", names) == 281
    assert resolve_class("tabby cat", names) == 281
    with pytest.raises(UsageError, match="outside"):
        resolve_class("1000", names)
    with pytest.raises(UsageError, match="close: golden retriever"):
        resolve_class("golden", names)


class _RecordOnlyClassifier:
    """What :func:`make_provenance` reads of a model (no TensorFlow)."""

    class_names = ("a", "b", "c")
    num_classes = 3
    input_size = (8, 8)
    head_note = "logits"
    batch_size = 4

    def default_cam_layer(self):
        return "conv"


@pytest.mark.parametrize("method, params, aggregate", [
    ("smoothgrad", {}, "mean"), ("smoothgrad_sq", {}, "square"), ("vargrad", {}, "variance"),
    ("smoothgrad", {"aggregate": "square"}, "square")])
def test_provenance_records_the_aggregate_smoothgrad_used(method, params, aggregate):
    """The record names the aggregation the method ran with, never ``null`` (SmoothGrad's
    constructor takes ``None`` for its class's own default)."""
    from saliency_core.audit.provenance import make_provenance
    from saliency_core.methods import Target, get_method

    record = make_provenance(
        model_key="m", model_file=None, weights_sha256=None, preprocessing="raw",
        classifier=_RecordOnlyClassifier(), image_name="x.png", image_sha256="0" * 64,
        image_size=(8, 8), fit="crop", probabilities=np.array([0.2, 0.5, 0.3]),
        target=Target(1), method=method, params=params,
        values=np.random.default_rng(0).random((8, 8, 3)), seconds=0.1)
    recorded = record["method"]["params"]
    assert recorded["aggregate"] == aggregate
    assert get_method(method, **recorded).aggregate == aggregate


def _directory_flood(entries: int) -> bytes:
    """A zip of one member whose central directory repeats its entry ``entries`` times,
    with an end record that declares 0xFFFF entries (zipfile reads them all anyway)."""
    name = b"a.png"
    local = (b"PK\x03\x04" + struct.pack("<5H3I2H", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0)
             + name)
    entry = (b"PK\x01\x02" + struct.pack("<6H3I5H2I", 20, 20, 0, 0, 0, 0, 0, 0, 0,
                                         len(name), 0, 0, 0, 0, 0, 0) + name)
    directory = entry * entries
    end = b"PK\x05\x06" + struct.pack("<4H2IH", 0, 0, 0xFFFF, 0xFFFF, len(directory),
                                      len(local), 0)
    return local + directory + end


def test_a_zip_with_more_entries_than_allowed_is_refused_before_zipfile_reads_them(
        monkeypatch):
    """zipfile builds an object per directory entry when it opens an archive (4 million
    entries: 2 GB, 16 s), so the count is checked on the bytes first."""
    import zipfile

    from saliency_core.audit.uploads import count_zip_entries

    flood = _directory_flood(50_000)
    assert count_zip_entries(flood) == 50_000
    opened = []
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: opened.append(1))
    found = collect_uploads([("flood.zip", flood)], UploadLimits())
    assert found.refused == ["flood.zip has 50000 entries; a zip may have at most 2000."]
    assert not opened
    assert count_zip_entries(b"not a zip") is None
