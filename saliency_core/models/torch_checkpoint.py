"""Read a legacy (non-zip) PyTorch ``state_dict`` checkpoint without torch.

The legacy format written by ``torch.save(..., _use_new_zipfile_serialization=False)``
is a sequence of pickles followed by raw tensor bytes:

1. the magic number ``0x1950A86A20F9469CFC6C``;
2. the protocol version (``1001``);
3. a ``sys_info`` dict (byte order, type sizes);
4. the object itself, whose tensors refer to storages through persistent ids
   ``("storage", StorageType, key, location, numel, view_metadata)``;
5. the list of storage keys, in the order their bytes follow;
6. for each key: a little-endian int64 element count, then the raw elements.

Pickle can run arbitrary code, so every pickle here goes through
:class:`RestrictedUnpickler`, which resolves only ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the plain ``torch.*Storage`` types, all of
them mapped to inert local stand-ins. Anything else (``os.system``,
``builtins.eval``, any other class) raises :class:`CheckpointError` before it can
be called. Plain ``pickle.load`` is never used.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch state dict this reader accepts."""


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """Inert stand-in for ``torch._utils._rebuild_tensor_v2``: records the view."""
    if not isinstance(storage, _StorageRef):
        raise CheckpointError("tensor does not refer to a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only what a plain tensor ``state_dict`` needs."""

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError("unknown storage type")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("storage views are not supported")
        return _StorageRef(str(key), _STORAGE_DTYPES[storage_type.name], int(numel))


def _load_pickle(stream: BinaryIO):
    try:
        return RestrictedUnpickler(stream).load()
    except CheckpointError:
        raise
    except Exception as exc:  # malformed pickle data of any kind
        raise CheckpointError(f"not a readable checkpoint: {exc}") from exc


def read_state_dict(source: str | Path | bytes) -> dict[str, np.ndarray]:
    """Read a legacy PyTorch checkpoint holding a flat ``{name: tensor}`` dict.

    Args:
        source: path to the ``.pth`` file, or its bytes.

    Returns:
        An ordered ``{name: np.ndarray}`` dict; arrays keep the tensors' shapes
        (e.g. conv kernels stay ``(out, in, kh, kw)``).

    Raises:
        CheckpointError: the file is not such a checkpoint, or it asks to
            resolve anything beyond tensors and ``OrderedDict``.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    stream = io.BytesIO(data)
    if _load_pickle(stream) != MAGIC_NUMBER:
        raise CheckpointError("wrong magic number: not a legacy PyTorch checkpoint")
    if _load_pickle(stream) != PROTOCOL_VERSION:
        raise CheckpointError("unsupported checkpoint protocol version")
    sys_info = _load_pickle(stream)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise CheckpointError("only little-endian checkpoints are supported")
    obj = _load_pickle(stream)
    keys = _load_pickle(stream)
    if not isinstance(obj, dict) or not isinstance(keys, list):
        raise CheckpointError("checkpoint does not hold a state dict")

    refs: dict[str, _StorageRef] = {}
    for value in obj.values():
        if isinstance(value, _TensorRef):
            refs[value.storage.key] = value.storage
    buffers: dict[str, np.ndarray] = {}
    for key in keys:
        key = str(key)
        header = stream.read(8)
        if len(header) != 8:
            raise CheckpointError("checkpoint is truncated")
        (numel,) = struct.unpack("<q", header)
        ref = refs.get(key)
        if ref is None or numel != ref.numel:
            raise CheckpointError(f"storage {key} does not match its tensors")
        raw = stream.read(numel * ref.dtype.itemsize)
        if len(raw) != numel * ref.dtype.itemsize:
            raise CheckpointError("checkpoint is truncated")
        buffers[key] = np.frombuffer(raw, dtype=ref.dtype)

    state: dict[str, np.ndarray] = collections.OrderedDict()
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise CheckpointError(f"entry {name!r} is not a tensor")
        buf = buffers.get(value.storage.key)
        if buf is None:
            raise CheckpointError(f"entry {name!r} has no storage data")
        itemsize = buf.dtype.itemsize
        if len(value.shape) != len(value.stride):
            raise CheckpointError(f"entry {name!r} has a malformed shape")
        pairs = zip(value.shape, value.stride, strict=True)
        extent = value.offset + sum((n - 1) * s for n, s in pairs) + 1
        if any(n == 0 for n in value.shape):
            extent = value.offset
        if value.offset < 0 or extent > buf.size or any(s < 0 for s in value.stride):
            raise CheckpointError(f"entry {name!r} lies outside its storage")
        view = np.lib.stride_tricks.as_strided(
            buf[value.offset:],
            shape=value.shape,
            strides=tuple(s * itemsize for s in value.stride),
            writeable=False,
        )
        state[str(name)] = np.array(view)  # own, contiguous copy
    return state
