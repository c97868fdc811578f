"""Safety checks one by one: limits file, archive rules, HDF5 rules, images, clean-up."""

import io
import logging
import re
import tempfile
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import safety_builders as build
from PIL import Image

from saliency_core.imaging import ImageError, load_image
from saliency_core.models import registry
from saliency_core.models.custom import CustomModelError, load_custom_model
from saliency_core.safety import isolation, weights
from saliency_core.safety.errors import UnsafeUploadError, describe_exception
from saliency_core.safety.hdf5 import walk_hdf5
from saliency_core.safety.images import check_image_structure, count_tiff_pages
from saliency_core.safety.keras_archive import inspect_keras_archive, measure_json_depth
from saliency_core.safety.limits import DEFAULT_LIMITS, Limits, load_limits


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> bytes:
    return build.small_model_bytes(tmp_path_factory.mktemp("checks"))


# ------------------------------------------------------------------------- limits file


def test_limits_come_from_the_config_file(tmp_path, monkeypatch, caplog):
    config = tmp_path / "saliency_studio.toml"
    config.write_text('[weights]\nvgg16 = "/x.h5"\n[limits]\nmax_input_side = 512\n'
                      'isolation_timeout_seconds = 30\nno_such_limit = 3\n'
                      'max_parameters = "many"\nmax_zip_members = -1\n')
    monkeypatch.setenv("SALIENCY_STUDIO_CONFIG", str(config))
    with caplog.at_level(logging.WARNING, logger="saliency_core.safety.limits"):
        limits = load_limits()
    assert limits.max_input_side == 512 and limits.isolation_timeout_seconds == 30.0
    assert limits.max_parameters == DEFAULT_LIMITS.max_parameters
    assert limits.max_zip_members == DEFAULT_LIMITS.max_zip_members
    assert "no_such_limit" in caplog.text and "many" in caplog.text


@pytest.mark.parametrize("text", ["[limits\nbroken", "limits = 3\n", "\xff"])
def test_a_broken_config_file_gives_the_defaults(tmp_path, text):
    config = tmp_path / "bad.toml"
    config.write_bytes(text.encode("latin-1"))
    assert load_limits(config) == DEFAULT_LIMITS
    assert load_limits(tmp_path / "absent.toml") == DEFAULT_LIMITS


def test_a_lower_input_limit_from_the_file_applies_to_uploads(tmp_path, monkeypatch,
                                                             small_model):
    config = tmp_path / "saliency_studio.toml"
    config.write_text("[limits]\nmax_input_side = 8\n")
    monkeypatch.setenv("SALIENCY_STUDIO_CONFIG", str(config))
    with pytest.raises(CustomModelError, match="largest accepted input is 8 x 8"):
        load_custom_model(small_model)


# ----------------------------------------------------------------------- .keras archive


def test_path_traversal_and_extra_members_are_refused(small_model):
    members = build.read_members(small_model)
    for extra in ("../evil.txt", "/etc/passwd", "assets/vocab.txt"):
        data = build.write_archive({**members, extra: b"x"})
        with pytest.raises(UnsafeUploadError, match="path outside|never has"):
            inspect_keras_archive(data, Limits())


def test_config_nesting_is_measured_without_recursion(small_model):
    deep = "[" * 200_000 + "]" * 200_000
    assert measure_json_depth(deep) == 200_000
    assert measure_json_depth('{"a": "[[[[", "b": [1, [2]]}') == 3
    members = build.read_members(small_model)
    members["config.json"] = deep.encode()
    with pytest.raises(UnsafeUploadError, match="nested 200000 levels deep"):
        inspect_keras_archive(build.write_archive(members), Limits())


def test_long_lists_and_unfixed_inputs_are_refused(small_model):
    def long_list(config):
        build.layer(config, "Dense")["config"]["extra"] = [0] * 200_000

    def unfixed(config):
        build.layer(config, "InputLayer")["config"]["batch_shape"] = [None, None, None, 3]

    with pytest.raises(UnsafeUploadError, match="list of 200,000 items"):
        inspect_keras_archive(build.edit_config(small_model, long_list), Limits())
    with pytest.raises(UnsafeUploadError, match="must be fixed"):
        inspect_keras_archive(build.edit_config(small_model, unfixed), Limits())


def test_the_parameter_estimate_refuses_a_wide_dense_on_a_known_input(small_model):
    def edit(config):
        dense = build.layer(config, "Dense")
        dense["config"]["units"] = 100_000
        dense["build_config"] = {"input_shape": [None, 100_000]}

    with pytest.raises(UnsafeUploadError, match="limit is 200 million"):
        inspect_keras_archive(build.edit_config(small_model, edit), Limits())
    report = inspect_keras_archive(small_model, Limits())
    assert report.estimated_parameters == 3 * 3 * 3 * 4 + 4 + 4 * 3 + 3  # exact here


# ------------------------------------------------------------------------------- HDF5


def write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "w.h5"
    path.write_bytes(data)
    return str(path)


def test_external_links_virtual_datasets_and_external_storage_are_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["x"] = np.zeros(3, "f4")
    cases = {
        "links to another file": lambda f: f.__setitem__("x", h5py.ExternalLink(str(other), "x")),
        "soft links": lambda f: f.__setitem__("y", h5py.SoftLink("/x")) or f.create_dataset(
            "x", data=np.zeros(2, "f4")),
        "virtual dataset": lambda f: f.create_virtual_dataset(
            "v", h5py.VirtualLayout((3,), "f4")),
        "external files": lambda f: f.create_dataset(
            "e", shape=(3,), dtype="f4", external=[(str(tmp_path / "raw.bin"), 0, 12)]),
    }
    for phrase, maker in cases.items():
        path = tmp_path / f"{phrase.replace(' ', '_')}.h5"
        with h5py.File(path, "w") as handle:
            maker(handle)
        with pytest.raises(UnsafeUploadError, match=phrase):
            walk_hdf5(str(path), Limits())


def test_a_real_weights_file_passes_the_walk(tmp_path):
    model = keras.applications.MobileNetV2(weights=None)
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    report = walk_hdf5(str(path), Limits())
    assert len(report.datasets) == len(model.weights)
    assert report.total_bytes == sum(int(np.prod(w.shape)) * 4 for w in model.weights)


def test_non_numeric_datasets_and_big_attributes_are_refused(tmp_path):
    def strings(handle):
        handle.create_dataset("s", data=np.array(["a", "b"], dtype=h5py.string_dtype()))

    def big_attribute(handle):
        handle.attrs.create("x", data=np.full(50_000, b"x" * 400, dtype="S400"))

    with pytest.raises(UnsafeUploadError, match="not plain numbers"):
        walk_hdf5(write(tmp_path, build.h5_bytes(strings)), Limits())
    with pytest.raises(UnsafeUploadError, match="attribute declares 19 MB"):
        walk_hdf5(write(tmp_path, build.h5_bytes(big_attribute, libver="latest")), Limits())
    with pytest.raises(UnsafeUploadError, match="not an HDF5"):
        walk_hdf5(write(tmp_path, b"pickle? no."), Limits())


def test_the_isolated_walk_refuses_many_groups_quickly(tmp_path):
    def groups(handle):
        for index in range(300):
            handle.create_group(f"g{index}")

    limits = Limits(max_hdf5_objects=100)
    with pytest.raises(UnsafeUploadError, match="more than 100 objects"):
        walk_hdf5(write(tmp_path, build.h5_bytes(groups)), limits)


# ------------------------------------------------------------- isolation and clean-up


def test_an_empty_memory_error_gives_a_clean_message(monkeypatch, small_model):
    assert describe_exception(MemoryError()) == "it ran out of memory"
    assert describe_exception(RuntimeError("")) == "an unexpected RuntimeError"
    assert describe_exception(OSError("Unable to open (Truncated File Read)")) == \
        "Unable to open"

    def fail(*_args, **_kwargs):
        raise MemoryError()

    monkeypatch.setattr(keras.saving, "load_model", fail)
    with pytest.raises(CustomModelError) as info:
        load_custom_model(small_model)
    assert str(info.value) == ("The model could not be loaded: it needs more memory than the "
                               "server can give it.")


def test_running_out_of_memory_in_the_child_is_a_clean_refusal(tmp_path, small_model):
    path = tmp_path / "m.keras"
    path.write_bytes(small_model)
    limits = Limits(isolation_memory_bytes=64 * 1024 * 1024)  # too little to import Keras
    start = time.monotonic()
    with pytest.raises(UnsafeUploadError) as info:
        isolation.run_isolated("keras_archive", {"path": str(path), "workdir": str(tmp_path)},
                               limits)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert "memory" in message and "Traceback" not in message and "IndexError" not in message


def test_each_load_leaves_nothing_in_the_temp_dir(tmp_path, monkeypatch, small_model):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    members = build.read_members(small_model)
    extra = build.write_archive({**members, "assets/big.bin": b"\0" * 1_000_000})
    with pytest.raises(CustomModelError, match="never has"):
        load_custom_model(extra)
    members["model.weights.h5"] = build.h5_bytes(lambda f: f.create_group("layers"))
    with pytest.raises(CustomModelError, match="does not hold the weights"):
        load_custom_model(build.write_archive(members))  # fails in the isolated check

    def fail_after_writing(path, **_kwargs):
        Path(path).with_name("partial.h5").write_bytes(b"x" * 1000)
        raise ValueError("Keras failed half way")

    monkeypatch.setattr(keras.saving, "load_model", fail_after_writing)
    with pytest.raises(CustomModelError, match="Keras refused its layers or weights") as info:
        load_custom_model(small_model)
    assert "Keras failed half way" not in str(info.value)  # the library's words are logged
    assert list(scratch.iterdir()) == []


def test_official_weights_hashes_match_the_keras_sources():
    sources = Path(keras.__file__).parent / "src" / "applications"
    texts = {name: (sources / f"{name}.py").read_text()
             for name in ("vgg16", "resnet", "efficientnet", "inception_v3")}
    for key, digest in weights.OFFICIAL_WEIGHTS_MD5.items():
        assert re.fullmatch(r"[0-9a-f]{32}", digest)
        assert any(digest in text for text in texts.values()), key
    assert weights.official_weights_md5("mobilenet_v2") is None  # Keras publishes none


def test_an_official_file_skips_the_isolated_check(monkeypatch):
    data = b"pretend these are the official bytes"
    import hashlib

    monkeypatch.setitem(weights.OFFICIAL_WEIGHTS_MD5, "resnet50",
                        hashlib.md5(data, usedforsecurity=False).hexdigest())

    def never(*_args):
        raise AssertionError("the isolated check ran")

    monkeypatch.setattr(registry, "run_isolated", never)
    registry.check_weights_upload("resnet50", data)
    from saliency_core.models.registry import WeightsUnavailableError

    with pytest.raises(AssertionError, match="isolated check ran"):
        registry.check_weights_upload("resnet50", data + b"!")
    with pytest.raises(WeightsUnavailableError, match="limit is"):
        registry.check_weights_upload("resnet50", data, Limits(max_weights_bytes=10))


# ------------------------------------------------------------------------------ images


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_sixteen_bit_greyscale_with_a_long_side_of_5000_loads():
    ramp = np.tile(np.linspace(0, 65535, 5000).astype(np.uint16), (3000, 1))
    loaded = load_image(encode(Image.fromarray(ramp), "PNG"))
    assert loaded.pixels.shape == (614, 1024, 3)
    assert loaded.original_size == (5000, 3000)
    assert "16-bit image scaled to 8 bits" in loaded.notes
    row = loaded.pixels[300, :, 0].astype(int)
    assert row[0] <= 2 and row[-1] >= 253 and np.all(np.diff(row) >= -1)


def test_tiffs_gifs_and_pngs_under_the_caps_still_load():
    frames = [Image.new("L", (4, 4), value) for value in (10, 200, 90)]
    tiff = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    assert count_tiff_pages(tiff, 10) == 3
    assert "only the first of 3 frames is used" in load_image(tiff).notes
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert "only the first of 3 frames is used" in load_image(gif).notes
    assert load_image(build.many_page_tiff(5)).pixels.shape == (1, 1, 3)


def test_too_many_gif_frames_or_png_chunks_are_refused_quickly():
    frames = [Image.new("L", (2, 2), index * 8) for index in range(30)]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsafeUploadError, match="more than 20 frames"):
        check_image_structure(gif, Limits(max_image_frames=20))
    png = encode(Image.new("RGB", (2, 2)), "PNG")
    text_chunk = b"\x00\x00\x00\x01tEXta\x00\x00\x00\x00"
    many = png[:33] + text_chunk * 200_000 + png[33:]
    with pytest.raises(ImageError, match="more than 100,000 chunks"):
        load_image(many)


def test_damaged_images_never_show_library_wording():
    data = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    for broken in (data[: len(data) // 2], data[:40] + b"\0" * 40 + data[80:]):
        with pytest.raises(ImageError) as info:
            load_image(broken)
        message = str(info.value)
        assert not re.search(r"truncated file read|broken data stream|cannot identify|"
                             r"bytes not processed|\(\w+ error\)", message, re.I), message


def chained_wide_dense_model(tmp_path: Path) -> bytes:
    """A valid .keras file whose config passes the pre-build estimate: two ``Dense(100000)``
    in a row, the second's input size stated as 8 (it is really 100000, so building it
    asks for a 40 GB kernel)."""
    inputs = keras.Input((1, 1, 3))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(8, name="wide_1")(x)
    model = keras.Model(inputs, keras.layers.Dense(8, name="wide_2")(x))
    path = tmp_path / "chained.keras"
    model.save(path)

    def widen(config):
        for item in config["config"]["layers"]:
            if item["class_name"] == "Dense":
                item["config"]["units"] = 100_000
                item.pop("build_config", None)

    return build.edit_config(path.read_bytes(), widen)


def test_a_layer_too_large_to_build_is_refused_for_its_memory_not_as_a_bad_setting(tmp_path):
    """What the pre-build estimate misses, the checking process's memory limit stops:
    TensorFlow's own out-of-memory error reads as memory, not as "a layer has a setting
    Keras does not accept"."""
    data = chained_wide_dense_model(tmp_path)
    assert inspect_keras_archive(data, DEFAULT_LIMITS).estimated_parameters \
        < DEFAULT_LIMITS.max_parameters
    with pytest.raises(CustomModelError) as info:
        load_custom_model(data)
    message = str(info.value)
    assert "memory" in message and "setting Keras does not accept" not in message, message


def test_library_words_for_out_of_memory_become_a_memory_error_and_only_those():
    with pytest.raises(MemoryError):
        with isolation.failing_as(isolation.BUILD_MESSAGE):
            raise RuntimeError("OOM when allocating tensor with shape[100000,100000]")
    with pytest.raises(isolation.IsolatedLoadError, match="could not be built"):
        with isolation.failing_as(isolation.BUILD_MESSAGE):
            raise ValueError("RandomZoom got a factor of 7")  # 'oom' inside a word
