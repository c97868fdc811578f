"""Issue 20: the command line never overwrites its inputs, never writes a spreadsheet
formula, and refuses parameters outside the app's ranges, each in one plain line."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saliency_core.audit.destination import plan_destination


def run_cli(*args) -> int:
    from saliency_core.__main__ import main

    return main(["explain", *map(str, args)])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (symbolic links not followed) with its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def photos(tmp_path) -> Path:
    """Two small photos, one in a sub-folder, named like the outputs would be."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(root / "cat.png")
    Image.fromarray(rng.integers(0, 255, (50, 30, 3), dtype=np.uint8)).save(
        root / "sub" / "dog.jpg")
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny ``.keras`` classifier (32×32, 3 classes), cheap to load and run."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    keras.Model(inputs, keras.layers.Dense(3, name="head")(x)).save(path)
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "error:" in err, err
    return err


@pytest.mark.parametrize("case", ["the input folder", "inside the input folder",
                                  "a symbolic link to the input folder",
                                  "inside a symbolic link to the input folder",
                                  "the parent of the input folder", "an input file",
                                  "the folder of an input file"])
def test_an_out_that_is_holds_or_lies_inside_an_input_is_refused(photos, tmp_path, capsys,
                                                                 case, tiny_model):
    alias = tmp_path / "alias"
    alias.symlink_to(photos, target_is_directory=True)
    inputs, out = {
        "the input folder": ([photos], photos),
        "inside the input folder": ([photos], photos / "sub" / "audit"),
        "a symbolic link to the input folder": ([photos], alias),
        "inside a symbolic link to the input folder": ([photos], alias / "audit"),
        "the parent of the input folder": ([photos], tmp_path),
        "an input file": ([photos / "cat.png"], photos / "cat.png"),
        "the folder of an input file": ([photos / "sub" / "dog.jpg"], photos / "sub"),
    }[case]
    before = snapshot(tmp_path)
    assert run_cli(*inputs, "--out", out, "--model", tiny_model, "--batch-size", "1") == 2
    err = one_error_line(capsys)
    assert f"--out {out} " in err and ("input" in err), err
    assert snapshot(tmp_path) == before  # every input byte-identical, nothing added


def test_an_input_reached_through_a_link_into_out_is_refused(tmp_path):
    out = tmp_path / "audit"
    out.mkdir()
    (out / "old.png").write_bytes(b"an earlier overlay")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "old.png").symlink_to(out / "old.png")
    with pytest.raises(ValueError, match="contains the input file .*symbolic link"):
        plan_destination(str(out), [str(folder)], [folder / "old.png"])


def test_an_out_that_is_a_file_says_so_in_plain_words(photos, tmp_path, capsys):
    report = tmp_path / "report.txt"
    report.write_text("keep me")
    assert run_cli(photos, "--out", report) == 2
    err = one_error_line(capsys)
    assert f"--out {report} is a file, not a folder" in err
    assert "File exists" not in err and "Errno" not in err
    assert run_cli(photos, "--out", report / "audit") == 2
    assert "is a file, not a folder" in one_error_line(capsys)
    assert report.read_text() == "keep me"


@pytest.mark.slow
def test_a_folder_that_holds_files_gets_a_fresh_sub_folder_and_nothing_is_overwritten(
        photos, tmp_path, capsys, tiny_model):
    out = tmp_path / "audit"
    out.mkdir()
    for name in ("cat.png", "cat.json", "summary.csv"):  # what the run would write
        (out / name).write_text(f"someone else's {name}")
    before, inputs = snapshot(out), snapshot(photos)
    assert run_cli(photos, "--out", out, "--model", tiny_model) == 0
    err = capsys.readouterr().err
    fresh = [p for p in out.iterdir() if p.is_dir()]
    assert len(fresh) == 1 and fresh[0].name.startswith("run-"), list(out.iterdir())
    assert f"writes to its new sub-folder {fresh[0]}" in err
    assert f"results in {fresh[0]}" in err
    assert {k: v for k, v in snapshot(out).items() if "/" not in k} == before
    assert snapshot(photos) == inputs
    assert {p.name for p in fresh[0].iterdir()} == {
        "cat.png", "cat.npy", "cat.json", "dog.png", "dog.npy", "dog.json", "summary.csv"}
    # an empty or new folder is used as it is
    assert run_cli(photos, "--out", tmp_path / "new", "--model", tiny_model) == 0
    assert (tmp_path / "new" / "summary.csv").is_file()


def test_output_files_are_created_new_and_never_replace_anything(tmp_path):
    from saliency_core.audit.destination import write_new_file
    from saliency_core.audit.engine import EngineError, FileOutcome, OutputFolder

    write_new_file(tmp_path / "a.bin", b"1")
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "a.bin", b"2")
    (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "link.png", b"3")
    assert not (tmp_path / "elsewhere.png").exists()
    outcome = FileOutcome({"file": "a.png", "status": "ok"}, {"a.bin": b"new"})
    with pytest.raises(EngineError, match="a.bin appeared during the run and was not "
                                          "overwritten"):
        with OutputFolder(tmp_path, 1, stream=io.StringIO()) as folder:
            folder.write(outcome)
    assert (tmp_path / "a.bin").read_bytes() == b"1"


def test_a_model_with_a_float_units_gets_one_plain_line(photos, tmp_path, capsys,
                                                       tiny_model):
    import json
    import zipfile

    with zipfile.ZipFile(tiny_model) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    dense = next(item for item in config["config"]["layers"] if item["class_name"] == "Dense")
    dense["config"]["units"] = 3.5
    members["config.json"] = json.dumps(config).encode()
    broken = tmp_path / "float-units.keras"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    assert run_cli(photos, "--out", tmp_path / "out", "--model", broken) == 2
    err = one_error_line(capsys)
    assert err.endswith("--model float-units.keras: A layer of the model declares units = "
                        "3.5; layer sizes must be whole numbers of at least 1, so the model "
                        "cannot be built."), err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ CSV injection

HOSTILE = ("=1+1", "+A", "-A", "@A", "\tA", "\rA", "=HYPERLINK(\"http://x\")")


def test_the_summary_writer_neutralises_formulas_and_keeps_numbers():
    from saliency_core.audit.outputs import SUMMARY_FIELDS, neutralise_cell, summary_csv

    for text in HOSTILE:
        assert neutralise_cell(text) == "'" + text
    for text in ("cat.png", "tabby, tabby cat", "-3.25", "1e-05", "0.5", "", "'=kept"):
        assert neutralise_cell(text) == text
    rows = [{field: "" for field in SUMMARY_FIELDS} | {"file": text, "class_name": text,
                                                        "score": "-3.25"}
            for text in HOSTILE]
    data = summary_csv(rows).decode("utf-8")
    assert all(line.startswith('"') for line in data.split("\n") if line)  # all quoted
    back = list(csv.DictReader(io.StringIO(data, newline="")))
    assert [row["file"] for row in back] == ["'" + text for text in HOSTILE]
    assert [row["class_name"] for row in back] == ["'" + text for text in HOSTILE]
    assert {row["score"] for row in back} == {"-3.25"}  # a negative score stays a number


@pytest.mark.slow
def test_hostile_file_and_class_names_come_back_inert_from_the_command_line(tmp_path,
                                                                           tiny_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = ["=1+1.png", "+A.png", "-A.png", "@A.png", "\tA.png"]
    rng = np.random.default_rng(2)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / name)
    labels = tmp_path / "labels.txt"
    labels.write_text("=1+1\n@SUM(1)\n-A\n")  # every class name is hostile too
    out = tmp_path / "out"
    assert run_cli(folder, "--out", out, "--model", tiny_model, "--labels", labels) == 0
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["file"] for row in rows) == sorted("'" + name for name in names)
    for row in rows:
        for field in ("class_name", "top1_name"):
            assert row[field] in ("'=1+1", "'@SUM(1)", "'-A"), row
        assert not any(value[:1] in ("=", "+", "@", "\t", "\r") for value in row.values())


@pytest.mark.slow
def test_hostile_file_and_class_names_come_back_inert_from_the_audit_pages_export(
        tiny_model):
    import hashlib
    import zipfile

    from pages.lib import audit_gallery
    from saliency_core.audit import outputs
    from saliency_core.audit.batch import AuditSettings
    from saliency_core.audit.uploads import CollectedFiles
    from saliency_core.models.custom import load_custom_model, make_classifier
    from saliency_core.models.preprocessing import get_preprocessor

    assert audit_gallery.summary_csv is outputs.summary_csv  # the one writer
    custom = load_custom_model(tiny_model.read_bytes(), b"=1+1\n@SUM(1)\n-A\n")
    classifier = make_classifier(custom, get_preprocessor("raw"))
    rng = np.random.default_rng(3)
    files = []
    for name in ("=1+1.png", "+A.png", "-A.png", "@A.png", "\tA.png"):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
        data = buffer.getvalue()
        files.append((name, data, hashlib.sha256(data).hexdigest()))
    identity = outputs.ModelIdentity("file", "tiny.keras", custom.digest, "raw")
    archive = zipfile.ZipFile(io.BytesIO(audit_gallery.export_zip(
        files, CollectedFiles(), classifier, AuditSettings(), identity, session="test")))
    rows = list(csv.DictReader(io.StringIO(archive.read("summary.csv").decode("utf-8"),
                                           newline="")))
    assert [row["file"] for row in rows] == ["'" + name for name, _, _ in files]
    for row in rows:
        assert row["status"] == "ok" and row["class_name"] in ("'=1+1", "'@SUM(1)", "'-A")


# -------------------------------------------------------------------- --param ranges


@pytest.mark.parametrize("method, item, expected", [
    ("smoothgrad", "noise=nan", "noise takes a number from 0 to 0.5, not nan"),
    ("smoothgrad", "noise=inf", "noise takes a number from 0 to 0.5, not inf"),
    ("smoothgrad", "noise=1e308", "noise takes a number from 0 to 0.5, not 1e308"),
    ("smoothgrad", "samples=1000000000", "samples takes a whole number from 1 to 100"),
    ("smoothgrad", "samples=2.5", "samples takes a whole number from 1 to 100, not 2.5"),
    ("smoothgrad", "seed=-1", "seed takes a whole number from 0 to 4294967295, not -1"),
    ("integrated_gradients", "steps=100000000", "steps takes a whole number from 4 to 300"),
    ("integrated_gradients", "baseline=white", "baseline takes one of black, blurred, noise"),
    ("occlusion", "patch=100000", "patch takes a whole number from 4 to 224"),
    ("occlusion", "stride=0", "stride takes a whole number from 2 to 224, not 0"),
    ("smoothgrad", "batch_size=100000", "smoothgrad has no parameter 'batch_size'"),
])
def test_bad_params_are_refused_with_the_allowed_range_in_one_line(photos, tmp_path, capsys,
                                                                   method, item, expected):
    assert run_cli(photos, "--out", tmp_path / "out", "--method", method,
                   "--param", item) == 2
    err = one_error_line(capsys)
    assert expected in err, err
    assert not (tmp_path / "out").exists()


def test_cli_and_links_read_a_parameter_with_the_same_table():
    from pages.lib import settings
    from saliency_core.__main__ import parse_params
    from saliency_core.methods import METHODS

    for key, cls in METHODS.items():
        for param in cls.params:
            if param.options or param.name == "layer":
                continue
            for raw in (str(param.minimum), str(param.maximum)):
                raw = raw.removesuffix(".0") if isinstance(param.default, int) else raw
                url_value = settings.PARAM_SETTINGS[f"{key}.{param.name}"].parse(raw)
                assert parse_params(key, [f"{param.name}={raw}"])[param.name] == url_value
            above = str(int(param.maximum) + 1)
            assert settings.PARAM_SETTINGS[f"{key}.{param.name}"].parse(above) is None
            with pytest.raises(ValueError, match=f"{param.name} takes"):
                parse_params(key, [f"{param.name}={above}"])


def test_a_link_with_a_value_outside_the_range_says_so_once(monkeypatch):
    from pages.lib import settings

    values, notices = settings.read_query({"method": "smoothgrad",
                                           "smoothgrad.samples": "1000000000",
                                           "smoothgrad.noise": "nan"})
    assert "smoothgrad.samples" not in values and "smoothgrad.noise" not in values
    texts = sorted(n.detail for n in notices if n.kind == "param")
    assert texts == ["smoothgrad.noise: noise takes a number from 0 to 0.5; the default, "
                     "0.15, is used",
                     "smoothgrad.samples: samples takes a whole number from 1 to 100; the "
                     "default, 25, is used"]
    assert all("\n" not in text for text in texts)

