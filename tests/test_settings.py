"""The settings table: one default per setting, strict parsing of shared links, and
honest handling of links whose photo or model cannot travel with them."""

from __future__ import annotations

import pytest

from pages.lib import settings
from saliency_core.methods import METHODS


def test_every_method_parameter_has_exactly_one_default_from_its_method():
    for key, cls in METHODS.items():
        for param in cls.params:
            assert settings.default_of(f"{key}.{param.name}") == param.default
    assert settings.defaults()["cmap"] == "viridis"  # perceptually uniform by default


def test_a_full_link_round_trips():
    query = {"model": "efficientnet_lite0", "sample": "coffee", "class": "968",
             "method": "smoothgrad", "smoothgrad.samples": "30", "smoothgrad.noise": "0.2",
             "cmap": "cividis", "opacity": "0.7", "clip": "97.5", "reduction": "l2",
             "score": "probability", "fit": "squash", "contrast": "967", "fade": "0"}
    values, notices = settings.read_query(query)
    assert notices == []
    assert values == {"model": "efficientnet_lite0", "sample": "coffee", "class": 968,
                      "method": "smoothgrad", "smoothgrad.samples": 30,
                      "smoothgrad.noise": 0.2, "cmap": "cividis", "opacity": 0.7,
                      "clip": 97.5, "reduction": "l2", "score": "probability",
                      "fit": "squash", "contrast": 967, "fade": False}


@pytest.mark.parametrize("name, raw", [("class", "²"), ("class", "9" * 4301), ("class", "-1"),
                                       ("class", " 3"), ("opacity", "nan"),
                                       ("opacity", "1.5"), ("clip", "1e9"), ("clip", "80"),
                                       ("smoothgrad.samples", "0"),
                                       ("smoothgrad.samples", "101"),
                                       ("integrated_gradients.steps", "3.5"),
                                       ("gradcam.layer", "<b>x</b>"), ("cmap", "hot"),
                                       ("model", "custom"), ("source", "Upload")])
def test_odd_values_are_dropped_not_trusted(name, raw):
    values, _notices = settings.read_query({name: raw})
    assert name not in values


def test_a_link_from_an_upload_keeps_its_class_only_for_the_same_photo():
    values, notices = settings.read_query({"photo": "0123456789ab", "class": "968",
                                           "cmap": "inferno"})
    assert "class" not in values and values["cmap"] == "inferno"
    assert values["pending_photo"] == ("0123456789ab", 968, None)
    assert notices == [settings.LinkNotice("photo", "0123456789ab", 968)]
    values, notices = settings.read_query({"photo": "../x", "class": "3"})
    assert "class" not in values and "pending_photo" not in values
    assert notices[0].kind == "photo"


def test_a_link_naming_an_own_model_applies_none_of_its_classes():
    values, notices = settings.read_query({"model": "custom:0123456789ab-unit", "class": "2",
                                           "contrast": "1", "gradcam.layer": "conv2d"})
    assert "model" not in values and "class" not in values and "contrast" not in values
    assert "gradcam.layer" not in values
    assert notices == [settings.LinkNotice("model", "custom:0123456789ab-unit", 2)]


def test_the_lesson_settings_travel_only_in_the_lesson_pages_links():
    values, _ = settings.read_query({"lesson.k": "500", "lesson.eps": "0.1-30"})
    assert values == {"lesson.k": 500, "lesson.eps": (0.1, 30.0)}
    for raw in ("0.1-0.1", "30-0.1", "0.1-30-100", "0.7-30", "1e-3-1", "-", ""):
        assert "lesson.eps" not in settings.read_query({"lesson.eps": raw})[0], raw
    for raw in ("7", "0", "50000"):
        assert "lesson.k" not in settings.read_query({"lesson.k": raw})[0], raw


def test_lesson_settings_are_written_only_by_their_page(monkeypatch):
    import streamlit as st

    prefs = settings.defaults()
    prefs["lesson.eps"] = (0.003, 100.0)
    monkeypatch.setattr(st, "session_state", {settings.PREFS: prefs})
    explore = settings.url_values("vanilla", share_sample=True, photo_digest=None)
    lesson = settings.url_values("vanilla", share_sample=True, photo_digest=None,
                                 page=settings.LESSON_PAGE)
    assert not any(k.startswith("lesson.") for k in explore)
    assert lesson["lesson.k"] == "100" and lesson["lesson.eps"] == "0.003-100"
    assert settings.read_query(lesson)[0]["lesson.eps"] == (0.003, 100.0)


def test_a_class_the_links_model_does_not_have_is_dropped_with_a_notice():
    values, notices = settings.read_query({"class": "999999", "contrast": "1000",
                                           "cmap": "inferno"})
    assert "class" not in values and "contrast" not in values and values["cmap"] == "inferno"
    assert [(n.kind, n.class_index) for n in notices] == [("class", 999999), ("class", 1000)]
    assert "has classes 0 to 999" in notices[0].detail
    assert settings.read_query({"class": "999", "contrast": "0"})[0] == {"class": 999,
                                                                         "contrast": 0}
    values, notices = settings.read_query({"photo": "0123456789ab", "class": "5000"})
    assert values["pending_photo"] == ("0123456789ab", None, None)  # not kept for the photo
