"""The image picker every page shares: a bundled sample, an upload or a snapshot.

Uploads and snapshots are kept in session state (copied and hashed once per
file), so they survive page switches; a photo is never written to disk under its
name. Size limits are checked here, on the server, from the bytes received, not
only by the browser's uploader.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import streamlit as st

from pages.lib import caching, settings
from pages.lib.layout import escape_markdown
from saliency_core.imaging import FIT_MODES, ImageError, LoadedImage, crop_box
from saliency_core.plotting import make_crop_preview
from saliency_core.samples import SAMPLES, read_sample

PHOTO_MAX_MB = 50
FIT_LABELS = {"crop": "Centre crop (the model's shape)",
              "squash": "Squash (stretch the whole photo)"}
SOURCE_LABELS = {"Sample": "Sample", "Upload": "Upload", "Camera": "Camera"}


@dataclass(frozen=True)
class ChosenImage:
    """The image a page works on.

    Attributes:
        name: the file name (a sample's file name for samples).
        image: the decoded image.
        source: ``"Sample"``, ``"Upload"`` or ``"Camera"``.
    """

    name: str
    image: LoadedImage
    source: str

    @property
    def stem(self) -> str:
        """The file name without its extension, safe for a download's file name."""
        base = self.name.rsplit(".", 1)[0] or "image"
        return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in base)[:60]


KeptFile = tuple[str, bytes, str]  # (file name, bytes, SHA-256)


@functools.lru_cache(maxsize=len(SAMPLES))
def _sample_file(key: str) -> KeptFile:
    data = read_sample(key)
    return SAMPLES[key][1], data, hashlib.sha256(data).hexdigest()


def _persisted_file(widget_key: str, store_key: str, draw) -> KeptFile | None:
    """Keep the last upload/snapshot across page switches.

    Streamlit forgets a widget's state when another page is shown, so the file
    is also kept in session state. If the widget is new in this run (we came back
    from another page, or another page handed a file over), the kept file is reused,
    also in later runs while the widget stays empty; if the widget held the file and
    is now empty, the user removed it, and the kept copy is dropped too.
    """
    returning = widget_key not in st.session_state
    uploaded = draw()
    if uploaded is not None:
        if st.session_state.get(f"{store_key}_id") != uploaded.file_id:  # copy and hash once
            if uploaded.size > PHOTO_MAX_MB * 1024 * 1024:  # the browser's check can be skipped
                st.session_state[f"{store_key}_refused"] = (uploaded.name, uploaded.size)
                st.session_state.pop(store_key, None)
            else:
                data = uploaded.getvalue()
                st.session_state[store_key] = (uploaded.name, data,
                                               hashlib.sha256(data).hexdigest())
                st.session_state.pop(f"{store_key}_refused", None)
            st.session_state[f"{store_key}_id"] = uploaded.file_id
    elif returning:  # the widget is new and empty: it no longer holds the kept file
        st.session_state.pop(f"{store_key}_id", None)
    elif f"{store_key}_id" in st.session_state:  # the widget held it: the user removed it
        for suffix in ("", "_id", "_refused"):
            st.session_state.pop(f"{store_key}{suffix}", None)
    refused = st.session_state.get(f"{store_key}_refused")
    if refused is not None and uploaded is not None:
        st.error(f"**{escape_markdown(refused[0])}** is {refused[1] / 2**20:.0f} MB; photos "
                 f"may be at most {PHOTO_MAX_MB} MB.", icon=":material/error:")
        return None
    kept = st.session_state.get(store_key)
    if kept is not None and uploaded is None:
        st.caption(f"Using your earlier file, {escape_markdown(kept[0])}.")
    return kept


def _choose_file(source: str) -> KeptFile | None:
    if source == "Sample":
        key = settings.bind("sample", st.selectbox, options=list(SAMPLES),
                            label="Sample photo", format_func=lambda k: SAMPLES[k][0])
        return _sample_file(key)
    if source == "Upload":
        return _persisted_file("upload_widget", "last_upload", lambda: st.file_uploader(
            "Upload a photo", key="upload_widget", max_upload_size=PHOTO_MAX_MB,
            help=f"JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF; up to {PHOTO_MAX_MB} MB "
                 "and 50 megapixels."))
    return _persisted_file("camera_widget", "last_snapshot",
                           lambda: st.camera_input("Take a snapshot", key="camera_widget"))


def keep_as_upload(name: str, data: bytes, digest: str) -> None:
    """Make ``data`` the kept upload and select the Upload source, so Explore shows it
    (Audit's "Open in Explore", Live's "Freeze")."""
    st.session_state["last_upload"] = (name.rsplit("/", 1)[-1], data, digest)
    for suffix in ("_id", "_refused"):
        st.session_state.pop(f"last_upload{suffix}", None)
    settings.put("source", "Upload")


def _apply_pending_link_class(digest: str) -> None:
    """A link made from a photo names its class; apply it if this is the same photo."""
    pending = settings.get("pending_photo")
    if pending and digest.startswith(pending[0]):
        _digest, class_index, contrast = pending
        settings.put("class", class_index)
        settings.put("contrast", contrast)
        st.session_state["class_context"] = None  # keep these for the new image
        settings.put("pending_photo", None)
        st.toast("This is the photo the link was made from: its class is shown.")


def choose_image() -> ChosenImage | None:
    """The picker: returns the decoded image, or ``None`` after telling the user what to
    do (no file yet) or why their file cannot be used."""
    source = settings.bind("source", st.radio, options=list(settings.SOURCES),
                           label="Image source", horizontal=True,
                           format_func=SOURCE_LABELS.get)
    chosen = _choose_file(source)
    if chosen is None:
        if source == "Camera":
            st.info("Take a snapshot with your camera to begin, or pick a sample. If no "
                    "camera picture appears, allow camera access in your browser.")
        elif not any(st.session_state.get(f"{k}_refused") for k in ("last_upload",)):
            st.info("Upload a photo to begin, or pick a sample. JPEG, PNG, WebP, BMP, GIF "
                    f"or TIFF, up to {PHOTO_MAX_MB} MB and 50 megapixels; a file marked in "
                    "red was refused (hover it to see why).")
        return None
    file_name, data, digest = chosen
    try:
        image = caching.decode_upload(digest, data)
    except ImageError as exc:
        st.error(f"**{escape_markdown(file_name)}** could not be used. "
                 f"{escape_markdown(str(exc))}", icon=":material/error:")
        return None
    if source != "Sample":
        _apply_pending_link_class(digest)
    for note in image.notes:
        st.caption(f"Note: {note}.")
    return ChosenImage(file_name, image, source)


def fit_help(model_size: tuple[int, int]) -> str:
    """The fit option's help: what each choice does with this model's ``(height, width)``."""
    height, width = model_size
    shape = ("a square" if height == width else "wider than tall" if width > height
             else "taller than wide")
    return (f"This model takes a {width}×{height} input ({shape}). Centre crop takes the "
            "largest centred region of the photo with that shape and resizes it, so nothing "
            "is stretched (the framing ImageNet models were evaluated on), but the edges are "
            "cut away. Squash stretches the whole photo to that shape: every pixel stays, but "
            "shapes are distorted.")


def fit_caption(image_size: tuple[int, int], box: tuple[int, int, int, int],
                model_size: tuple[int, int]) -> str:
    """One line under the preview: what the model sees of a ``(width, height)`` photo."""
    width, height = image_size
    model_height, model_width = model_size
    left, top, right, bottom = box
    cut = 1 - ((right - left) * (bottom - top)) / (width * height)
    target = f"{model_width}×{model_height}"
    if cut > 0.005:
        return (f"The model sees the framed {right - left}×{bottom - top} region, resized to "
                f"{target}; the dimmed {100 * cut:.0f}% is cut away.")
    stretch = (model_width / (right - left)) / (model_height / (bottom - top))
    if stretch > 1.01:
        return (f"The model sees the whole photo stretched to {target}: shapes in it look "
                f"{stretch:.2f}× wider than they are.")
    if stretch < 1 / 1.01:
        return (f"The model sees the whole photo squeezed to {target}: shapes in it look "
                f"{1 / stretch:.2f}× taller than they are.")
    return f"The model sees the whole photo, resized to {target}."


def choose_fit(image: LoadedImage, model_size: tuple[int, int], show_preview: bool = True
               ) -> str:
    """The fit option with a preview of what the model sees: the rest is dimmed.

    Args:
        image: the photo.
        model_size: the model's input ``(height, width)``; the centre crop has its shape.
        show_preview: draw the preview (framed region, the rest dimmed) and its caption.
    """
    fit = settings.bind("fit", st.radio, options=list(FIT_MODES), label="What the model sees",
                        format_func=FIT_LABELS.get, horizontal=True,
                        help=fit_help(model_size))
    if show_preview:
        height, width = image.pixels.shape[:2]
        box = crop_box(width, height, fit, model_size)
        caption = fit_caption((width, height), box, model_size)
        if min(height, width) * 260 >= 2 * max(height, width):  # a visible preview
            st.image(make_crop_preview(image.pixels, box), caption=caption, width=260)
        else:
            st.caption(caption + " (The photo is too thin to preview.)")
    return fit
