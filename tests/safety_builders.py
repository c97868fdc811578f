"""Small generators of hostile files for the safety tests (nothing large is committed).

Each builder returns the file's bytes; the large sizes are only *declared*
(unwritten HDF5 chunks, repeated links, a compressible zip member), so every
file here is at most a few megabytes.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np

from conftest import ROOT

# ----------------------------------------------------------------------------- .keras


def small_model_bytes(tmp_path: Path, input_shape=(16, 16, 3)) -> bytes:
    """A valid tiny .keras classifier (Conv2D -> pooling -> Dense softmax)."""
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = tmp_path / "small.keras"
    model.save(path)
    return path.read_bytes()


def attention_model_bytes(tmp_path: Path, tokens: int = 8192, multi_head: bool = False,
                          width: int = 128) -> bytes:
    """A tiny .keras classifier whose attention layer builds a ``tokens x tokens`` matrix.

    The file is a few KB and its layer *outputs* are small (``tokens x 3``), but one
    gradient pass over 8192 tokens holds several 256 MB score matrices: only a real,
    measured pass shows it.
    """
    import keras

    height = tokens // width
    inputs = keras.Input((height, width, 3))
    x = keras.layers.Reshape((tokens, 3))(inputs)
    if multi_head:
        x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    else:
        x = keras.layers.Attention()([x, x])
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    path = tmp_path / f"attention-{tokens}-{int(multi_head)}.keras"
    model.save(path)
    return path.read_bytes()


def read_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    return buffer.getvalue()


def edit_config(data: bytes, edit) -> bytes:
    """``data`` with its config.json changed in place by ``edit(config)``."""
    members = read_members(data)
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    return write_archive(members)


def layer(config: dict, class_name: str) -> dict:
    """The first layer config of ``class_name`` in a Functional config."""
    return next(item for item in config["config"]["layers"] if item["class_name"] == class_name)


def huge_config_list_archive(total_bytes: int = 1 << 30) -> bytes:
    """A .keras whose config.json is a ~1 GB list of zeros (compresses to a few MB)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=1) as archive:
        with archive.open("config.json", "w", force_zip64=True) as member:
            member.write(b'{"module": "keras", "class_name": "Functional", "config": '
                         b'{"layers": [')
            chunk = b"0," * (2 << 20)
            for _ in range(total_bytes // len(chunk)):
                member.write(chunk)
            member.write(b"0]}}")
        archive.writestr("metadata.json", b"{}")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- HDF5


def h5_bytes(build, libver=None) -> bytes:
    """Bytes of an in-memory HDF5 file written by ``build(handle)``."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver=libver) as handle:
        build(handle)
    return buffer.getvalue()


def declared_dataset(group, name: str, elements: int) -> h5py.Dataset:
    """A float32 dataset declaring ``elements`` values, none written (file stays tiny)."""
    return group.create_dataset(name, shape=(elements,), dtype="float32",
                                chunks=(min(elements, 1 << 20),))


def new_layout_huge(elements: int = 975_000_000) -> bytes:
    """Keras 3 ``.weights.h5`` layout with one dataset declaring ``elements`` floats."""
    return h5_bytes(lambda f: declared_dataset(f.create_group("layers/dense/vars"), "0",
                                               elements))


def new_layout_repeated(links: int = 300, elements: int = 1 << 20) -> bytes:
    """Keras 3 layout where one 4 MB dataset is hard-linked ``links`` times."""
    def build(handle):
        first = declared_dataset(handle.create_group("layers/conv/vars"), "0", elements)
        for index in range(1, links):
            handle[f"layers/conv/vars/{index}"] = first

    return h5_bytes(build)


def legacy_huge(elements: int = 975_000_000) -> bytes:
    """Legacy (Keras 2) layout naming one layer whose kernel declares ``elements`` floats."""
    def build(handle):
        handle.attrs["layer_names"] = np.array([b"Conv1"])
        group = handle.create_group("Conv1")
        group.attrs["weight_names"] = np.array([b"Conv1/kernel:0"])
        declared_dataset(group.create_group("Conv1"), "kernel:0", elements)

    return h5_bytes(build)


def legacy_repeated(repeats: int = 300, elements: int = 1 << 20) -> bytes:
    """Legacy layout whose ``weight_names`` names one 4 MB dataset ``repeats`` times."""
    def build(handle):
        handle.attrs["layer_names"] = np.array([b"Conv1"])
        group = handle.create_group("Conv1")
        group.attrs["weight_names"] = np.array([b"Conv1/kernel:0"] * repeats)
        declared_dataset(group.create_group("Conv1"), "kernel:0", elements)

    return h5_bytes(build)


def many_layer_names(count: int = 5_000_000) -> bytes:
    """Legacy layout whose ``layer_names`` attribute lists ``count`` names (one 5 MB array)."""
    def build(handle):
        handle.attrs.create("layer_names", data=np.full(count, b"a", dtype="S1"))

    return h5_bytes(build, libver="latest")


def corrupted_global_heap() -> bytes:
    """A small legacy weights file whose global heap is corrupted by 2 bytes.

    Variable-length strings live in the HDF5 global heap; setting the two
    bytes at offset 23 of the heap collection (the end of the first object's
    header and the low byte of its size) to ``0xFFFF`` makes the HDF5 library
    loop forever when the attribute is read.
    """
    def build(handle):
        group = handle.create_group("dense")
        group.attrs["weight_names"] = ["dense/kernel:0", "dense/bias:0"]  # vlen strings
        handle.attrs["layer_names"] = ["dense"]
        handle.attrs["backend"] = "tensorflow"
        group.create_dataset("kernel:0", data=np.zeros((4, 3), "f4"))
        group.create_dataset("bias:0", data=np.zeros(3, "f4"))

    data = bytearray(h5_bytes(build))
    heap = data.find(b"GCOL")
    assert heap > 0, "no global heap collection in the file"
    data[heap + 23:heap + 25] = b"\xff\xff"
    return bytes(data)


# ----------------------------------------------------------------------------- images


def many_page_tiff(pages: int = 200_000) -> bytes:
    """A little-endian TIFF of ``pages`` 1x1 grey pages, every IFD sharing one strip."""
    entries = 8
    ifd_size = 2 + entries * 12 + 4
    strip = 8  # the one pixel, right after the header
    first = 10  # word-aligned after header + pixel
    header = struct.pack("<2sHI", b"II", 42, first) + b"\x80\x00"

    def ifd(next_offset: int) -> bytes:
        tags = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1),
                (262, 3, 1, 1), (273, 4, 1, strip), (278, 3, 1, 1), (279, 4, 1, 1)]
        body = b"".join(struct.pack("<HHII", tag, kind, count, value)
                        for tag, kind, count, value in tags)
        return struct.pack("<H", entries) + body + struct.pack("<I", next_offset)

    blocks = [ifd(first + (index + 1) * ifd_size if index + 1 < pages else 0)
              for index in range(pages)]
    return header + b"".join(blocks)


def jpeg_bytes(width: int, height: int, progressive: bool = False, seed: int = 0) -> bytes:
    """A noisy JPEG (noise compresses badly, so each scan carries real data)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, progressive=progressive)
    return buffer.getvalue()


def scan_bomb_jpeg(scans: int = 100_000, side: int = 16) -> bytes:
    """A progressive JPEG whose scans are repeated until it has ``scans`` of them.

    libjpeg only warns about a repeated scan and decodes it again: every scan is a
    pass over the whole image. With ``side=16`` and 100,000 scans the file is about
    3 MB.
    """
    data = jpeg_bytes(side, side, progressive=True)
    first = data.find(b"\xff\xda")
    body = data[first:-2]  # every scan of the image, up to (not including) EOI
    count = body.count(b"\xff\xda")
    return data[:-2] + body * max(0, scans // count - 1) + b"\xff\xd9"


def slow_progressive_jpeg(side: int = 2000, repeats: int = 30) -> bytes:
    """A large progressive JPEG with its scans repeated: seconds of decoding, few scans
    per repeat (for the decoding worker's time limit, with the scan cap raised)."""
    data = jpeg_bytes(side, side, progressive=True)
    first = data.find(b"\xff\xda")
    return data[:-2] + data[first:-2] * repeats + b"\xff\xd9"


def slow_scan_jpeg(scans: int = 30_000, width: int = 8000, height: int = 6000) -> bytes:
    """A flat progressive JPEG with one small AC scan repeated ``scans`` times.

    Each repeat is under 100 bytes but makes libjpeg walk every block of the image
    again: 30,000 of them (about 3 MB) hold a core for minutes.
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 130, 140)).save(
        buffer, "JPEG", quality=50, progressive=True, optimize=True)
    data = buffer.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    ends = starts[1:] + [len(data) - 2]
    smallest = min(zip(starts, ends, strict=True), key=lambda span: span[1] - span[0])
    scan = data[smallest[0]:smallest[1]]
    return data[:-2] + scan * scans + b"\xff\xd9"


def app_marker_jpeg(markers: int = 12_000_000) -> bytes:
    """A small JPEG with ``markers`` empty APP1 segments before its frame (~4 bytes each)."""
    data = jpeg_bytes(64, 64)
    return data[:2] + b"\xff\xe1\x00\x02" * markers + data[2:]


def thin_png(width: int = 40_000_000) -> bytes:
    """A 1-pixel-high greyscale PNG, ``width`` pixels wide (about 40 KB for 40 million)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, 1)).save(buffer, "PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- measuring

_MEASURE = r"""
import json, logging, os, sys, time
sys.path.insert(0, sys.argv[1])
from saliency_core.imaging import ImageError, load_image
from saliency_core.models.custom import CustomModelError, load_custom_model
from saliency_core.models.registry import WeightsUnavailableError
from saliency_core.models.registry import check_weights_upload

checks = []


class Collect(logging.Handler):
    def emit(self, record):
        checks.append(getattr(record, "checker_peak_mb", 0.0))


logger = logging.getLogger("saliency_core.safety.isolation")
logger.addHandler(Collect())
logger.setLevel(logging.INFO)


def peak_kb():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM"))


for line in sys.stdin:
    request = json.loads(line)
    os.environ["SALIENCY_STUDIO_CONFIG"] = request["config"]
    with open(request["path"], "rb") as handle:
        data = handle.read()
    checks.clear()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak to the current resident size
    before = peak_kb()
    start = time.monotonic()
    try:
        if request["target"] == "model":
            load_custom_model(data)
        elif request["target"] == "weights":
            check_weights_upload(request["key"], data)
        else:
            load_image(data)
        outcome = {"refused": False, "message": ""}
    except (CustomModelError, WeightsUnavailableError, ImageError) as exc:
        outcome = {"refused": True, "message": str(exc)}
    outcome["seconds"] = time.monotonic() - start
    outcome["peak_increase_mb"] = (peak_kb() - before) / 1024
    outcome["checker_peak_mb"] = max(checks, default=0.0)
    outcome["checks"] = len(checks)
    del data
    print("RESULT " + json.dumps(outcome), flush=True)
"""


class Measurer:
    """A separate process that runs uploads through the app's code, one at a time.

    Before each upload it resets its peak resident memory (``VmHWM``, via
    ``/proc/self/clear_refs``), so each result is that upload's own peak
    increase; TensorFlow is imported once for all of them.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _MEASURE, str(ROOT)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=folder)

    def measure(self, target: str, data: bytes, key: str = "", limits_toml: str = "") -> dict:
        """Run one upload; see the module docstring of tests/test_safety_rows.py.

        Args:
            target: ``"model"`` (own .keras), ``"weights"`` (registered model) or ``"image"``.
            data: the file.
            key: the registered model for ``"weights"``.
            limits_toml: lines for the ``[limits]`` table of the config file.

        Returns:
            ``refused``, ``message``, ``seconds`` (the call only), ``peak_increase_mb``
            (rise of the process's peak resident memory during the call),
            ``checker_peak_mb`` (peak resident memory the isolated checking
            process reported, 0 when none ran) and ``checks`` (how many ran).
        """
        self.count += 1
        path = self.folder / f"upload-{self.count}.bin"
        path.write_bytes(data)
        config = self.folder / f"studio-{self.count}.toml"
        config.write_text("[limits]\n" + limits_toml + "\n")
        request = {"path": str(path), "config": str(config), "target": target, "key": key}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        while True:
            line = self.process.stdout.readline()
            assert line, "the measuring process stopped"
            if line.startswith("RESULT "):
                path.unlink()
                return json.loads(line[len("RESULT "):])

    def close(self) -> None:
        """Stop the measuring process."""
        self.process.stdin.close()
        self.process.wait(30)
