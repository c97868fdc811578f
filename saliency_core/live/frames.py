"""One camera frame in, the same frame with its saliency overlay and class out.

A frame of any size and orientation ``(H, W, 3)`` is fitted to the model as on
Explore (the largest centred region with the model's aspect ratio, or the whole
frame squashed), explained with the vanilla gradient, a light SmoothGrad or LayerCAM
through the same methods and adapter as
every page, and the map is laid over the region the model saw. With the centre
crop, the parts the model did not see are dimmed. The class and its probability
are written in the top-left corner. The output always has the input's shape.

For speed the map is coloured at the model's resolution and then resized with its
alpha (one Pillow resize and one alpha composite), instead of resizing the values
first as :func:`saliency_core.plotting.blend_overlay` does; at 640×480 this takes a
few milliseconds instead of about 30.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from saliency_core.imaging import FIT_MODES, crop_box, fit_to_model
from saliency_core.labels import shorten_label
from saliency_core.methods import Target
from saliency_core.pipeline import batches_classes, explain, explain_rows
from saliency_core.plotting import COLORMAPS, colormap_lut, fade_weights
from saliency_core.postprocess import DEFAULT_CLIP_PERCENTILE, normalize_map, reduce_channels

LIVE_METHODS: dict[str, str] = {
    "vanilla": "Vanilla gradient",
    "smoothgrad": "SmoothGrad, few samples",
    "layercam": "LayerCAM (last convolutional layer)",
}
"""Methods fast enough for a live stream (one or a few gradient calls per frame). The
other methods need tens to thousands of model passes per map (Integrated Gradients,
XRAI, Blur IG and Guided IG 50-200 gradients, Score-CAM one forward pass per channel,
RISE and occlusion hundreds to thousands), far slower than a camera's frames."""

MIN_FRAME_SIDE = 16
"""Smallest frame side explained, in pixels: a smaller frame (a 1×1 virtual camera) holds
too little to map, and is refused with :class:`FrameTooSmallError` instead."""

OUTSIDE_DIM = 0.45
"""Brightness kept outside the region the model sees (centre crop)."""
_DIM_TABLE = [int(v * OUTSIDE_DIM) for v in range(256)] * 3


class FrameTooSmallError(ValueError):
    """A camera frame too small to explain; the message says what to do."""


def check_frame_size(height: int, width: int) -> None:
    """Refuse a frame with a side under :data:`MIN_FRAME_SIDE`, in words a user can act on.

    Raises:
        FrameTooSmallError: the frame is too small.
    """
    if min(height, width) < MIN_FRAME_SIDE:
        raise FrameTooSmallError(
            f"The camera sends {width}×{height} frames, too small to explain (a frame needs "
            f"at least {MIN_FRAME_SIDE}×{MIN_FRAME_SIDE} pixels). Choose another camera, "
            "or a higher resolution in its settings, and press START again.")


@dataclass(frozen=True)
class LiveSettings:
    """What the frame processor needs; built by the page, read by the worker thread.

    Attributes:
        classifier: a :class:`saliency_core.tf_adapter.KerasClassifier` (or anything
            with ``input_size``, ``class_names``, ``probabilities``, ``gradients`` and
            ``row_gradients``).
        pinned_class: the class to explain, or ``None`` for each frame's top-1.
        method: a key of :data:`LIVE_METHODS`.
        samples, noise: SmoothGrad's noisy copies and noise level.
        colormap: a key of :data:`saliency_core.plotting.COLORMAPS`.
        opacity: weight of the map, 0 to 1 (weak values fade further).
        fit: ``"crop"`` or ``"squash"``.
        clip_percentile: values above it are shown at full strength.
    """

    classifier: Any
    pinned_class: int | None = None
    method: str = "vanilla"
    samples: int = 4
    noise: float = 0.15
    colormap: str = "viridis"
    opacity: float = 0.6
    fit: str = "crop"
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE

    def __post_init__(self):
        if self.method not in LIVE_METHODS:
            raise ValueError(f"method must be one of {', '.join(LIVE_METHODS)}")
        if self.colormap not in COLORMAPS:
            raise ValueError(f"unknown colormap {self.colormap!r}")
        if self.fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError("opacity must be in [0, 1]")

    @property
    def params(self) -> dict:
        """The method's parameters, as :func:`saliency_core.pipeline.explain` takes them."""
        if self.method == "smoothgrad":
            return {"samples": int(self.samples), "noise": float(self.noise)}
        return {}


@dataclass(frozen=True)
class LiveResult:
    """One explained frame.

    Attributes:
        frame: ``(H, W, 3)`` uint8, the input frame with the overlay and the label.
        source: ``(H, W, 3)`` uint8, the input frame as it came (for "freeze").
        class_index: the class explained.
        class_name: its short name.
        probability: its softmax probability on this frame.
        pinned: whether the class was pinned (else it is the frame's top-1).
        seconds: time to fit, predict and explain (not the drawing).
    """

    frame: np.ndarray
    source: np.ndarray
    class_index: int
    class_name: str
    probability: float
    pinned: bool
    seconds: float


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


@functools.lru_cache(maxsize=16)
def _palette(colormap: str) -> bytes:
    return colormap_lut(colormap).tobytes()


@functools.lru_cache(maxsize=64)
def _alpha_table(opacity: float) -> tuple[int, ...]:
    """Alpha of each 8-bit map value: ``opacity`` times Explore's fading
    (:func:`saliency_core.plotting.fade_weights`)."""
    weights = fade_weights(np.arange(256, dtype=np.float32) / 255.0)
    return tuple(int(round(255.0 * opacity * float(w))) for w in weights)


def _overlay_layers(saliency: np.ndarray, colormap: str, opacity: float,
                    size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """The map's colours (a palette image) and alpha (L) at ``size`` ``(W, H)``.

    The map's 8-bit values are resized (bilinear), then coloured and faded through
    tables, as Explore resizes values before colouring them; one small resize and two
    table look-ups in C, about half the time of resizing colours and alpha.
    """
    m = np.clip(np.nan_to_num(np.asarray(saliency, np.float32)), 0.0, 1.0)
    values = Image.fromarray(np.rint(m * 255).astype(np.uint8), "L").resize(
        size, Image.Resampling.BILINEAR)
    alpha = values.point(_alpha_table(float(opacity)))
    values.putpalette(_palette(colormap))
    return values, alpha


def composite_overlay(region: np.ndarray, saliency: np.ndarray, colormap: str,
                      opacity: float) -> np.ndarray:
    """Lay a ``[0, 1]`` map ``(h, w)`` over ``region`` ``(H, W, 3)`` uint8, fading weak values.

    Each pixel's alpha is ``opacity`` times :func:`saliency_core.plotting.fade_weights`,
    as Explore's "Fade weak values".

    Returns:
        ``(H, W, 3)`` uint8.
    """
    height, width = region.shape[:2]
    colours, alpha = _overlay_layers(saliency, colormap, opacity, (width, height))
    base = Image.fromarray(np.ascontiguousarray(region, np.uint8), "RGB")
    base.paste(colours, (0, 0), alpha)  # base * (1 - alpha) + colours * alpha, in C
    return np.asarray(base)


def draw_label(frame: np.ndarray, text: str, bottom: bool = False) -> np.ndarray:
    """Write ``text`` on a dark band in the top-left (or bottom-left) corner of ``frame``.

    Args:
        frame: ``(H, W, 3)`` uint8 (or an RGB Pillow image).
        text: one line; shortened with an ellipsis to fit the width.
        bottom: put it in the bottom-left corner instead.

    Returns:
        A new ``(H, W, 3)`` uint8 frame.
    """
    image = frame.copy() if isinstance(frame, Image.Image) else Image.fromarray(frame)
    width, height = image.size
    draw = ImageDraw.Draw(image)
    font = _font(max(10, min(32, height // (26 if bottom else 18))))
    while text and draw.textlength(text, font=font) > width - 12 and len(text) > 2:
        text = text[:-2] + "…"
    left, top, right, low = draw.textbbox((0, 0), text, font=font)
    y = max(0, height - (low - top) - 10 - top) if bottom else 4
    band_top = min(height - 1, max(0, y + top - 4))
    band_bottom = max(band_top, min(height - 1, y + low + 5))
    draw.rectangle((0, band_top, max(0, min(width - 1, right + 12)), band_bottom),
                   fill=(0, 0, 0))
    draw.text((6, y), text, font=font, fill=(255, 255, 255))
    return np.asarray(image)


def process_frame(pixels: np.ndarray, settings: LiveSettings) -> LiveResult:
    """Explain one frame and draw its overlay and class onto a frame of the same size.

    Args:
        pixels: ``(H, W, 3)`` uint8 RGB, any size and orientation.
        settings: model, class, method and display settings.

    Returns:
        A :class:`LiveResult` whose ``frame`` has shape ``(H, W, 3)``.

    Raises:
        FrameTooSmallError: a side is under :data:`MIN_FRAME_SIDE` pixels.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got {pixels.shape}")
    check_frame_size(*pixels.shape[:2])
    start = time.perf_counter()
    classifier = settings.classifier
    model_input, _view = fit_to_model(pixels, classifier.input_size, settings.fit)
    pinned = (settings.pinned_class is not None
              and 0 <= settings.pinned_class < len(classifier.class_names))
    if batches_classes(settings.method):
        # One model call: the class (the frame's top-1 unless pinned), its probability and
        # the map all come from the forward pass that is differentiated.
        done = explain_rows(classifier, model_input[None],
                            [int(settings.pinned_class) if pinned else None],
                            settings.method, settings.params)
        values, probabilities = done.values[0], done.probabilities[0]
        class_index = int(done.class_indices[0])
    else:  # SmoothGrad explains the clean frame's class: a forward pass decides it first
        probabilities = classifier.probabilities(model_input[None])[0]
        class_index = int(settings.pinned_class) if pinned else int(np.argmax(probabilities))
        values = explain(classifier, model_input, Target(class_index), settings.method,
                         settings.params).attribution.values
    seconds = time.perf_counter() - start
    saliency = normalize_map(reduce_channels(values, "max_abs"), settings.clip_percentile)

    height, width = pixels.shape[:2]
    box = crop_box(width, height, settings.fit, classifier.input_size)
    frame = Image.fromarray(pixels, "RGB")
    if (box[2] - box[0], box[3] - box[1]) != (width, height):
        out = frame.point(_DIM_TABLE)  # what the model does not see, dimmed
        out.paste(frame.crop(box), box[:2])
    else:
        out = frame.copy()
    colours, alpha = _overlay_layers(saliency, settings.colormap, settings.opacity,
                                     (box[2] - box[0], box[3] - box[1]))
    out.paste(colours, box[:2], alpha)
    name = shorten_label(classifier.class_names[class_index])
    probability = float(probabilities[class_index])
    text = f"{name} {100 * probability:.0f}%" + (" (pinned)" if pinned else "")
    return LiveResult(frame=draw_label(out, text), source=pixels, class_index=class_index,
                      class_name=name, probability=probability, pinned=pinned,
                      seconds=seconds)
