"""The bad-input corpus, generated here: each case shows a clear message (or a correct
result, for valid images) on the Explore page, and the next valid upload still works."""

import base64
import io
import json
import re

import numpy as np
import pytest
from apptest_support import ROUTER
from PIL import Image
from streamlit.testing.v1 import AppTest

from saliency_core.samples import read_sample

pytestmark = pytest.mark.slow



def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noisy(width=64, height=48, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).convert(mode)


def truncated(fmt: str) -> bytes:
    data = encode(noisy(200, 200), fmt)
    return data[: len(data) // 2]


def palette_with_transparency() -> bytes:
    img = Image.new("P", (32, 32), 1)
    img.putpalette([0, 0, 0, 200, 50, 50] + [0] * 762)
    img.paste(0, (0, 0, 16, 16))  # palette index 0 is the transparent colour
    return encode(img, "PNG", transparency=0)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 40), c) for c in [(200, 30, 30), (30, 30, 200)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def bomb() -> bytes:
    return encode(Image.new("L", (20000, 20000)), "PNG", compress_level=9)


REFUSED = {
    "empty.jpg": (lambda: b"", "empty"),
    "truncated.jpg": (lambda: truncated("JPEG"), "damaged or truncated"),
    "truncated.png": (lambda: truncated("PNG"), "damaged or truncated"),
    "notes.jpg": (lambda: b"Shopping list: milk, eggs, bread\n" * 20, "not an image"),
    "page.html": (lambda: b"<!DOCTYPE html><html><script>alert(1)</script></html>", "HTML"),
    "logo.svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">'
                          b'<rect width="9" height="9"/></svg>', "SVG"),
    "bomb.png": (bomb, "megapixels|too large"),
}

ACCEPTED = {
    "tiny.png": (lambda: encode(Image.new("RGB", (1, 1), (90, 120, 200)), "PNG"), None),
    "deep.png": (lambda: encode(Image.fromarray(
        (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)), "PNG"),
        "16-bit"),
    "print.jpg": (lambda: encode(noisy(mode="CMYK"), "JPEG"), "CMYK"),
    "palette.png": (palette_with_transparency, "white"),
    "animated.gif": (animated_gif, "first of 2 frames"),
}


def new_upload_app() -> AppTest:
    at = AppTest.from_file(str(ROUTER), default_timeout=180).run()
    at.radio(key="w_source").set_value("Upload").run()
    return at


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="upload_widget").set_value((name, data, "application/octet-stream"))
    return at.run()


def headline(at) -> str | None:
    return next((m.value for m in at.markdown if "for **" in m.value), None)


def assert_valid_upload_still_works(at: AppTest) -> None:
    upload(at, "cat.png", read_sample("chelsea"))
    assert not at.exception and not at.error
    assert "Vanilla gradient" in headline(at)


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_with_a_clear_message(name):
    make, phrase = REFUSED[name]
    at = upload(new_upload_app(), name, make())
    assert not at.exception, [e.value for e in at.exception]
    errors = " ".join(e.value for e in at.error)
    assert re.search(phrase, errors), errors
    assert "could not be used" in errors
    assert headline(at) is None  # nothing stale is shown
    assert_valid_upload_still_works(at)


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_unusual_but_valid_images_are_explained(name):
    make, note = ACCEPTED[name]
    at = upload(new_upload_app(), name, make())
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Vanilla gradient" in headline(at)
    if note:
        assert any(note in c.value for c in at.caption), [c.value for c in at.caption]
    assert_valid_upload_still_works(at)


def test_exif_rotated_photo_is_upright_and_the_map_follows():
    """A landscape JPEG tagged 'rotate 90 degrees' is shown upright (portrait), and the map is
    computed on the upright pixels, so it has the upright aspect and lines up with the view."""
    arr = np.zeros((120, 240, 3), np.uint8)
    arr[:, :120] = (250, 250, 250)  # bright left half -> top half once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    at = upload(new_upload_app(), "phone.jpg", encode(Image.fromarray(arr), "JPEG", exif=exif))
    at.radio(key="w_fit").set_value("squash").run()  # show the whole image
    assert not at.exception and not at.error
    assert any("EXIF" in c.value for c in at.caption)
    overlay = json.loads(at.get("plotly_chart")[0].proto.spec)
    image_trace = next(t for t in overlay["data"] if t["type"] == "image")
    heat = next(t for t in overlay["data"] if t["type"] == "heatmap")
    png = Image.open(io.BytesIO(base64.b64decode(image_trace["source"].split(",", 1)[1])))
    assert png.size == (120, 240)  # portrait: width 120, height 240
    top, bottom = np.asarray(png)[:100].mean(), np.asarray(png)[140:].mean()
    assert top > 200 and bottom < 50  # the bright half is on top
    # the upright view is stretched over exactly the heat map's model-input grid
    z = heat["z"]  # Plotly 6 sends arrays as {"dtype", "bdata", "shape"}
    rows, cols = (map(int, z["shape"].split(",")) if isinstance(z, dict)
                  else (len(z), len(z[0])))
    assert image_trace["dy"] * 240 == pytest.approx(rows)
    assert image_trace["dx"] * 120 == pytest.approx(cols)
