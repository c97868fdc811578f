"""Core pieces behind a self-explaining Explore page: class search, legends, the
captioned PNG, the crop preview, the overlay's hover, and strict link parsing.
No TensorFlow, no Streamlit runtime."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from saliency_core.labels import load_imagenet_labels, rank_classes
from saliency_core.plotting import (
    blend_overlay,
    encode_png,
    escape_plotly,
    make_crop_preview,
    make_legend,
    make_overlay_figure,
    make_topk_figure,
    render_overlay_png,
)

NAMES = load_imagenet_labels()


@pytest.mark.parametrize("query, first", [("golden", "golden retriever"),
                                          ("cat", "tabby, tabby cat"),
                                          ("tiger cat", "tiger cat"),
                                          ("281", "tabby, tabby cat"),
                                          ("pump", "gas pump, gasoline pump, petrol pump, "
                                                   "island dispenser")])
def test_class_search_ranks_whole_words_and_prefixes_first(query, first):
    assert NAMES[rank_classes(query, NAMES)[0]] == first


def test_class_search_never_ranks_a_mid_word_match_above_a_word_match():
    found = [NAMES[i] for i in rank_classes("cat", NAMES)]
    whole = [i for i, n in enumerate(found) if "cat" in n.replace(",", " ").split()]
    inner = [i for i, n in enumerate(found) if "cat" not in n.replace(",", " ").split()]
    assert max(whole) < min(inner)
    assert "gas pump, gasoline pump, petrol pump, island dispenser" not in [
        NAMES[i] for i in rank_classes("golden", NAMES)]
    assert rank_classes("   ", NAMES) == [] and rank_classes("zzzqqq", NAMES) == []


def test_legends_say_what_the_colours_mean():
    plain = make_legend()
    assert not plain.signed and "0" in plain.low and "1" in plain.high
    contrast = make_legend(contrast=("tabby", "tiger cat"))
    assert contrast.signed
    assert contrast.high == "favours tabby" and contrast.low == "favours tiger cat"
    assert make_legend(signed=True).high == "raises the score"


def test_overlay_hover_reads_model_pixels_normalised_and_raw_values():
    view = np.zeros((300, 400, 3), np.uint8)
    saliency = np.linspace(0, 1, 224 * 224, dtype=np.float32).reshape(224, 224)
    raw = saliency * 1e-3
    fig = make_overlay_figure(view, saliency, "viridis", 0.7,
                              legend=make_legend(contrast=("a", "<b>b</b>")), raw=raw)
    heat = next(t for t in fig.data if t.type == "heatmap")
    image = next(t for t in fig.data if t.type == "image")
    assert heat.opacity == pytest.approx(0.7) and heat.zmin == -1  # contrast: signed
    assert "model's 224×224 input" in heat.hovertemplate
    assert "map value" in heat.hovertemplate and "raw attribution" in heat.hovertemplate
    assert np.allclose(np.asarray(heat.customdata), raw)
    # the photo is stretched over the 224 x 224 grid, so axes count model-input pixels
    assert image.dx * 400 == pytest.approx(224) and image.dy * 300 == pytest.approx(224)
    # user-supplied class names cannot inject Plotly's HTML subset
    assert "favours &lt;b&gt;b&lt;/b&gt;" in heat.colorbar.ticktext
    assert fig.layout.dragmode is False  # a touch swipe scrolls the page, not the figure


def test_plotly_labels_are_escaped():
    assert escape_plotly('<a href="x">y</a>') == "&lt;a href=&quot;x&quot;&gt;y&lt;/a&gt;"
    fig = make_topk_figure(["<img src=x>"], [0.5])
    assert fig.data[0].y == ("&lt;img src=x&gt;",)


def test_png_download_has_the_overlay_a_colour_bar_and_a_caption():
    rng = np.random.default_rng(0)
    view = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    saliency = rng.random((56, 56)).astype(np.float32)
    legend = make_legend()
    png = Image.open(io.BytesIO(render_overlay_png(view, saliency, "viridis", 0.6, legend,
                                                   "model · class · method")))
    pixels = np.asarray(png.convert("RGB"))
    assert png.width > 160 and png.height > 120
    # the image part is exactly the overlay the page shows
    assert np.array_equal(pixels[:120, :160], blend_overlay(view, saliency, "viridis", 0.6))
    # a colour bar: its top row is Viridis's yellow end, its bottom row the purple end
    bar = pixels[:120, 164:170].astype(int)
    assert bar[0, 0, 0] > 200 and bar[0, 0, 2] < 100  # yellow
    assert bar[-1, 0, 2] > bar[-1, 0, 1]  # purple-blue
    # the caption line is drawn (dark text on white) under the image
    assert (pixels[122:, :160] < 100).any()


def test_crop_preview_dims_what_the_model_does_not_see():
    photo = np.full((100, 200, 3), 200, np.uint8)
    preview = make_crop_preview(photo, (50, 0, 150, 100), dim=0.3)
    assert preview[50, 10].tolist() == [60, 60, 60]  # cut away: dimmed
    assert preview[50, 100].tolist() == [200, 200, 200]  # seen: unchanged
    assert preview[50, 50].tolist() != [200, 200, 200]  # the frame
    whole = make_crop_preview(photo, (0, 0, 200, 100))
    assert np.array_equal(whole, photo)  # squash: nothing cut, no frame


def test_fading_lets_the_photo_through_where_the_map_is_weak():
    view = np.full((4, 4, 3), 100, np.uint8)
    saliency = np.zeros((4, 4), np.float32)
    saliency[:, 2:] = 1.0
    faded = blend_overlay(view, saliency, "greys", 0.8, fade=True)
    plain = blend_overlay(view, saliency, "greys", 0.8)
    assert (faded[:, 0] == 100).all()  # map value 0: the photo, untouched
    assert (plain[:, 0] != 100).all()  # without fading, the map's colour covers it
    assert np.array_equal(faded[:, 3], plain[:, 3])  # full strength where the map is 1
    signed = blend_overlay(view, np.full((4, 4), -1.0, np.float32), opacity=0.5, signed=True,
                           fade=True)
    assert (signed != 100).all()  # strong negative evidence shows too
    fig = make_overlay_figure(view, saliency, "viridis", 0.5, fade=True)
    scale = next(t for t in fig.data if t.type == "heatmap").colorscale
    assert scale[0][1].endswith(",0.000)") and scale[-1][1].endswith(",1.000)")


def test_the_photo_is_encoded_once_for_all_figures(monkeypatch):
    """A rerun showing the same photo reuses its (JPEG) encoding; another photo is encoded."""
    from saliency_core import plotting

    calls = []
    original = plotting.Image.fromarray
    monkeypatch.setattr(plotting.Image, "fromarray",
                        lambda px, *a: calls.append(1) or original(px, *a))
    view = np.random.default_rng(5).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    saliency = np.random.default_rng(6).uniform(0, 1, (20, 20))
    first = plotting.make_overlay_figure(view, saliency)
    second = plotting.make_side_by_side_figure(view, saliency)
    assert len(calls) == 1
    assert first.data[0].source == second.data[0].source
    assert first.data[0].source.startswith("data:image/jpeg;base64,")
    other = view.copy()
    other[0, 0] ^= 1
    assert plotting.make_overlay_figure(other, saliency).data[0].source != first.data[0].source
    assert len(calls) == 2


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (9, 1, 3), (37, 53, 3), (256, 256, 3)])
def test_the_fast_png_decodes_to_exactly_its_pixels(shape):
    """The command line's own PNG writer (Up filter, run-length zlib) is a standard PNG:
    Pillow reads it back bit for bit, every byte value and wrap-around of the filter
    included, and finds its chunks' CRCs right."""
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels[0, 0] = (0, 255, 128)  # the extremes, where the row difference wraps
    data = encode_png(pixels, fast=True)
    Image.open(io.BytesIO(data)).verify()  # signature, chunk order and CRCs
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert np.array_equal(np.asarray(image), pixels)


def test_the_fast_png_is_at_most_a_quarter_bigger_than_pillows_at_the_same_zlib_settings():
    """Speed bought with a little size: on a photo with a map over it, the fast file
    stays within 25% of Pillow's at zlib's same settings (Pillow tries every row filter;
    the fast writer uses Up only)."""
    y, x = np.mgrid[0:240, 0:320]
    smooth = np.stack([128 + 100 * np.sin(x / 37 + y / 53), 128 + 90 * np.cos(x / 23),
                       128 + 80 * np.sin(y / 31)], -1)
    grain = np.random.default_rng(0).normal(0, 4, smooth.shape)  # a camera's noise
    photo = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    saliency = np.exp(-((x - 160) ** 2 + (y - 120) ** 2) / 4000.0).astype(np.float32)
    overlay = blend_overlay(photo, saliency, "viridis", 0.6, fade=True)
    buffer = io.BytesIO()
    Image.fromarray(overlay).save(buffer, format="PNG", compress_level=1,
                                  compress_type=zlib.Z_RLE)
    assert len(encode_png(overlay, fast=True)) <= 1.25 * len(buffer.getvalue())


def test_the_fast_png_refuses_what_is_not_an_rgb_image():
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ValueError, match="expected a non-empty"):
            encode_png(bad, fast=True)
