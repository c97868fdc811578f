"""Issue 14, one test per row: each hostile upload is refused clearly and cheaply.

Every file is built here by a small generator (tests/safety_builders.py). Each
upload goes through the app's own entry point (own model, weights upload for a
registered model, image) in a fresh process, which measures the call's time
and the rise of its peak resident memory; the isolated checking process's
peak is reported and bounded too where one runs.
"""

import json

import pytest
import safety_builders as build


@pytest.fixture(scope="module")
def measurer(tmp_path_factory):
    meter = build.Measurer(tmp_path_factory.mktemp("measure"))
    yield meter
    meter.close()


MAX_SECONDS = 10
MAX_PEAK_MB = 500
ROWS: dict[str, dict] = {}


def check(result: dict, phrase: str, row: str) -> None:
    ROWS[row] = result
    print(f"\n{row}: {json.dumps(result)}")
    assert result["refused"], result
    assert phrase in result["message"], result["message"]
    assert "Traceback" not in result["message"] and "(" not in result["message"][:1]
    assert result["seconds"] < MAX_SECONDS, result
    assert result["peak_increase_mb"] < MAX_PEAK_MB, result
    assert result["checker_peak_mb"] < MAX_PEAK_MB, result


def replace_weights(model: bytes, weights: bytes) -> bytes:
    members = build.read_members(model)
    members["model.weights.h5"] = weights
    return build.write_archive(members)


def test_keras_whose_weights_declare_975m_floats(tmp_path, measurer):
    data = replace_weights(build.small_model_bytes(tmp_path), build.new_layout_huge())
    assert len(data) < 1_000_000
    result = measurer.measure("model", data)
    check(result, "declares more than 1 GB of arrays", "975M-float dataset in model.weights.h5")


def test_keras_whose_config_holds_a_1_gb_list(tmp_path, measurer):
    data = build.huge_config_list_archive()
    assert len(data) < 10_000_000
    result = measurer.measure("model", data)
    check(result, "config.json is 1 GB", "1 GB list in config.json")


@pytest.mark.parametrize("case", ["huge units", "numpy dtype bomb", "dtype policy bomb"])
def test_keras_with_enormous_units_or_a_numpy_kwargs_bomb(tmp_path, measurer, case):
    def edit(config):
        dense = build.layer(config, "Dense")
        if case == "huge units":
            dense["config"]["units"] = 10**12
        elif case == "numpy dtype bomb":
            dense["config"]["bias_initializer"] = {
                "module": "keras.initializers", "class_name": "Constant",
                "config": {"value": {"class_name": "__numpy__", "config": {
                    "value": 0, "dtype": "(100000,100000)f8"}}}, "registered_name": None}
        else:
            dense["config"]["dtype"] = {"module": "keras", "class_name": "DTypePolicy",
                                        "config": {"name": "(100000,100000)f8"},
                                        "registered_name": None}

    data = build.edit_config(build.small_model_bytes(tmp_path), edit)
    result = measurer.measure("model", data)
    phrase = "units = 1,000,000,000,000" if case == "huge units" else "uses a data type"
    check(result, phrase, f"Dense {case}")


def test_keras_with_a_40000_pixel_input(tmp_path, measurer):
    def edit(config):
        build.layer(config, "InputLayer")["config"]["batch_shape"] = [None, 40000, 40000, 3]

    data = build.edit_config(build.small_model_bytes(tmp_path), edit)
    result = measurer.measure("model", data)
    check(result, "40000 x 40000 x 3; the largest accepted input is 1024 x 1024",
          "40000x40000x3 input")


@pytest.mark.parametrize("layout", ["legacy huge", "legacy repeated", "new huge",
                                    "new repeated"])
def test_registered_model_weights_with_huge_or_repeated_datasets(tmp_path, measurer, layout):
    maker = {"legacy huge": build.legacy_huge, "legacy repeated": build.legacy_repeated,
             "new huge": build.new_layout_huge, "new repeated": build.new_layout_repeated}
    data = maker[layout]()
    assert len(data) < 10_000_000
    result = measurer.measure("weights", data, key="mobilenet_v2")
    phrase = "names its arrays so that loading it would read more than 1 GB" \
        if layout == "legacy repeated" else "declares more than 1 GB of arrays"
    check(result, phrase, f"weights .h5 {layout}")


def test_weights_with_5_million_layer_names(tmp_path, measurer):
    data = build.many_layer_names()
    result = measurer.measure("weights", data, key="mobilenet_v2")
    check(result, "more than 100,000 objects", "5 million layer names")


@pytest.mark.parametrize("container", ["weights .h5", ".keras"])
def test_corrupted_global_heap_hits_the_isolation_timeout(tmp_path, measurer, container):
    heap = build.corrupted_global_heap()
    if container == ".keras":
        data = replace_weights(build.small_model_bytes(tmp_path), heap)
        target = "model"
    else:
        data, target = heap, "weights"
    result = measurer.measure(target, data, key="mobilenet_v2",
                                   limits_toml="isolation_walk_timeout_seconds = 3")
    check(result, "took longer than 3 s (reading the file's structure)",
          f"global heap corrupted by 2 bytes ({container})")
    assert result["seconds"] >= 3  # it was the timeout, not an early failure


def test_tiff_with_200000_pages(tmp_path, measurer):
    data = build.many_page_tiff(200_000)
    result = measurer.measure("image", data)
    check(result, "more than 1,000 pages", "TIFF with 200,000 pages")
    assert result["checks"] == 0  # refused before any decoding
