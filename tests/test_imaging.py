"""Image decoding, conversion and fitting (no TensorFlow). Inputs are generated here."""

import io

import numpy as np
import pytest
from PIL import Image

from saliency_core.imaging import (
    DISPLAY_MAX_SIDE,
    ImageError,
    crop_box,
    fit_to_model,
    load_image,
    resize_map,
)
from saliency_core.samples import SAMPLES, read_sample


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient_rgb(width=64, height=48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_supported_formats_decode_to_rgb(fmt):
    loaded = load_image(encode(gradient_rgb(), fmt))
    assert loaded.pixels.shape == (48, 64, 3)
    assert loaded.pixels.dtype == np.uint8
    assert loaded.format == fmt
    assert loaded.original_size == (64, 48)
    assert len(loaded.digest) == 64


def test_exif_orientation_is_applied():
    # A 60x30 image whose left half is red; orientation 6 = "rotate 90 CW to view".
    arr = np.zeros((30, 60, 3), np.uint8)
    arr[:, :30] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = load_image(encode(Image.fromarray(arr), "JPEG", exif=exif, quality=95))
    assert loaded.pixels.shape == (60, 30, 3)  # upright: now portrait
    assert loaded.pixels[5, 15, 0] > 200 and loaded.pixels[55, 15, 0] < 60  # red moved to top
    assert any("EXIF" in note for note in loaded.notes)


def test_rgba_is_flattened_onto_white():
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255  # red
    arr[:, :2, 3] = 0  # left half fully transparent
    arr[:, 2:, 3] = 255
    loaded = load_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    np.testing.assert_array_equal(loaded.pixels[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(loaded.pixels[0, 3], [255, 0, 0])
    assert any("white" in note for note in loaded.notes)


def test_la_and_palette_with_transparency():
    la = Image.fromarray(np.stack([np.full((4, 4), 0, np.uint8), np.full((4, 4), 0, np.uint8)],
                                  -1), "LA")
    np.testing.assert_array_equal(load_image(encode(la, "PNG")).pixels[0, 0], [255] * 3)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.putpixel((0, 0), 0)
    loaded = load_image(encode(pal, "PNG", transparency=0))
    np.testing.assert_array_equal(loaded.pixels[0, 0], [255, 255, 255])  # transparent -> white
    np.testing.assert_array_equal(loaded.pixels[1, 1], [0, 255, 0])


def test_cmyk_jpeg():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    loaded = load_image(encode(cmyk, "JPEG", quality=95))
    r, g, b = loaded.pixels[4, 4].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_greyscale_png_is_scaled_not_clipped():
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    loaded = load_image(encode(Image.fromarray(arr), "PNG"))
    np.testing.assert_array_equal(loaded.pixels[0, :, 0], [0, 128, 255])


def test_one_bit_and_greyscale():
    one = Image.new("1", (3, 3), 1)
    np.testing.assert_array_equal(load_image(encode(one, "PNG")).pixels[0, 0], [255] * 3)
    grey = Image.new("L", (3, 3), 77)
    np.testing.assert_array_equal(load_image(encode(grey, "PNG")).pixels[1, 1], [77] * 3)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (6, 6), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(buffer.getvalue())
    assert loaded.pixels[3, 3, 0] > 200 and loaded.pixels[3, 3, 2] < 60
    assert any("first of 2 frames" in note for note in loaded.notes)


def test_one_pixel_image():
    loaded = load_image(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    assert loaded.pixels.shape == (1, 1, 3)
    model_input, view = fit_to_model(loaded.pixels, (224, 224))
    assert model_input.shape == (224, 224, 3) and view.shape == (1, 1, 3)


def test_large_image_is_downscaled_for_display():
    loaded = load_image(encode(gradient_rgb(3000, 1500), "JPEG"))
    assert max(loaded.pixels.shape[:2]) <= DISPLAY_MAX_SIDE
    assert loaded.original_size == (3000, 1500)
    assert loaded.pixels.shape[1] / loaded.pixels.shape[0] == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize("data, phrase", [
    (b"", "empty"),
    (b"hello, this is plainly text\n" * 10, "not an image"),
    (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
    (b"<svg width='10' height='10'></svg>", "SVG"),
])
def test_non_images_are_refused_clearly(data, phrase):
    with pytest.raises(ImageError, match=phrase):
        load_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(fmt):
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    # A 20000 x 20000 PNG: its header claims 400 megapixels; compressed, it is tiny.
    img = Image.new("L", (20000, 20000))
    data = encode(img, "PNG", optimize=False, compress_level=9)
    with pytest.raises(ImageError, match="too large|megapixels"):
        load_image(data)


def test_own_pixel_limit():
    with pytest.raises(ImageError, match="megapixels"):
        load_image(encode(gradient_rgb(100, 100), "PNG"), max_pixels=9_999)


def test_unsupported_format_is_named():
    img = Image.new("RGB", (4, 4))
    with pytest.raises(ImageError, match="not supported"):
        load_image(encode(img, "PPM"))


def test_crop_and_squash_boxes():
    square = (224, 224)
    assert crop_box(400, 300, "crop", square) == (50, 0, 350, 300)
    assert crop_box(300, 400, "crop", square) == (0, 50, 300, 350)
    assert crop_box(400, 300, "squash", square) == (0, 0, 400, 300)
    with pytest.raises(ValueError):
        crop_box(1, 1, "stretch", square)


@pytest.mark.parametrize("input_size", [(64, 128), (128, 64), (224, 224), (96, 160), (32, 320)])
@pytest.mark.parametrize("photo", [(451, 300), (300, 451), (400, 300), (1000, 10), (7, 900)])
def test_the_crop_is_the_largest_centred_region_with_the_models_aspect(input_size, photo):
    width, height = photo
    left, top, right, bottom = crop_box(width, height, "crop", input_size)
    crop_width, crop_height = right - left, bottom - top
    assert 0 <= left and 0 <= top and right <= width and bottom <= height
    assert crop_width == width or crop_height == height  # the largest: it touches two sides
    aspect = input_size[1] / input_size[0]
    # whole pixels: the aspect is met to within one pixel of the shorter crop side
    assert abs(crop_width - crop_height * aspect) <= max(1.0, aspect) / 2 + 1e-9
    assert abs(left - (width - right)) <= 1 and abs(top - (height - bottom)) <= 1  # centred


def test_fit_to_model_view_lines_up_with_model_input():
    # A white square in the centre of a black 400x300 image stays centred in both.
    arr = np.zeros((300, 400, 3), np.uint8)
    arr[100:200, 150:250] = 255
    for fit in ("crop", "squash"):
        model_input, view = fit_to_model(arr, (224, 224), fit)
        assert model_input.shape == (224, 224, 3) and model_input.dtype == np.float32
        # The model input is a resize of the view: map a model pixel back to the view.
        ys, xs = np.nonzero(model_input[..., 0] > 128)
        cy = ys.mean() / 224 * view.shape[0]
        cx = xs.mean() / 224 * view.shape[1]
        vys, vxs = np.nonzero(view[..., 0] > 128)
        assert abs(cy - vys.mean()) < 2 and abs(cx - vxs.mean()) < 2
    assert fit_to_model(arr, (224, 224), "crop")[1].shape == (300, 300, 3)
    assert fit_to_model(arr, (299, 299), "squash")[1].shape == (300, 400, 3)


def test_resize_map_preserves_position():
    m = np.zeros((4, 4), np.float32)
    m[0, 0] = 1.0
    big = resize_map(m, (40, 40))
    assert big.shape == (40, 40)
    assert np.unravel_index(np.argmax(big), big.shape)[0] < 10


def test_bundled_samples_decode():
    for key in SAMPLES:
        loaded = load_image(read_sample(key))
        assert loaded.pixels.ndim == 3 and min(loaded.pixels.shape[:2]) > 100
