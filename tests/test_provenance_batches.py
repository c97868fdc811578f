"""Provenance records the batch size that shaped the floats, and reproduction uses it.

On a CPU, a model call's float results can differ in the last bits with the number of
images in the call, and Integrated Gradients sends its path points in chunks whose size
follows the free memory (``saliency_core.batching``). A record made on one machine must
reproduce bit for bit on another whose free memory gives another bound: here, a second
Python process whose measured free memory is set so its bound differs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from saliency_core.audit.provenance import make_provenance, reproduce_values
from saliency_core.batching import split_evenly
from saliency_core.methods import Target
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.pipeline import explain
from saliency_core.tf_adapter import KerasClassifier

SIZE, NAMES = 24, ("a", "b", "c")
IG = {"steps": 40, "grid": "uniform"}  # 41 path points: chunks of 14, 14 and 13 at 16


def small_mobilenet() -> keras.Model:
    """MobileNetV2 at width 0.35 and 96 px with random weights (nothing downloaded): small,
    but deep enough that CPU results differ in the last bits between calls of 16 and of 5
    images (the small CNN below gives equal bits at any call size)."""
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35,
                                          classes=3, classifier_activation=None)


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(11)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def record_for(classifier: KerasClassifier, x: np.ndarray, values: np.ndarray) -> dict:
    return make_provenance(
        model_key="file", model_file="tiny.keras", weights_sha256=None, preprocessing="tf",
        classifier=classifier, image_name="x.png", image_sha256="0" * 64,
        image_size=x.shape[:2], fit="crop",
        probabilities=classifier.probabilities(x[None])[0], target=Target(1),
        method="integrated_gradients", params=dict(IG), values=values, seconds=0.0)


CHILD = textwrap.dedent('''
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import keras
    from saliency_core import batching
    from saliency_core.models.preprocessing import get_preprocessor
    from saliency_core.tf_adapter import KerasClassifier, activation_bytes
    from saliency_core.audit.provenance import reproduce_values
    from saliency_core.pipeline import explain
    from saliency_core.methods import Target

    folder = sys.argv[2]
    model = keras.models.load_model(f"{folder}/tiny.keras")
    # this process "has" the free memory for 5 images per call, not 16
    per_image = batching.GRADIENT_MEMORY_FACTOR * activation_bytes(model)
    batching.available_memory_bytes = lambda: int(5.5 * per_image / batching.MEMORY_SHARE)
    classifier = KerasClassifier(model, get_preprocessor("tf"), ("a", "b", "c"))
    record = json.load(open(f"{folder}/record.json"))
    x = np.load(f"{folder}/x.npy")
    np.save(f"{folder}/reproduced.npy", reproduce_values(record, classifier, x))
    params = {k: v for k, v in record["method"]["params"].items() if k != "batch_size"}
    plain = explain(classifier, x, Target(1), "integrated_gradients", params)
    np.save(f"{folder}/plain.npy", plain.attribution.values)
    print(classifier.batch_size)
''')


@pytest.mark.slow
def test_an_ig_map_at_batch_16_reproduces_bit_for_bit_where_free_memory_differs(tmp_path):
    from conftest import ROOT

    model = small_mobilenet()
    model.save(tmp_path / "tiny.keras")
    classifier = KerasClassifier(model, get_preprocessor("tf"), NAMES, batch_size=16)
    x = np.random.default_rng(4).uniform(0, 255, (96, 96, 3)).astype(np.float32)
    values = explain(classifier, x, Target(1), "integrated_gradients", dict(IG)).attribution.values
    record = json.loads(json.dumps(record_for(classifier, x, values)))  # as written to disk
    assert record["method"]["batch_size"] == 16
    assert record["method"]["params"]["batch_size"] == 16  # was None: the value used
    assert [b - a for a, b in split_evenly(41, 16)] == [14, 14, 13]
    (tmp_path / "record.json").write_text(json.dumps(record))
    np.save(tmp_path / "x.npy", x)

    child = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert int(child.stdout.split()[-1]) == 5  # that process's own bound is not 16
    reproduced = np.load(tmp_path / "reproduced.npy")
    assert reproduced.dtype == values.dtype and reproduced.tobytes() == values.tobytes()
    # the same process without the record's batch size computes it in chunks of 5, and
    # its floats differ in the last bits: what the record's batch size is for
    plain = np.load(tmp_path / "plain.npy")
    assert plain.tobytes() != values.tobytes()
    np.testing.assert_allclose(plain, values, rtol=1e-4, atol=1e-6 * np.abs(values).max())


def test_reproduction_calls_the_model_at_the_recorded_size():
    """In one process: a classifier whose bound is 5 reproduces a batch-16 record with
    calls of 14, 14 and 13 path points, as the record's machine made them."""
    model = tiny_model()
    original = KerasClassifier(model, get_preprocessor("tf"), NAMES, batch_size=16)
    x = np.random.default_rng(4).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    values = explain(original, x, Target(1), "integrated_gradients", dict(IG)).attribution.values
    record = record_for(original, x, values)
    small = KerasClassifier(model, get_preprocessor("tf"), NAMES, batch_size=5)
    calls = []
    run = small._gradient_fn  # noqa: SLF001 - the traced call every chunk goes through

    def counted(images, *args):
        calls.append(int(images.shape[0]))
        return run(images, *args)

    small._gradient_fn = counted  # noqa: SLF001
    again = reproduce_values(record, small, x)
    assert calls == [14, 14, 13]
    assert again.tobytes() == values.tobytes()
    assert small.batch_size == 5  # the shared classifier itself is not changed
    calls.clear()
    explain(small, x, Target(1), "integrated_gradients", dict(IG))
    assert max(calls) == 5
