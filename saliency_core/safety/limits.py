"""Every safety limit of the app, in one place.

The defaults suit a small server; an operator changes any of them in the
``[limits]`` table of ``saliency_studio.toml`` (the file named by
``SALIENCY_STUDIO_CONFIG``, else ``saliency_studio.toml`` in the working
directory; the same file whose ``[weights]`` table names weights files)::

    [limits]
    max_input_side = 512
    isolation_timeout_seconds = 60

Unknown keys and values of the wrong type are ignored with a logged warning;
a broken config file never stops the app.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

_LOG = logging.getLogger(__name__)

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Limits:
    """The limits applied to uploads before and while they are opened.

    Attributes:
        max_model_bytes: largest ``.keras`` upload (file size).
        max_weights_bytes: largest weights ``.h5`` upload for a registered model.
        max_labels_bytes: largest labels file.
        max_zip_members: most members in a ``.keras`` zip.
        max_member_bytes: largest declared unpacked size of one zip member.
        max_unpacked_bytes: largest declared unpacked size of all zip members.
        max_config_bytes: largest ``config.json`` (declared and actually read).
        max_config_depth: deepest nesting of lists and objects in ``config.json``.
        max_config_list_items: longest list anywhere in ``config.json``.
        max_input_side: largest model input height or width, in pixels.
        max_layer_width: largest ``units``, ``filters`` or similar width of one
            layer, refused even when the layer's input size is unknown.
        max_classes: most classes (scores per image) a model may output: every page
            lists, sorts or offers them (a Flatten head gave 3.2 million, whose class
            picker crashed the browser tab). ImageNet-21k has 21,843.
        max_parameters: most parameters, estimated from the config before the
            model is built and counted exactly after it is built in the child.
        max_hdf5_objects: most HDF5 groups, datasets, attributes and attribute
            elements visited in one file.
        max_hdf5_dataset_bytes: largest declared total of all datasets of one
            HDF5 file (each link to a dataset counts).
        max_hdf5_attribute_bytes: largest declared size of one HDF5 attribute.
        max_image_frames: most TIFF pages, GIF or WebP frames in an image.
        max_png_chunks: most chunks in a PNG file.
        isolation_memory_bytes: address space (``RLIMIT_AS``) a checking child
            process may add to what it has mapped after importing its libraries.
        max_activation_bytes: largest sum of a model's layer outputs for one image
            (what a forward pass keeps for the backward pass); the registered models
            need 58-141 MB, an upsampling "amplifier" gigabytes.
        activation_budget_bytes: memory a batch of one own model's gradients may
            use; its batch size is chosen to fit (at least 1, at most 16).
        isolation_walk_timeout_seconds: time for the child to start and walk an
            HDF5 file (the only defence against a hang inside the HDF5 library).
        isolation_timeout_seconds: time for the whole check in the child:
            HDF5 walk, Keras import, building, loading and measuring its passes.
        max_job_seconds: the most one map or check may take, estimated before it
            runs from the passes it makes and the model's measured time per pass;
            a job that runs far beyond its estimate is stopped as well.
        job_memory_bytes: the memory all running jobs may add together, by their
            measured memory per image; a single job above it is refused, and jobs
            wait in the queue until theirs fits. Default: a quarter of the machine's
            memory, at least 1 GB.
        max_live_frame_seconds: the most one frame of the Live stream may take (its
            map and its forward pass), estimated the same way.
        max_running_jobs: jobs that run at once (about one per core), plus one
            slot kept for jobs estimated under a second.
        max_jobs_per_session: jobs one browser session runs at once.
        decode_timeout_seconds: the time a photo's decoding may take in its worker
            process before the process is killed.
        decode_memory_bytes: the address space (``RLIMIT_AS``) the decoding worker
            may add to what it maps after importing Pillow and NumPy.
        max_image_side: the longest side of an accepted image, in pixels (a
            1 x 40,000,000 PNG is small on disk and costs a gigabyte to decode).
        max_jpeg_scans: most scans (``SOS`` segments) in a JPEG; each scan of a
            progressive JPEG is a pass over the whole image (a normal one has ~10).
        max_jpeg_markers: most markers of any kind in a JPEG.
        max_image_metadata_bytes: most bytes of metadata segments (JPEG ``APPn``
            and ``COM``; PNG text, ICC and EXIF chunks) in one image.
        max_session_upload_bytes: what one browser session may hold in the
            server's upload store at once (its largest single upload must fit).
        max_upload_store_bytes: what all sessions may hold there together.
        orphan_upload_seconds: an upload no widget has claimed after this long is
            freed (Streamlit keeps any file sent to its upload endpoint until the
            session ends).
        max_own_models_bytes: the file size of all visitors' own models loaded
            at once; a session keeps its models until it ends.
        max_audit_file_bytes: largest image of an audit (an upload, a zip member, or
            a file of the command line's folders), as Explore's photos.
        max_audit_total_bytes: largest total of one audit's images (uploaded, or
            unpacked from zips).
        max_audit_files: most images in one audit on the Audit page.
        max_audit_zip_members: most entries (files and folders) in one zip uploaded
            to the Audit page.
    """

    max_model_bytes: int = 200 * MIB
    max_weights_bytes: int = 1000 * MIB  # VGG16 needs 528 MB; Streamlit shows it as "1GB"
    max_labels_bytes: int = 2 * MIB
    max_zip_members: int = 16
    max_member_bytes: int = 1 * GIB
    max_unpacked_bytes: int = 1 * GIB
    max_config_bytes: int = 16 * MIB
    max_config_depth: int = 100
    max_config_list_items: int = 100_000
    max_input_side: int = 1024
    max_layer_width: int = 131_072
    max_classes: int = 100_000
    max_parameters: int = 200_000_000
    max_hdf5_objects: int = 100_000
    max_hdf5_dataset_bytes: int = 1 * GIB
    max_hdf5_attribute_bytes: int = 16 * MIB
    max_image_frames: int = 1_000
    max_png_chunks: int = 100_000
    isolation_memory_bytes: int = 4 * GIB
    max_activation_bytes: int = 512 * MIB
    activation_budget_bytes: int = 1536 * MIB
    isolation_walk_timeout_seconds: float = 20.0
    isolation_timeout_seconds: float = 180.0
    max_job_seconds: float = 60.0
    job_memory_bytes: int = dataclasses.field(default_factory=lambda: _default_job_memory())
    max_live_frame_seconds: float = 2.0
    max_running_jobs: int = 2
    max_jobs_per_session: int = 1
    decode_timeout_seconds: float = 10.0
    decode_memory_bytes: int = 1 * GIB
    max_image_side: int = 32_768
    max_jpeg_scans: int = 100
    max_jpeg_markers: int = 10_000
    max_image_metadata_bytes: int = 16 * MIB
    max_session_upload_bytes: int = 1100 * MIB
    max_upload_store_bytes: int = 4 * GIB
    orphan_upload_seconds: float = 60.0
    max_own_models_bytes: int = 2 * GIB
    max_audit_file_bytes: int = 50 * MIB
    max_audit_total_bytes: int = 200 * MIB
    max_audit_files: int = 500
    max_audit_zip_members: int = 2000


def _default_job_memory() -> int:
    """A quarter of the machine's memory, at least 1 GB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 4 * GIB
    return max(1 * GIB, total // 4)


DEFAULT_LIMITS = Limits()


def format_bytes(nbytes: int | float) -> str:
    """A byte count for people: ``"200 MB"``, ``"1.5 GB"``, ``"100 bytes"``."""
    if nbytes >= GIB:
        return f"{nbytes / GIB:,.1f} GB".replace(".0 GB", " GB")
    if nbytes >= MIB:
        return f"{nbytes / MIB:,.0f} MB"
    if nbytes >= 1024:
        return f"{nbytes / 1024:,.0f} KB"
    return f"{int(nbytes)} bytes"


def config_path() -> Path:
    """The operator's config file: ``$SALIENCY_STUDIO_CONFIG`` or ``./saliency_studio.toml``."""
    return Path(os.environ.get("SALIENCY_STUDIO_CONFIG", "saliency_studio.toml"))


def _coerce(value: object, default: int | float) -> int | float | None:
    """``value`` as the type of ``default`` if it is a sensible positive number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, float) and not value.is_integer():
            return None
        value = int(value)
    else:
        value = float(value)
    return value if value > 0 else None


def parse_limits(table: object) -> Limits:
    """Limits from a ``[limits]`` table; bad entries are logged and ignored.

    Args:
        table: the parsed TOML table (anything else is ignored with a warning).
    """
    if not isinstance(table, dict):
        _LOG.warning("[limits] in the config file is not a table; using the defaults")
        return DEFAULT_LIMITS
    fields = {field.name: field for field in dataclasses.fields(Limits)}
    overrides: dict[str, int | float] = {}
    for key, value in table.items():
        if key not in fields:
            _LOG.warning("Unknown limit %r in the config file is ignored; known: %s",
                         key, ", ".join(fields))
            continue
        coerced = _coerce(value, getattr(DEFAULT_LIMITS, key))
        if coerced is None:
            _LOG.warning("Limit %s = %r in the config file is not a positive number of the "
                         "right kind; the default %r is used", key, value,
                         getattr(DEFAULT_LIMITS, key))
            continue
        overrides[key] = coerced
    return dataclasses.replace(DEFAULT_LIMITS, **overrides)


_CACHE: dict[tuple[str, float, int], Limits] = {}


def load_limits(path: str | os.PathLike | None = None) -> Limits:
    """The limits in force: the defaults, changed by the config file's ``[limits]``.

    The file is re-read when it changes (cached by modification time), so an
    operator's edit applies to the next upload.

    Args:
        path: the config file; default :func:`config_path`.

    Returns:
        The :class:`Limits`; the defaults when the file is absent or unreadable.
    """
    config = Path(path) if path is not None else config_path()
    try:
        stat = config.stat()
    except OSError:
        return DEFAULT_LIMITS
    key = (str(config.resolve()), stat.st_mtime, stat.st_size)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    try:
        document = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        _LOG.warning("The config file %s could not be read (%s); default limits are used",
                     config, exc)
        return DEFAULT_LIMITS
    limits = parse_limits(document["limits"]) if "limits" in document else DEFAULT_LIMITS
    _CACHE.clear()
    _CACHE[key] = limits
    return limits
