"""``python -m saliency_core explain``: outputs, provenance, reproduction, own .keras models."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from saliency_core.samples import read_sample

pytestmark = pytest.mark.slow

PROVENANCE_FIELDS = {
    "image": {"name", "sha256", "width", "height"},
    "model": {"key", "file", "weights_sha256", "preprocessing", "input_size", "num_classes",
              "head"},
    "target": {"class_index", "class_name", "probability", "class_choice", "contrast_index",
               "score"},
    "method": {"key", "params", "seed", "batch_rows"},
    "versions": {"python", "numpy", "tensorflow", "keras", "pillow"},
    "map": {"shape", "dtype", "raw_min", "raw_max", "raw_mean", "raw_std", "border_share",
            "border_band", "reduction", "clip_percentile", "npy_sha256"},
}


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    """Three photos (one in a subfolder) and one broken file."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "cat.png").write_bytes(read_sample("chelsea"))
    (root / "cup.png").write_bytes(read_sample("coffee"))
    (root / "sub" / "rocket.jpg").write_bytes(read_sample("rocket"))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    return root


@pytest.fixture(autouse=True)
def _shared_default_model(monkeypatch, default_classifier):
    """In-process runs reuse the session's default model (built and traced once)."""
    import saliency_core.pipeline

    original = saliency_core.pipeline.load_classifier

    def load(key, *args, **kwargs):
        if key == "efficientnet_lite0":
            return default_classifier, None
        return original(key, *args, **kwargs)

    monkeypatch.setattr(saliency_core.pipeline, "load_classifier", load)


def run_cli(*args: str):
    from saliency_core.__main__ import main

    return main(["explain", *map(str, args)])


def test_cli_on_three_images_and_a_broken_file(folder, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, SALIENCY_STUDIO_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "saliency_core", "explain", str(folder),
                           "--out", str(out), "--batch-size", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "skipped broken.jpg: The image file is damaged" in done.stderr
    assert "Traceback" not in done.stderr
    # stderr is a pipe here, not a terminal: progress comes as whole lines (tqdm's figures,
    # the last one always), and TensorFlow's start-up notes are held back
    from saliency_core.quiet_tensorflow import STARTUP_NOTES

    assert "\r" not in done.stderr
    progress = [line for line in done.stderr.splitlines() if "/4 [" in line]
    assert progress and "4/4" in progress[-1], done.stderr
    assert not [line for line in done.stderr.splitlines()
                if any(note in line for note in STARTUP_NOTES)], done.stderr
    for stem in ("cat", "cup", "rocket"):
        assert {(out / f"{stem}{ext}").stat().st_size > 0 for ext in (".png", ".npy", ".json")
                } == {True}
    assert not list(out.glob("broken.*"))
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:5] == ["file", "stem", "status", "reason", "class_index"]
        rows = {row["file"]: row for row in reader}
    assert set(rows) == {"broken.jpg", "cat.png", "cup.png", "sub/rocket.jpg"}
    assert rows["broken.jpg"]["status"] == "skipped" and rows["cat.png"]["status"] == "ok"


def test_help_and_wrong_arguments_answer_without_starting_tensorflow(tmp_path):
    code = ("import sys\n"
            "from saliency_core.__main__ import main\n"
            "try:\n"
            "    main(sys.argv[1:])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    for args in (["explain", "--help"],
                 ["explain", str(tmp_path), "--out", str(tmp_path / "o"), "--param", "x=1"]):
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.stdout.strip().splitlines()[-1] == "False False", (args, done.stderr)


def test_the_top5_comes_from_the_gradient_call_and_nothing_retraces(folder, tmp_path,
                                                                    default_classifier,
                                                                    monkeypatch):
    """Vanilla maps and their top-5 cost one model call per batch: no forward pass first."""
    default_classifier.warm_up()
    traced = default_classifier.trace_count
    forwards, calls = [], []
    original_logits, original_rows = default_classifier.logits, default_classifier.row_gradients
    monkeypatch.setattr(default_classifier, "logits",
                        lambda images: forwards.append(len(images)) or original_logits(images))
    monkeypatch.setattr(default_classifier, "row_gradients",
                        lambda images, classes, score="logit": calls.append(len(images))
                        or original_rows(images, classes, score))
    out = tmp_path / "out"
    assert run_cli(folder, "--out", out, "--batch-size", "2") == 0
    # batches of 2 files in sorted order: (broken.jpg, cat.png), (cup.png, sub/rocket.jpg)
    assert forwards == [] and calls == [1, 2]
    assert default_classifier.trace_count == traced
    for stem in ("cat", "cup", "rocket"):
        record = json.loads((out / f"{stem}.json").read_text())
        assert record["top5"][0]["index"] == record["target"]["class_index"]
        assert record["top5"][0]["probability"] == record["target"]["probability"]
    # a fixed class: the top-5 still comes from the same call
    assert run_cli(folder / "cat.png", "--out", tmp_path / "fixed", "--class", "7") == 0
    record = json.loads((tmp_path / "fixed" / "cat.json").read_text())
    assert record["target"]["class_index"] == 7 and record["top5"][0]["index"] != 7
    assert forwards == [] and default_classifier.trace_count == traced


def test_overlapped_batches_give_the_same_outputs_in_order_as_one_after_another(
        folder, tmp_path, default_classifier):
    from saliency_core.__main__ import collect_images
    from saliency_core.audit.batch import AuditSettings
    from saliency_core.audit.engine import explain_files, iter_local, plan_files, split_batches
    from saliency_core.audit.outputs import ModelIdentity

    files = plan_files(collect_images([str(folder)])[0])
    identity = ModelIdentity("efficientnet_lite0", None, None, "lite")
    for method in ("vanilla", "gradcam"):
        settings = AuditSettings(method=method, batch_size=1)
        overlapped = list(iter_local(default_classifier, identity, settings, files))
        one_by_one = [outcome for batch in split_batches(files, 1) for outcome in
                      explain_files(default_classifier, identity, settings, batch,
                                    {"name": "local"})]
        assert [o.row["file"] for o in overlapped] == [f.name for f in files]
        for a, b in zip(overlapped, one_by_one, strict=True):
            assert {k: v for k, v in a.row.items() if k != "seconds"} == \
                {k: v for k, v in b.row.items() if k != "seconds"}
            assert sorted(a.files) == sorted(b.files)
            for name in a.files:
                if not name.endswith(".json"):  # the JSON holds times and dates
                    assert a.files[name] == b.files[name], name


def test_only_broken_files_exit_non_zero_and_wrong_arguments_get_one_line(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"")
    (bad / "b.jpg").write_text("<html></html>")
    assert run_cli(bad, "--out", tmp_path / "out") == 1
    assert "explained 0 of 2" in capsys.readouterr().err
    for args in (["--method", "nope"], ["--param", "samples=3"], ["--class", "zzzz"],
                 ["--model", "nothing.keras"], ["--preprocess", "unit"], ["--batch-size", "0"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            code = run_cli(bad, "--out", tmp_path / "o2", *args)
            raise SystemExit(code)
        assert stop.value.code == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error:" in err and "Traceback" not in err, err
    assert run_cli(tmp_path / "missing", "--out", tmp_path / "o3") == 2


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli("--help")
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--model", "--method", "--class", "--labels", "--preprocess",
                   "--fit", "--batch-size", "--param", "--engine", "--address", "--workers",
                   "--cpus-per-worker", "--gpus-per-worker", "summary.csv", "exit status"):
        assert option in text


def test_provenance_fields_reproduction_and_equality_with_pipeline(folder, tmp_path,
                                                                   default_classifier):
    from saliency_core.audit.provenance import reproduce_values
    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.methods import Target
    from saliency_core.pipeline import explain

    one, four = tmp_path / "one", tmp_path / "four"
    assert run_cli(folder, "--out", one, "--batch-size", "1") == 0
    assert run_cli(folder, "--out", four, "--batch-size", "4", "--fit", "squash") == 0
    for name, stem in (("cat.png", "cat"), ("sub/rocket.jpg", "rocket")):
        data = (folder / name).read_bytes()
        for out, fit in ((one, "crop"), (four, "squash")):
            record = json.loads((out / f"{stem}.json").read_text())
            for section, keys in PROVENANCE_FIELDS.items():
                assert keys <= set(record[section]), (section, keys - set(record[section]))
            assert {"fit", "crop", "top5", "seconds", "created"} <= set(record)
            assert record["image"]["sha256"] == load_image(data).digest
            assert len(record["model"]["weights_sha256"]) == 64
            assert record["fit"] == fit and record["model"]["input_size"] == [224, 224]
            assert len(record["top5"]) == 5
            assert record["top5"][0]["index"] == record["target"]["class_index"]
            assert 0.0 < record["map"]["border_share"] < 1.0
            saved = np.load(out / f"{stem}.npy")
            assert saved.dtype == np.float32 and saved.shape == (224, 224, 3)
            model_input, view = fit_to_model(load_image(data).pixels, (224, 224), fit)
            assert Image.open(out / f"{stem}.png").size == (view.shape[1], view.shape[0])
            # re-running the core from the JSON alone gives the same bytes
            again = reproduce_values(record, default_classifier, model_input)
            assert np.array_equal(again, saved)
            # and the .npy is what pipeline.explain returns for these settings
            target = Target(record["target"]["class_index"], score=record["target"]["score"])
            direct = explain(default_classifier, model_input, target, "vanilla").attribution
            if record["method"]["batch_rows"] == 1:
                assert np.array_equal(direct.values, saved)
            else:  # batched on CPU: equal up to float rounding
                np.testing.assert_allclose(saved, direct.values, rtol=1e-4,
                                           atol=1e-6 * np.abs(saved).max())
    assert json.loads((four / "cat.json").read_text())["method"]["batch_rows"] == 3


def test_fixed_class_by_name_and_a_sampling_method_record_every_parameter(folder, tmp_path):
    out = tmp_path / "out"
    assert run_cli(folder / "cat.png", "--out", out, "--class", "tabby", "--method",
                   "smoothgrad", "--param", "samples=3", "--param", "seed=7") == 0
    record = json.loads((out / "cat.json").read_text())
    assert record["target"]["class_index"] == 281 and record["target"]["class_choice"] == "fixed"
    # the batch size left unset is recorded as the one used: the model call's bound
    assert record["method"]["batch_size"] >= 1
    assert record["method"]["params"] == {"noise": 0.15, "samples": 3, "aggregate": "mean",
                                          "seed": 7,
                                          "batch_size": record["method"]["batch_size"]}
    assert record["method"]["seed"] == 7


def _save_tiny(path, rescaling: bool, size: int, softmax: bool):
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs) if rescaling else inputs
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax" if softmax else None, name="head")(x)
    model = keras.Model(inputs, outputs)
    model.save(path)
    return model


def test_keras_softmax_head_gives_pre_softmax_maps(folder, tmp_path):
    import keras
    import tensorflow as tf

    from saliency_core.imaging import fit_to_model, load_image

    model = _save_tiny(tmp_path / "soft.keras", rescaling=False, size=32, softmax=True)
    (tmp_path / "labels.txt").write_text("round\nsquare\nother\n")
    out = tmp_path / "out"
    assert run_cli(folder / "cup.png", "--out", out, "--model", tmp_path / "soft.keras",
                   "--labels", tmp_path / "labels.txt", "--preprocess", "unit",
                   "--batch-size", "1") == 0
    record = json.loads((out / "cup.json").read_text())
    assert record["model"]["file"] == "soft.keras" and record["model"]["preprocessing"] == "unit"
    assert "linear" in record["model"]["head"]
    assert record["target"]["class_name"] in ("round", "square", "other")
    saved = np.load(out / "cup.npy")
    # the expected map, computed here independently: d(logit_c)/d(pixels)
    features = keras.Model(model.inputs, model.get_layer("head").input)
    kernel, bias = model.get_layer("head").get_weights()
    model_input, _ = fit_to_model(load_image(read_sample("coffee")).pixels, (32, 32), "crop")
    pixels = tf.constant(model_input[None])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(pixels)
        logits = tf.matmul(features(pixels / 255.0), kernel) + bias
        logit = logits[0, record["target"]["class_index"]]
        probability = tf.nn.softmax(logits)[0, record["target"]["class_index"]]
    np.testing.assert_allclose(saved, tape.gradient(logit, pixels)[0].numpy(), rtol=1e-4,
                               atol=1e-7)
    of_probability = tape.gradient(probability, pixels)[0].numpy()
    assert not np.allclose(saved, of_probability, rtol=1e-2, atol=1e-6)


def test_keras_with_rescaling_layer_on_96_pixel_inputs(folder, tmp_path):
    _save_tiny(tmp_path / "rescale.keras", rescaling=True, size=96, softmax=False)
    out = tmp_path / "out"
    assert run_cli(folder, "--out", out, "--model", tmp_path / "rescale.keras") == 0
    record = json.loads((out / "cat.json").read_text())
    assert record["model"]["preprocessing"] == "raw"  # --preprocess left at its default
    assert record["model"]["input_size"] == [96, 96]
    assert record["target"]["class_name"].startswith("class ")
    assert np.load(out / "cat.npy").shape == (96, 96, 3)
    assert np.abs(np.load(out / "rocket.npy")).max() > 0
    assert len((out / "summary.csv").read_text().splitlines()) == 5


PEER_METHODS = {"xrai": ["steps=3"], "blur_ig": ["steps=4", "max_sigma=5.0"],
                "guided_ig": ["steps=10"], "scorecam": ["layer=conv"], "layercam": [],
                "rise": ["masks=100", "grid=4", "seed=3"]}


def test_every_new_method_from_the_command_line(folder, tmp_path, capsys):
    """``--method KEY`` works for each of the methods the peers have, and ``--help`` names
    them; a tiny own model keeps it quick."""
    with pytest.raises(SystemExit):
        run_cli("--help")
    listed = capsys.readouterr().out
    import keras

    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "tiny.keras")
    for key, params in PEER_METHODS.items():
        assert key in listed, key
        out = tmp_path / key
        extra = [arg for p in params for arg in ("--param", p)]
        assert run_cli(folder / "cup.png", "--out", out, "--model", tmp_path / "tiny.keras",
                       "--method", key, *extra) == 0, key
        record = json.loads((out / "cup.json").read_text())
        assert record["method"]["key"] == key
        saved = np.load(out / "cup.npy")
        assert saved.shape[:2] == (24, 24) and np.isfinite(saved).all(), key
    record = json.loads((tmp_path / "rise" / "cup.json").read_text())
    assert record["method"]["params"]["masks"] == 100 and record["method"]["seed"] == 3
    assert run_cli(folder / "cup.png", "--out", tmp_path / "bad", "--model",
                   tmp_path / "tiny.keras", "--method", "layercam", "--param",
                   "layer=nowhere") == 2


def test_the_command_line_explains_with_guided_backprop(folder, tmp_path):
    out = tmp_path / "guided"
    assert run_cli(folder / "cat.png", "--out", out, "--method", "guided_backprop") == 0
    record = json.loads((out / "cat.json").read_text())
    assert record["method"]["key"] == "guided_backprop"
    assert float(record["info"]["ReLUs with guided gradients"]) > 0
    assert np.load(out / "cat.npy").shape == (224, 224, 3)


def test_links_the_folder_walk_does_not_follow_are_listed_as_skipped(folder, tmp_path, capsys):
    """A symbolic link that loops, one to nothing and one to a folder are neither images nor
    silently dropped: summary.csv and the progress lines list each with its reason; a link
    to a photo is followed."""
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "gone.jpg").symlink_to("missing.jpg")
    (folder / "again").symlink_to(".")
    (folder / "sub" / "cat-link.png").symlink_to(folder / "cat.png")
    out = tmp_path / "out"
    assert run_cli(folder, "--out", out) == 0
    err = capsys.readouterr().err
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle)}
    assert rows["loop.png"]["status"] == "skipped"
    assert rows["loop.png"]["reason"] == "a symbolic link that loops back on itself"
    assert rows["gone.jpg"]["reason"].startswith("a symbolic link to nothing")
    assert rows["again"]["reason"].startswith("a link to a folder, not followed")
    assert rows["sub/cat-link.png"]["status"] == "ok"
    assert "skipped loop.png: a symbolic link that loops back on itself" in err
    assert "explained 4 of 8 images (4 skipped)" in err  # 3 links and broken.jpg
