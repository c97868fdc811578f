"""Walk an untrusted HDF5 file's structure without reading its arrays.

Shared by the ``model.weights.h5`` inside a ``.keras`` archive and by weights
``.h5`` uploads for registered models. The walk only reads metadata (and
attributes whose declared size is bounded); every dataset's shape and dtype
is checked *before* anything could read it, and:

* every group, dataset, attribute and attribute element counts towards
  :attr:`~saliency_core.safety.limits.Limits.max_hdf5_objects`, checked before
  a group's members or an object's attributes are listed;
* the declared bytes of all datasets (each link counts, so one dataset linked
  many times counts many times) are bounded by ``max_hdf5_dataset_bytes``;
* in the legacy layout (``layer_names`` / ``weight_names`` attributes) the
  bytes Keras would read, repeats included, are bounded the same way;
* external links, soft links, external storage and virtual datasets are
  refused: a weights file never needs them, and they can reach other files.

The walk can still hang inside the HDF5 library on a corrupted file, so it
runs in the isolated child process (:mod:`saliency_core.safety.isolation`).
"""

from __future__ import annotations

import math
import posixpath
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import h5py
import numpy as np

from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.limits import MIB, Limits, format_bytes

_NUMERIC_KINDS = "fiub"


class WeightsMismatchError(UnsafeUploadError):
    """The file's arrays are not the ones the model needs (an ordinary misfit)."""


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset as declared in the file (nothing read).

    Attributes:
        path: absolute HDF5 path of the link that reached it.
        shape: declared shape.
        dtype: numpy dtype string, e.g. ``"<f4"``.
        nbytes: declared size in bytes.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int


@dataclass
class Hdf5Report:
    """What the walk found.

    Attributes:
        datasets: every dataset reached, one entry per link.
        objects: groups, datasets, attributes and attribute elements counted.
        total_bytes: declared bytes of all datasets (per link).
        legacy: whether the file uses the legacy ``layer_names`` layout.
        legacy_read_bytes: bytes the legacy loader would read, repeats included.
    """

    datasets: list[DatasetInfo] = field(default_factory=list)
    objects: int = 0
    total_bytes: int = 0
    legacy: bool = False
    legacy_read_bytes: int = 0


class _Walker:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.report = Hdf5Report()
        self.strings: dict[tuple[str, str], list[str]] = {}

    def count(self, amount: int) -> None:
        self.report.objects += amount
        if self.report.objects > self.limits.max_hdf5_objects:
            raise UnsafeUploadError(
                f"The HDF5 file holds more than {self.limits.max_hdf5_objects:,} objects "
                "(groups, arrays and names), which is refused to protect the server.")

    def check_attributes(self, obj, path: str) -> None:
        count = h5py.h5a.get_num_attrs(obj.id)
        self.count(count)
        for index in range(count):
            attr = h5py.h5a.open(obj.id, index=index)
            name = attr.get_name().decode("utf-8", "replace")
            space = attr.get_space()
            if space.get_simple_extent_type() == h5py.h5s.NULL:
                continue
            points = int(space.get_simple_extent_npoints())
            self.count(points)
            type_id = attr.get_type()
            size = int(type_id.get_size()) * points
            if size > self.limits.max_hdf5_attribute_bytes:
                raise UnsafeUploadError(
                    f"An HDF5 attribute declares {format_bytes(size)}, above the limit of "
                    f"{format_bytes(self.limits.max_hdf5_attribute_bytes)}.")
            # Read the (bounded) value: Keras reads attributes, and a corrupted
            # heap must fail or hang here, inside the isolated walk.
            value = obj.attrs[name]
            if name in ("layer_names", "weight_names"):
                self.strings[(path, name)] = _as_strings(value)

    def check_dataset(self, dataset: h5py.Dataset, path: str) -> None:
        plist = dataset.id.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL:
            raise UnsafeUploadError("The HDF5 file holds a virtual dataset, which can read "
                                    "other files; weights files never need one.")
        if plist.get_external_count() > 0:
            raise UnsafeUploadError("The HDF5 file stores data in external files, which "
                                    "weights files never do.")
        dtype = dataset.dtype
        if (dtype.kind not in _NUMERIC_KINDS or dtype.itemsize > 16 or dtype.fields
                or h5py.check_vlen_dtype(dtype) is not None or dtype.subdtype is not None):
            raise UnsafeUploadError("The HDF5 file holds an array that is not plain numbers; "
                                    "weights are numbers only.")
        shape = dataset.shape if dataset.shape is not None else ()
        nbytes = math.prod(shape) * dtype.itemsize
        chunks = dataset.chunks
        if chunks is not None:
            chunk_bytes = math.prod(chunks) * dtype.itemsize
            if chunk_bytes > max(nbytes, MIB):
                raise UnsafeUploadError("An HDF5 array declares storage blocks larger than "
                                        "the array itself, which is refused.")
        self.report.total_bytes += nbytes
        if self.report.total_bytes > self.limits.max_hdf5_dataset_bytes:
            raise UnsafeUploadError(
                f"The HDF5 file declares more than "
                f"{format_bytes(self.limits.max_hdf5_dataset_bytes)} of arrays (one alone "
                f"declares {format_bytes(nbytes)}), which is refused to protect the server.")
        self.report.datasets.append(DatasetInfo(path, tuple(int(s) for s in shape),
                                                dtype.str, nbytes))

    def walk(self, root: h5py.Group) -> None:
        stack: list[tuple[h5py.Group, str]] = [(root, "/")]
        self.count(1)
        self.check_attributes(root, "/")
        while stack:
            group, path = stack.pop()
            members = group.id.get_num_objs()
            if self.report.objects + members > self.limits.max_hdf5_objects:
                self.count(members)
            for raw in group.id.__iter__():
                name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise UnsafeUploadError("The HDF5 file links to another file, which is "
                                            "refused.")
                if isinstance(link, h5py.SoftLink):
                    raise UnsafeUploadError("The HDF5 file holds soft links, which weights "
                                            "files never use.")
                child_path = posixpath.join(path, name)
                obj = group[name]
                self.count(1)
                self.check_attributes(obj, child_path)
                if isinstance(obj, h5py.Group):
                    stack.append((obj, child_path))
                elif isinstance(obj, h5py.Dataset):
                    self.check_dataset(obj, child_path)

    def check_legacy(self, handle: h5py.File) -> None:
        root = "/model_weights" if ("/model_weights", "layer_names") in self.strings else "/"
        layer_names = self.strings.get((root, "layer_names"))
        if layer_names is None:
            return
        self.report.legacy = True
        sizes = {info.path: info.nbytes for info in self.report.datasets}
        pairs = 0
        for layer in layer_names:
            layer_path = posixpath.normpath(posixpath.join(root, layer))
            weights = self.strings.get((layer_path, "weight_names"), [])
            pairs += len(weights) + 1
            if pairs > self.limits.max_hdf5_objects:
                raise UnsafeUploadError(
                    f"The weights file names more than {self.limits.max_hdf5_objects:,} "
                    "layers and weights, which is refused.")
            for weight in weights:
                target = posixpath.normpath(posixpath.join(layer_path, weight))
                self.report.legacy_read_bytes += sizes.get(target, 0)
            if self.report.legacy_read_bytes > self.limits.max_hdf5_dataset_bytes:
                raise UnsafeUploadError(
                    "The weights file names its arrays so that loading it would read more "
                    f"than {format_bytes(self.limits.max_hdf5_dataset_bytes)} (arrays named "
                    "again and again), which is refused to protect the server.")


def _as_strings(value: object) -> list[str]:
    items = np.atleast_1d(np.asarray(value, dtype=object)).ravel().tolist()
    return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            for item in items]


def walk_hdf5(path: str, limits: Limits) -> Hdf5Report:
    """Walk an HDF5 file's structure under ``limits``; no array data is read.

    Args:
        path: the file (a private copy of the upload).
        limits: the limits in force.

    Returns:
        The :class:`Hdf5Report`.

    Raises:
        UnsafeUploadError: not an HDF5 file, or any limit or rule is broken.
    """
    try:
        handle = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise UnsafeUploadError("The file is not an HDF5 (.h5) file, or it is damaged.") from exc
    try:
        walker = _Walker(limits)
        try:
            walker.walk(handle)
            walker.check_legacy(handle)
        except UnsafeUploadError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise UnsafeUploadError("The HDF5 file is damaged and cannot be read "
                                    "safely.") from exc
        return walker.report
    finally:
        handle.close()


def check_expected_shapes(report: Hdf5Report, expected: Iterable[tuple[int, ...]],
                          model_name: str) -> None:
    """Refuse a file whose arrays cannot be the weights of a model with ``expected`` shapes.

    Every expected shape must be declared (as many times as the model needs
    it); the bytes a load would read must stay within four times what the
    model needs (room for float64 files and a saved optimizer's state).

    Args:
        report: the walk of the file.
        expected: the shapes of the built model's weights.
        model_name: shown in the message.

    Raises:
        WeightsMismatchError: a shape the model needs is missing.
        UnsafeUploadError: the file declares far more data than the model needs.
    """
    expected = [tuple(int(s) for s in shape) for shape in expected]
    declared = Counter(info.shape for info in report.datasets)
    missing = Counter(expected) - declared
    if missing:
        shape, _count = missing.most_common(1)[0]
        raise WeightsMismatchError(
            f"The file does not hold the weights {model_name} needs: {sum(missing.values())} "
            f"of its {len(expected)} arrays are missing, for example one of shape {shape}.")
    needed = sum(math.prod(shape) * 4 for shape in expected)
    read = max(report.total_bytes, report.legacy_read_bytes)
    if read > 4 * needed + 16 * MIB:
        raise UnsafeUploadError(
            f"The file declares {format_bytes(read)} of arrays, but {model_name} needs only "
            f"{format_bytes(needed)}; it is refused to protect the server.")
