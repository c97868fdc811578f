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
