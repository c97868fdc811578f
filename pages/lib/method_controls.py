"""The controls for a method's parameters, shared by every page that picks a method."""

from __future__ import annotations

import streamlit as st

from pages.lib import settings
from saliency_core.methods import METHODS
from saliency_core.tf_adapter import KerasClassifier


def render_method_params(method: str, classifier: KerasClassifier) -> dict:
    """Controls for ``method``'s parameters; returns their values (remembered per method)."""
    values = {}
    for param in METHODS[method].params:
        name = settings.param_setting_name(method, param.name)
        if param.name == "layer":
            values["layer"] = settings.bind(
                name, st.selectbox, options=classifier.spatial_layer_names(),
                default=classifier.default_cam_layer(), label="Layer to explain",
                format_func=classifier.describe_layer,
                help="Later layers see larger regions of the image but give coarser maps; "
                     "the last one is Grad-CAM's usual choice.")
        elif param.options:
            values[param.name] = settings.bind(
                name, st.selectbox, options=list(param.options), label=param.label,
                format_func=lambda v, p=param: p.labels.get(v, v), help=param.help)
        else:
            kind = int if isinstance(param.default, int) else float
            values[param.name] = settings.bind(
                name, st.slider, label=param.label, help=param.help,
                min_value=kind(param.minimum), max_value=kind(param.maximum),
                step=kind(param.step))
    return values


def stored_method_params(method: str, classifier: KerasClassifier) -> dict:
    """The method's parameters as last set (on any page), without drawing controls; a
    layer chosen for another model falls back to this model's default layer."""
    params = {}
    for param in METHODS[method].params:
        value = settings.get(settings.param_setting_name(method, param.name))
        if param.name == "layer" and value not in classifier.spatial_layer_names():
            value = classifier.default_cam_layer()  # unset, or chosen for another model
        params[param.name] = value
    return params
