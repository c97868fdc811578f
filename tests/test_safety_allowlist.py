"""Issue 15: an uploaded model may only name Keras built-ins (allowlist)."""

import json

import keras
import numpy as np
import pytest
import safety_builders as build

from saliency_core.models.custom import CustomModelError, load_custom_model
from saliency_core.safety import allowlist
from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.keras_archive import inspect_keras_archive
from saliency_core.safety.limits import Limits

NOT_ACTIVATIONS = {"get", "serialize", "deserialize"}


def builtin_activations() -> set[str]:
    return {name for name, value in vars(keras.activations).items()
            if not name.startswith("_") and callable(value) and name not in NOT_ACTIVATIONS}


def function(module: str, name: str) -> dict:
    return {"module": module, "class_name": "function", "config": name,
            "registered_name": None}


def with_head_activation(data: bytes, activation) -> bytes:
    def edit(config):
        build.layer(config, "Dense")["config"]["activation"] = activation

    return build.edit_config(data, edit)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> bytes:
    return build.small_model_bytes(tmp_path_factory.mktemp("allow"))


def test_set_epsilon_model_is_refused_and_epsilon_is_unchanged(small_model):
    before = keras.config.epsilon()
    data = with_head_activation(small_model, function("keras.config", "set_epsilon"))
    with pytest.raises(CustomModelError, match="`set_epsilon` from `keras.config`"):
        load_custom_model(data)
    assert keras.config.epsilon() == before


@pytest.mark.parametrize("module, name", [
    ("keras.config", "set_floatx"), ("keras.config", "set_image_data_format"),
    ("keras.config", "set_backend"), ("keras.utils", "plot_model"),
    ("keras.activations", "set_epsilon"), ("builtins", "print"), ("os", "system"),
])
def test_functions_outside_the_activation_list_are_refused_by_name(small_model, module, name):
    data = with_head_activation(small_model, function(module, name))
    with pytest.raises(UnsafeUploadError, match=f"function `{name}`"):
        inspect_keras_archive(data, Limits())


@pytest.mark.parametrize("edit, phrase", [
    (lambda c: build.layer(c, "Dense").update(module="keras.utils"), "class `Dense`"),
    (lambda c: build.layer(c, "Dense").update(class_name="TFSMLayer"), "Python code"),
    (lambda c: build.layer(c, "Dense").update(class_name="StringLookup"), "`StringLookup`"),
    (lambda c: build.layer(c, "Dense").update(registered_name="my>Dense"), "custom object"),
    (lambda c: build.layer(c, "Dense")["config"].update(
        kernel_initializer={"module": "keras.config", "class_name": "GlorotUniform",
                            "config": {}}), "class `GlorotUniform` from `keras.config`"),
    (lambda c: build.layer(c, "Dense")["config"].update(activation="set_epsilon"),
     "activation `set_epsilon`"),
    (lambda c: build.layer(c, "Dense")["config"].update(
        activation="![x](http://127.0.0.1:9/beacon.png)"), "uses an activation,"),
])
def test_other_names_outside_the_allowlist_are_refused(small_model, edit, phrase):
    with pytest.raises(UnsafeUploadError, match=phrase.replace("(", r"\(")):
        inspect_keras_archive(build.edit_config(small_model, edit), Limits())


def test_every_builtin_activation_is_on_the_list():
    assert builtin_activations() <= allowlist.ACTIVATIONS
    assert allowlist.ACTIVATIONS <= builtin_activations()  # no stale names either


def test_every_allowlisted_name_exists_in_keras():
    for family, module in (("layers", keras.layers), ("initializers", keras.initializers),
                           ("regularizers", keras.regularizers),
                           ("constraints", keras.constraints),
                           ("dtype_policies", keras.dtype_policies)):
        missing = {name for name in allowlist.FAMILIES[family] if not hasattr(module, name)}
        assert not missing, (family, missing)
    assert not allowlist.LAYERS & allowlist.CODE_LAYERS


def works_in_plain_keras(name: str) -> bool:
    """Whether a Dense layer with this activation can predict at all, without this app."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation=name),
                              keras.layers.Dense(2)])
    try:
        model(np.zeros((1, 3), "float32"))
    except (TypeError, ValueError):
        return False
    return True


def test_every_builtin_activation_loads_in_a_model(tmp_path):
    names = sorted(builtin_activations())
    usable = [name for name in names if works_in_plain_keras(name)]
    assert len(usable) >= len(names) - 2  # glu (halves the width) and threshold (needs args)
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    branches = [keras.layers.Dense(4, activation=name)(pooled) for name in usable]
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Concatenate()(branches)))
    path = tmp_path / "activations.keras"
    model.save(path)
    data = path.read_bytes()
    loaded = load_custom_model(data)
    assert len(loaded.model.layers) == len(model.layers)
    # every built-in, usable or not, passes the allowlist by name and in function form
    for name in names:
        for form in (name, function("keras.activations", name)):
            inspect_keras_archive(with_head_activation(data, form), Limits())


def test_the_applications_models_pass_the_preflight(tmp_path):
    for factory in ("MobileNetV2", "EfficientNetB0"):
        model = getattr(keras.applications, factory)(weights=None)
        path = tmp_path / f"{factory}.keras"
        model.save(path)
        report = inspect_keras_archive(path.read_bytes(), Limits())
        assert report.input_shapes == [(224, 224, 3)]
        assert 0.5 * model.count_params() < report.estimated_parameters \
            <= 1.2 * model.count_params(), (factory, report.estimated_parameters)


def test_compile_config_is_not_walked(small_model):
    def edit(config):
        config["compile_config"] = {"loss": function("keras.losses", "mean_squared_error")}

    inspect_keras_archive(build.edit_config(small_model, edit), Limits())
    json.dumps(allowlist.DTYPES and sorted(allowlist.DTYPES))
