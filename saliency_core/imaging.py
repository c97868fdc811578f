"""Decode user images safely and fit them to a model's input.

Everything here works on ``numpy`` arrays in 0-255 RGB, shape ``(H, W, 3)``.

Decisions a user can see:

* **Formats.** JPEG (and MPO, the multi-picture JPEG many phones write), PNG,
  WebP, BMP, GIF (first frame only) and TIFF. Anything else, SVG and HTML
  included, is refused with :class:`ImageError`.
* **Orientation.** The EXIF orientation tag is applied, so a portrait phone
  photo is shown, classified and explained upright.
* **Transparency** (RGBA, LA, PA, and palette images with a transparent
  colour) is flattened onto **white**, the way most viewers show such files
  on a page. 16-bit and 32-bit greyscale are scaled to 8 bits by their range
  (65535 for 16-bit), CMYK is converted by Pillow, 1-bit becomes black/white.
* **Size.** Files with more than :data:`MAX_PIXELS` pixels, or a side longer
  than ``Limits.max_image_side``, are refused as possible decompression bombs
  before any pixel is decoded. Accepted images are downscaled so their longer
  side is at most :data:`DISPLAY_MAX_SIDE` right after decoding (JPEGs are
  decoded directly at reduced scale), so no request holds a full-resolution
  array.
* **Where.** :func:`load_image` first walks the file's structure with caps
  (pages, frames, chunks, JPEG scans and markers, metadata:
  :mod:`saliency_core.safety.images`), then decodes it in a worker process with a
  memory limit and a time limit that is killed if it overruns or nobody waits any
  more (:mod:`saliency_core.safety.decoding`); the decoding itself is
  :func:`decode_image`, which runs in that worker.
* **Fitting to the model.** ``"crop"`` (default) takes the largest centred
  region with the *model's* aspect ratio (a square for the usual square
  ImageNet input, the framing those models were evaluated on; a 2:1 strip for
  a model whose input is 64×128), then resizes it, so nothing is stretched;
  ``"squash"`` stretches the whole image to the model's input, distorting the
  aspect ratio but keeping every pixel. Either way :func:`fit_to_model`
  returns the *view* (the part of the image the model saw) so a saliency map,
  upsampled with :func:`resize_map`, lines up with it pixel for pixel, and
  :func:`crop_box` says where that view lies.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.images import check_image_size, check_image_structure
from saliency_core.safety.limits import Limits, load_limits

MAX_PIXELS = 50_000_000
"""Largest accepted image, in pixels (e.g. 8660 x 5773)."""

DISPLAY_MAX_SIDE = 1024
"""Longer side of the kept (display) image after decoding."""

ALLOWED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"}
FIT_MODES = ("crop", "squash")
TRANSPARENCY_BACKGROUND = (255, 255, 255)


class ImageError(ValueError):
    """The upload is not an image this app can read; the message says why."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded, upright, RGB image ready for display and for models.

    Attributes:
        pixels: ``(H, W, 3)`` uint8 RGB, longer side at most ``DISPLAY_MAX_SIDE``.
        original_size: ``(width, height)`` of the file's pixels, after EXIF rotation.
        format: Pillow's format name, e.g. ``"PNG"``.
        notes: human-readable notes about conversions that were applied.
        digest: SHA-256 of the file's bytes, a stable cache key.
        decoded_size: ``(width, height)`` the decoder produced (after EXIF rotation,
            before downscaling); smaller than ``original_size`` when a large JPEG
            was decoded directly at 1/2, 1/4 or 1/8 scale.
        name: the file's name, when known (the Python API records it in
            provenance and captions); never used as a path.
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    format: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    digest: str = ""
    decoded_size: tuple[int, int] = (0, 0)
    name: str = ""


def _to_rgb(img: Image.Image, notes: list[str], sixteen_bit: bool = False) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent areas were flattened onto white")
        background = Image.new("RGBA", rgba.size, TRANSPARENCY_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if (sixteen_bit or mode.startswith("I;16") or arr.max() > 255) else 255.0
        if mode == "F":
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
            notes.append("floating-point image scaled by its range")
        else:
            arr = arr / top * 255.0
            if top > 255:
                notes.append("16-bit image scaled to 8 bits")
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return img.convert("RGB")


_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}


def _precheck(data: bytes, max_pixels: int, limits: Limits) -> None:
    if not data:
        raise ImageError("The file is empty.")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")):
        raise ImageError("This looks like an SVG, XML or HTML file. Vector and web "
                         "formats are not supported: upload a JPEG, PNG, WebP, BMP, "
                         "GIF or TIFF photo.")
    try:  # page/frame/chunk/scan/marker caps and PNG sizes, before any decoder
        check_image_structure(data, limits, max_pixels)
    except UnsafeUploadError as exc:
        raise ImageError(str(exc)) from exc


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS,
                 display_max_side: int = DISPLAY_MAX_SIDE,
                 limits: Limits | None = None) -> LoadedImage:
    """Decode image bytes into a bounded, upright RGB image, in this process.

    This is what the decoding worker runs (:func:`load_image` sends it there);
    call it directly only on trusted bytes.

    Args:
        data: the file's bytes.
        max_pixels: refuse images with more pixels than this.
        display_max_side: downscale so the longer side is at most this.
        limits: the limits in force (default :func:`load_limits`).

    Returns:
        A :class:`LoadedImage` whose ``pixels`` have shape ``(H, W, 3)``.

    Raises:
        ImageError: empty, not an image, an unsupported format, truncated or
            corrupt, or too large.
    """
    limits = limits or load_limits()
    _precheck(data, max_pixels, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise ImageError(f"{fmt} files are not supported: upload a JPEG, PNG, "
                                 "WebP, BMP, GIF or TIFF image.")
            width, height = img.size
            try:
                check_image_size(width, height, limits, max_pixels)
            except UnsafeUploadError as exc:
                raise ImageError(str(exc)) from exc
            notes: list[str] = []
            if getattr(img, "n_frames", 1) > 1:
                notes.append(f"only the first of {img.n_frames} frames is used")
                img.seek(0)
            orientation = img.getexif().get(_ORIENTATION, 1)
            if fmt in ("JPEG", "MPO"):
                # Decode at reduced scale (1/2, 1/4, 1/8) when the image is large.
                img.draft("RGB", (display_max_side, display_max_side))
            img = ImageOps.exif_transpose(img)
            decoded = img.size
            sixteen_bit = img.mode.startswith("I;16")
            if sixteen_bit:
                img = img.convert("I")  # Pillow cannot reduce I;16 images: convert first
            if max(img.size) > display_max_side:
                img.thumbnail((display_max_side, display_max_side), Image.Resampling.LANCZOS)
            img = _to_rgb(img, notes, sixteen_bit)
            pixels = np.asarray(img, dtype=np.uint8).copy()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("The image is too large to open safely (possible decompression "
                         "bomb).") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("This file is not an image, or not in a format this app reads "
                         "(JPEG, PNG, WebP, BMP, GIF, TIFF).") from exc
    except MemoryError:
        raise
    except Exception as exc:  # any decoder failure; library wording is never shown
        raise ImageError("The image file is damaged or truncated and cannot be read.") from exc
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageError("The image could not be converted to RGB.")
    turned = isinstance(orientation, int) and 2 <= orientation <= 8
    if turned:
        notes.append("rotated upright from its EXIF orientation")
    size = (height, width) if turned and orientation in _SWAPS_AXES else (width, height)
    return LoadedImage(pixels=pixels, original_size=size, format=fmt, notes=tuple(notes),
                       digest=hashlib.sha256(data).hexdigest(), decoded_size=decoded)


def load_image(data: bytes, max_pixels: int = MAX_PIXELS,
               display_max_side: int = DISPLAY_MAX_SIDE) -> LoadedImage:
    """Decode an uploaded file into a bounded, upright RGB image, safely.

    The file's structure is walked with caps here; the decoding runs in a worker
    process with a memory and a time limit (:mod:`saliency_core.safety.decoding`),
    killed on timeout or when the job that asked is cancelled.

    Args:
        data: the file's bytes.
        max_pixels: refuse images with more pixels than this.
        display_max_side: downscale so the longer side is at most this.

    Returns:
        A :class:`LoadedImage` whose ``pixels`` have shape ``(H, W, 3)``.

    Raises:
        ImageError: empty, not an image, an unsupported format, truncated or
            corrupt, too large, or too costly to decode.
    """
    from saliency_core.safety.decoding import DecodeError, decode_in_worker

    limits = load_limits()
    _precheck(data, max_pixels, limits)
    try:
        answer, pixels = decode_in_worker(data, max_pixels, display_max_side, limits)
    except DecodeError as exc:
        raise ImageError(str(exc)) from exc
    return LoadedImage(pixels=pixels, original_size=tuple(answer["original_size"]),
                       format=answer["format"], notes=tuple(answer["notes"]),
                       digest=hashlib.sha256(data).hexdigest(),
                       decoded_size=tuple(answer["decoded_size"]))


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``size=(width, height)`` with antialiasing."""
    img = Image.fromarray(pixels)
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC, reducing_gap=None))


def crop_box(width: int, height: int, fit: str, input_size: tuple[int, int]
             ) -> tuple[int, int, int, int]:
    """The ``(left, top, right, bottom)`` region of a ``width`` × ``height`` image the
    model sees.

    ``"crop"``: the largest centred region with the aspect ratio of ``input_size``
    (the model's ``(height, width)``), rounded to whole pixels (so the resize to the
    model's input changes the aspect by less than one pixel); ``"squash"``: the whole
    image.

    Raises:
        ValueError: an unknown fit, or sizes below one pixel.
    """
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be one of {FIT_MODES}, not {fit!r}")
    model_height, model_width = (int(v) for v in input_size)
    if min(width, height, model_width, model_height) < 1:
        raise ValueError("image and model sizes must be at least one pixel")
    if fit == "squash":
        return 0, 0, width, height
    if width * model_height > height * model_width:  # the image is wider than the model
        crop_height = height
        crop_width = min(width, max(1, round(height * model_width / model_height)))
    else:
        crop_width = width
        crop_height = min(height, max(1, round(width * model_height / model_width)))
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


def fit_to_model(pixels: np.ndarray, input_size: tuple[int, int],
                 fit: str = "crop") -> tuple[np.ndarray, np.ndarray]:
    """Fit an image to a model's input and return what the model sees.

    Args:
        pixels: ``(H, W, 3)`` uint8 RGB.
        input_size: the model's ``(height, width)``.
        fit: ``"crop"`` (the largest centred region with the model's aspect ratio,
            then resize) or ``"squash"`` (the whole image, stretched).

    Returns:
        ``(model_input, view)``: ``model_input`` is ``(h, w, 3)`` float32 in
        0-255 for the model; ``view`` is the ``(H', W', 3)`` uint8 region of
        ``pixels`` that ``model_input`` was made from, at display resolution
        (:func:`crop_box` gives its place).
    """
    height, width = pixels.shape[:2]
    left, top, right, bottom = crop_box(width, height, fit, input_size)
    view = pixels[top:bottom, left:right]
    model_input = _resize(np.ascontiguousarray(view), (input_size[1], input_size[0]))
    return model_input.astype(np.float32), view


def resize_map(saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a 2-D map ``(h, w)`` to ``shape=(H, W)`` (float32)."""
    img = Image.fromarray(np.ascontiguousarray(saliency, dtype=np.float32))
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR),
                      dtype=np.float32)
