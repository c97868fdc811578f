"""The default view shows a map: every bundled sample's default overlay is clearly visible.

Issue 24 item 2: clipped at the 99.5th percentile and faded with ``sqrt(m)`` at opacity 0.5,
the default vanilla map on the cat was sparse dots and the rocket's barely tinted the sky.
:func:`saliency_core.plotting.overlay_visibility` measures what a visitor sees: the share
of the map's strongest fifth of pixels whose overlay colour differs clearly from the photo.
"""

from __future__ import annotations

import inspect
import io

import numpy as np
import pytest

from conftest import shared_path
from pages.lib import settings
from saliency_core import api
from saliency_core.audit.batch import AuditSettings
from saliency_core.imaging import fit_to_model, load_image
from saliency_core.methods import Target
from saliency_core.pipeline import explain, to_display_map
from saliency_core.plotting import blend_overlay, fade_weights, overlay_visibility
from saliency_core.samples import SAMPLES, read_sample

VISIBLE = 0.5
"""At least half of the map's strongest fifth of pixels must clearly tint the photo."""


def test_visibility_is_zero_without_a_map_and_one_for_a_strong_opaque_map():
    photo = np.full((40, 40, 3), 128, np.uint8)
    flat = np.zeros((20, 20), np.float32)
    assert overlay_visibility(photo, flat, fade=True) == 0.0  # faded away entirely
    strong = np.ones((20, 20), np.float32)
    assert overlay_visibility(photo, strong, opacity=1.0, fade=True) == 1.0
    assert overlay_visibility(photo, strong, opacity=0.0) == 0.0


def test_fading_gives_full_weight_from_half_the_scale_and_fades_below():
    values = np.array([0.0, 0.125, 0.5, 0.75, 1.0], np.float32)
    assert fade_weights(values).tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0])
    assert fade_weights(-values, signed=True).tolist() == pytest.approx(
        [0.0, 0.5, 1.0, 1.0, 1.0])
    photo = np.zeros((8, 8, 3), np.uint8)
    half = np.full((8, 8), 0.5, np.float32)
    assert np.array_equal(blend_overlay(photo, half, opacity=0.6, fade=True),
                          blend_overlay(photo, half, opacity=0.6, fade=False))


def test_the_python_api_and_the_audit_share_the_app_defaults():
    assert inspect.signature(api.explain).parameters["clip_percentile"].default == \
        settings.default_of("clip")
    for function in (api.overlay_figure, api.overlay_png):
        parameters = inspect.signature(function).parameters
        assert parameters["opacity"].default == settings.default_of("opacity")
        assert parameters["fade"].default == settings.default_of("fade")
    audit = AuditSettings()
    assert (audit.clip_percentile, audit.opacity, audit.fade) == (
        settings.default_of("clip"), settings.default_of("opacity"), settings.default_of("fade"))


def _default_visibility(classifier, data: bytes) -> float:
    image = load_image(data)
    model_input, view = fit_to_model(image.pixels, classifier.input_size,
                                     settings.default_of("fit"))
    top = int(np.argmax(classifier.probabilities(model_input[None])[0]))
    result = explain(classifier, model_input, Target(top), settings.default_of("method"), {})
    clip = settings.default_of("clip")
    saliency = to_display_map(result.attribution.values, settings.default_of("reduction"),
                              None if clip >= 100 else clip)
    return overlay_visibility(view, saliency, settings.default_of("cmap"),
                              settings.default_of("opacity"), fade=settings.default_of("fade"))


@pytest.mark.slow
@pytest.mark.parametrize("sample", list(SAMPLES))
def test_every_bundled_sample_shows_a_clearly_visible_map_at_default_settings(
        default_classifier, sample):
    seen = _default_visibility(default_classifier, read_sample(sample))
    assert seen >= VISIBLE, f"{sample}: only {seen:.0%} of the map's strongest pixels show"


@pytest.mark.slow
def test_the_owl_of_the_walk_through_shows_its_map_too(default_classifier):
    path = shared_path("testimages", "owl.jpg")
    seen = _default_visibility(default_classifier, path.read_bytes())
    assert seen >= VISIBLE, f"owl: only {seen:.0%} of the map's strongest pixels show"


def test_audit_thumbnails_and_overlays_fade_weak_values_as_explore_does():
    """Issue 24 item 6: the Audit's thumbnails were laid over at one opacity, so the low end
    of Viridis washed every photo purple. Where the map is zero the photo must show as it
    is, in the gallery's thumbnail and in the ZIP's overlay PNG."""
    from types import SimpleNamespace

    from PIL import Image

    from pages.lib.audit_gallery import _thumbnail
    from saliency_core.audit.outputs import overlay_png

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    saliency = np.zeros((24, 32), np.float32)
    saliency[:6, :8] = 1.0  # one strong corner, the rest zero
    result = SimpleNamespace(view=photo, saliency=saliency)
    audit = AuditSettings()
    for png in (_thumbnail(result, audit), overlay_png(result, audit)):
        shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert np.array_equal(shown[24:, 32:], photo[24:, 32:])  # no tint where the map is 0
        assert np.abs(shown[:8, :8].astype(int) - photo[:8, :8]).mean() > 30  # the map shows
