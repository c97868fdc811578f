"""Pre-flight inspection of an uploaded ``.keras`` archive, from its bytes.

Runs in the server before Keras sees the file, in bounded time and memory
(nothing is allocated from what the contents *declare*):

1. the zip: member count, names (no paths, only the members a model has),
   each member's declared unpacked size and the total;
2. ``config.json``: read with a size cap, its nesting depth measured before
   it is parsed, every list's length bounded;
3. the config walk: every object it names must be on the allowlists of
   :mod:`saliency_core.safety.allowlist`; inputs must be fixed and at most
   ``max_input_side``; layer widths are bounded; the parameter count is
   estimated from the layer configs and bounded.

The weights member (``model.weights.h5``) is walked later, in the isolated
child process (:func:`saliency_core.safety.isolation.check_keras_archive`),
because the HDF5 library itself can hang on a corrupted file.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np

from saliency_core.safety import allowlist
from saliency_core.safety.errors import UnsafeUploadError, quote_name
from saliency_core.safety.limits import Limits, format_bytes

CONFIG_MEMBER = "config.json"
METADATA_MEMBER = "metadata.json"
WEIGHTS_MEMBER = "model.weights.h5"
EXPECTED_MEMBERS = frozenset({CONFIG_MEMBER, METADATA_MEMBER, WEIGHTS_MEMBER})

CODE_MESSAGE = ("The model contains Python code (for example a Lambda layer), which is never "
                "run here for safety. Replace it with built-in Keras layers and save again.")

_WIDTH_KEYS = frozenset({"units", "filters", "output_dim", "key_dim", "value_dim", "num_heads",
                         "depth_multiplier", "num_query_heads", "num_key_value_heads"})
_SHAPE_KEYS = frozenset({"shape", "batch_shape", "batch_input_shape", "input_shape",
                         "target_shape", "output_shape", "build_input_shape", "kernel_size",
                         "pool_size", "size", "strides", "dilation_rate", "cropping",
                         "padding", "dims", "n"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]")


@dataclass
class ArchiveReport:
    """What the pre-flight found in an accepted archive.

    Attributes:
        input_shapes: every model input's ``(H, W, C)`` (or other non-batch shape).
        estimated_parameters: a lower-bound estimate from the layer configs.
        has_weights: whether the archive holds ``model.weights.h5``.
    """

    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    estimated_parameters: int = 0
    has_weights: bool = False


def measure_json_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` in a JSON text, without parsing it.

    Strings are removed first, so brackets inside them do not count; the
    count itself is a vectorised running sum (fast for megabytes of text).
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text)).encode("ascii")
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def _check_members(archive: zipfile.ZipFile, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > limits.max_zip_members:
        raise UnsafeUploadError(f"The archive holds {len(infos)} files; a .keras model holds "
                                f"3, and more than {limits.max_zip_members} are refused.")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        if (name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/")
                or re.match(r"^[A-Za-z]:", name) or "\x00" in name):
            raise UnsafeUploadError("The archive holds a file with a path outside it "
                                    "(path traversal), which is refused.")
        if name in members:
            raise UnsafeUploadError("The archive holds the same file twice, which is refused.")
        if info.flag_bits & 0x1:
            raise UnsafeUploadError("The archive is encrypted.")
        if name == CONFIG_MEMBER and info.file_size > limits.max_config_bytes:
            raise UnsafeUploadError(
                f"The model's config.json is {format_bytes(info.file_size)}; the limit is "
                f"{format_bytes(limits.max_config_bytes)}.")
        if info.file_size > limits.max_member_bytes:
            raise UnsafeUploadError(
                f"A file in the archive unpacks to {format_bytes(info.file_size)}, above the "
                f"limit of {format_bytes(limits.max_member_bytes)}.")
        total += info.file_size
        members[name] = info
    if total > limits.max_unpacked_bytes:
        raise UnsafeUploadError(f"The model unpacks to more than "
                                f"{format_bytes(limits.max_unpacked_bytes)}, which is refused.")
    if CONFIG_MEMBER not in members:
        raise UnsafeUploadError("The archive has no config.json: it is not a .keras model.")
    unexpected = [name for name in members if name not in EXPECTED_MEMBERS]
    if unexpected:
        raise UnsafeUploadError(
            f"The archive holds {len(unexpected)} file(s) a .keras image classifier never "
            "has; only config.json, metadata.json and model.weights.h5 are accepted.")
    return members


def read_config(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> dict:
    """Read and parse ``config.json`` within the size and depth limits.

    Raises:
        UnsafeUploadError: too large, too deep, not JSON, or not an object.
    """
    if info.file_size > limits.max_config_bytes:
        raise UnsafeUploadError(
            f"The model's config.json is {format_bytes(info.file_size)}; the limit is "
            f"{format_bytes(limits.max_config_bytes)}.")
    try:
        with archive.open(info) as member:
            raw = member.read(limits.max_config_bytes + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise UnsafeUploadError("The model's config.json cannot be unpacked: the archive "
                                "is damaged.") from exc
    if len(raw) > limits.max_config_bytes:
        raise UnsafeUploadError("The model's config.json is larger than it declares, "
                                "which is refused.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeUploadError("The model's config.json is not UTF-8 text.") from exc
    depth = measure_json_depth(text)
    if depth > limits.max_config_depth:
        raise UnsafeUploadError(
            f"The model's config.json is nested {depth} levels deep; more than "
            f"{limits.max_config_depth} is refused.")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnsafeUploadError("The model's config.json is not valid JSON.") from exc
    if not isinstance(config, dict):
        raise UnsafeUploadError("The model's config.json does not describe a model.")
    return config


def _last_dim(shape: object) -> int | None:
    if isinstance(shape, list) and shape and isinstance(shape[-1], int):
        return shape[-1]
    return None


def _input_dim(node: dict) -> int | None:
    build = node.get("build_config")
    if isinstance(build, dict):
        dim = _last_dim(build.get("input_shape"))
        if dim is not None:
            return dim
    for call in node.get("inbound_nodes") or []:
        args = call.get("args") if isinstance(call, dict) else None
        if isinstance(args, list) and args and isinstance(args[0], dict):
            inner = args[0].get("config")
            if args[0].get("class_name") == "__keras_tensor__" and isinstance(inner, dict):
                return _last_dim(inner.get("shape"))
    return None


def _ints(value: object) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, int) and not isinstance(item, bool)]
    return []


def estimate_layer_parameters(class_name: str, config: dict, in_dim: int | None) -> int:
    """A conservative (low) estimate of one layer's parameter count from its config.

    ``in_dim`` is the layer's input channels when the config reveals them
    (``build_config`` or the traced input); an unknown input counts as 1.
    """
    known = max(in_dim or 1, 1)

    def number(key: str, default: int = 1) -> int:
        values = _ints(config.get(key, default))
        return max(values[0], 0) if values else default

    kernel = math.prod(max(v, 1) for v in _ints(config.get("kernel_size", 1))) or 1
    base = class_name.replace("Convolution", "Conv")
    if base in ("Dense",):
        units = number("units")
        return units * known + units
    if base in ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                "Conv3DTranspose"):
        filters = number("filters")
        return kernel * (known // max(number("groups"), 1) or 1) * filters + filters
    if base in ("DepthwiseConv1D", "DepthwiseConv2D"):
        return kernel * known * number("depth_multiplier") + known * number("depth_multiplier")
    if base in ("SeparableConv1D", "SeparableConv2D"):
        multiplier, filters = number("depth_multiplier"), number("filters")
        return kernel * known * multiplier + known * multiplier * filters + filters
    if base == "Embedding":
        return number("input_dim") * number("output_dim")
    if base in ("BatchNormalization", "LayerNormalization", "GroupNormalization",
                "RMSNormalization", "Normalization"):
        return 4 * known
    if base in ("LSTM", "GRU", "SimpleRNN", "LSTMCell", "GRUCell", "SimpleRNNCell"):
        units = number("units")
        gates = {"LSTM": 4, "LSTMCell": 4, "GRU": 3, "GRUCell": 3}.get(base, 1)
        return gates * units * (known + units + 1)
    if base == "MultiHeadAttention":
        heads, key_dim = number("num_heads"), number("key_dim")
        return 4 * heads * key_dim * known
    return 0


class _ConfigWalker:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.report = ArchiveReport()

    def refuse_name(self, kind: str, module: object, name: object) -> None:
        shown, origin = quote_name(name), quote_name(module)
        article = "an" if kind[0] in "aeiou" else "a"
        what = f"the {kind} {shown}" if shown else f"{article} {kind}"
        where = f" from {origin}" if origin else ""
        raise UnsafeUploadError(
            f"The model uses {what}{where}, which is not among the built-in Keras layers, "
            "functions and data types this app accepts; it is refused for the safety of "
            "every user.")

    def check_string(self, key: str, value: str) -> None:
        if key.endswith("activation"):
            if value not in allowlist.ACTIVATIONS:
                self.refuse_name("activation", None, value)
        elif key.endswith("_initializer"):
            if value not in allowlist.INITIALIZERS:
                self.refuse_name("initialiser", None, value)
        elif key.endswith("_regularizer"):
            if value not in allowlist.REGULARIZERS:
                self.refuse_name("regulariser", None, value)
        elif key.endswith("_constraint"):
            if value not in allowlist.CONSTRAINTS:
                self.refuse_name("constraint", None, value)
        elif key == "dtype" and value not in allowlist.DTYPES:
            self.refuse_name("data type", None, value)

    def check_shape(self, key: str, value: list) -> None:
        for item in value:
            if isinstance(item, list):
                self.check_shape(key, item)
            elif isinstance(item, int) and not isinstance(item, bool):
                if item > self.limits.max_input_side ** 2 * 4:
                    raise UnsafeUploadError(
                        f"The model's config declares a size of {item:,} ({key}), which is "
                        "refused to protect the server.")

    def check_input(self, shape: object) -> None:
        if not isinstance(shape, list) or not shape:
            raise UnsafeUploadError("The model's input shape is not readable.")
        dims = shape[1:]
        if any(dim is None for dim in dims):
            raise UnsafeUploadError("The model's input height and width must be fixed, e.g. "
                                    "keras.Input((224, 224, 3)).")
        if not all(isinstance(dim, int) and not isinstance(dim, bool) and dim > 0
                   for dim in dims):
            raise UnsafeUploadError("The model's input shape is not made of sizes.")
        side = self.limits.max_input_side
        spatial = dims[:-1] if len(dims) >= 3 else dims
        if any(dim > side for dim in spatial) or math.prod(dims) > side * side * 4:
            shown = " x ".join(str(dim) for dim in dims)
            raise UnsafeUploadError(
                f"The model's input is {shown}; the largest accepted input is {side} x "
                f"{side} pixels (one explanation would need too much memory).")
        self.report.input_shapes.append(tuple(dims))

    def check_width(self, key: str, value: object) -> None:
        """A layer size (``units``, ``filters``…) must be a whole number of at least 1;
        Keras itself would fail later with its class path and advice for the author."""
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None and key in ("value_dim", "num_key_value_heads"):
                continue  # optional sizes: Keras uses another one
            if isinstance(item, int) and not isinstance(item, bool) and item >= 1:
                continue
            if isinstance(item, (int, float)) and not isinstance(item, bool) \
                    and math.isfinite(item) and abs(item) < 1e12:
                declared = f"{key} = {item:g}"
            else:
                declared = f"a {key} that is not a number"
            raise UnsafeUploadError(
                f"A layer of the model declares {declared}; layer sizes must be whole "
                "numbers of at least 1, so the model cannot be built.")

    def check_object(self, node: dict, key: str | None) -> None:
        class_name, module = node.get("class_name"), node.get("module")
        registered = node.get("registered_name")
        if not isinstance(class_name, str):
            raise UnsafeUploadError("The model's config names an object without a class.")
        if class_name == "__lambda__" or class_name in allowlist.CODE_LAYERS:
            raise UnsafeUploadError(CODE_MESSAGE)
        if class_name in allowlist.SPECIAL_OBJECTS:
            return
        if class_name.startswith("__"):
            self.refuse_name("special object", module, class_name)
        if class_name == "function":
            name = node.get("config")
            if (module not in allowlist.ACTIVATION_MODULES
                    or name not in allowlist.ACTIVATIONS
                    or registered not in (None, name)):
                self.refuse_name("function", module, name)
            return
        if registered not in (None, class_name):
            self.refuse_name("custom object", module, registered)
        if module is None:
            families = [name for name, names in allowlist.FAMILIES.items() if class_name in names]
        else:
            family = allowlist.family_of(module) if isinstance(module, str) else None
            if family == "keras":
                families = ["models", "dtype_policies"]
            else:
                families = [family] if family else []
        if not any(class_name in allowlist.FAMILIES[name] for name in families):
            self.refuse_name("class", module, class_name)
        inner = node.get("config")
        if not isinstance(inner, dict):
            return
        if class_name in allowlist.DTYPE_POLICIES and inner.get("name") not in allowlist.DTYPES:
            self.refuse_name("data type", None, inner.get("name"))
        if class_name == "InputLayer":
            self.check_input(inner.get("batch_shape", inner.get("batch_input_shape")))
        if class_name in allowlist.LAYERS:
            for width_key in sorted(_WIDTH_KEYS & inner.keys()):
                self.check_width(width_key, inner[width_key])
                for value in _ints(inner[width_key]):
                    if value > self.limits.max_layer_width:
                        raise UnsafeUploadError(
                            f"A layer of the model declares {width_key} = {value:,}; more "
                            f"than {self.limits.max_layer_width:,} is refused.")
            self.report.estimated_parameters += estimate_layer_parameters(
                class_name, inner, _input_dim(node))
            if self.report.estimated_parameters > self.limits.max_parameters:
                raise UnsafeUploadError(
                    f"The model would have more than "
                    f"{self.report.estimated_parameters / 1e6:,.0f} million parameters; the "
                    f"limit is {self.limits.max_parameters / 1e6:,.0f} million.")

    def walk(self, node: object, key: str, depth: int) -> None:
        if depth > self.limits.max_config_depth:
            raise UnsafeUploadError("The model's config.json is nested too deeply.")
        if isinstance(node, list):
            if len(node) > self.limits.max_config_list_items:
                raise UnsafeUploadError(
                    f"The model's config.json holds a list of {len(node):,} items; more than "
                    f"{self.limits.max_config_list_items:,} is refused.")
            if key in _SHAPE_KEYS:
                self.check_shape(key, node)
            for item in node:
                self.walk(item, key, depth + 1)
        elif isinstance(node, dict):
            if "class_name" in node:
                self.check_object(node, key)
            for child_key, value in node.items():
                if child_key == "compile_config":
                    continue  # dropped: uploaded models are loaded with compile=False
                self.walk(value, str(child_key), depth + 1)
        elif isinstance(node, str):
            self.check_string(key, node)


def inspect_config(config: dict, limits: Limits) -> ArchiveReport:
    """Walk a parsed model config against the allowlists and limits.

    Raises:
        UnsafeUploadError: with the reason, for the user.
    """
    class_name = config.get("class_name")
    if class_name not in allowlist.MODELS:
        raise UnsafeUploadError("The file does not hold a Keras model.")
    walker = _ConfigWalker(limits)
    walker.walk(config, "", 0)
    report = walker.report
    build = config.get("build_config")
    if not report.input_shapes and isinstance(build, dict) and build.get("input_shape"):
        walker.check_input(build["input_shape"])
    if not report.input_shapes:
        raise UnsafeUploadError("The model has no fixed input: build it with an input, e.g. "
                                "keras.Input((224, 224, 3)), before saving.")
    return report


def inspect_keras_archive(data: bytes, limits: Limits) -> ArchiveReport:
    """Pre-flight inspection of a ``.keras`` file's bytes (see the module docstring).

    Args:
        data: the uploaded file.
        limits: the limits in force.

    Returns:
        An :class:`ArchiveReport` for an archive that passed.

    Raises:
        UnsafeUploadError: with the reason, for the user.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UnsafeUploadError("This is not a .keras model file (a Keras 3 zip archive). "
                                "Save your model with model.save('name.keras').") from exc
    with archive:
        members = _check_members(archive, limits)
        config = read_config(archive, members[CONFIG_MEMBER], limits)
    report = inspect_config(config, limits)
    report.has_weights = WEIGHTS_MEMBER in members
    return report
