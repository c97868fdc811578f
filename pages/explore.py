"""Explore: one image, one model, its top-5, and the saliency map of a chosen class."""

import io

import numpy as np
import streamlit as st

from pages.lib import ui_common as ui
from saliency_core.imaging import FIT_MODES
from saliency_core.labels import shorten_label
from saliency_core.methods import METHODS
from saliency_core.pipeline import to_display_map
from saliency_core.plotting import (
    COLORMAP_LABELS,
    COLORMAPS,
    blend_overlay,
    encode_png,
    make_overlay_figure,
    make_side_by_side_figure,
    make_topk_figure,
)
from saliency_core.postprocess import REDUCTIONS

SCORE_LABELS = {
    "logit": "Class score S_c (pre-softmax, as in the paper)",
    "probability": "Softmax probability (as in the TF2 blog)",
}
SCORE_HELP = ("The paper differentiates the raw class score S_c. The softmax probability "
              "also depends on every other class's score, so its gradient mixes in evidence "
              "against competing classes and vanishes when the model is very confident.")
FIT_LABELS = {"crop": "Centre crop (largest square)", "squash": "Squash whole image"}
CONFIG = {"displaylogo": False, "toImageButtonOptions": {"filename": "saliency"}}


def _pick_class(preds, class_names, digest: str, model_key: str, fit: str) -> int:
    """Radio over the top-5 plus a search over all classes; returns the class index."""
    context = f"{digest[:12]}_{model_key}_{fit}"
    if st.session_state.get("class_context") not in (None, context):
        st.session_state[ui.PREFS]["class"] = None  # new image or model: back to top-1
    st.session_state["class_context"] = context
    top = [p.index for p in preds]
    chosen = ui.pref("class")
    if chosen is None or not 0 <= chosen < len(class_names):
        chosen = top[0]
    options = top + [-1]
    probs = {p.index: p.probability for p in preds}
    pick = st.radio(
        "Class to explain", options, index=options.index(chosen if chosen in top else -1),
        key=f"pick_{context}",
        format_func=lambda i: ("Another class…" if i == -1 else
                               f"{shorten_label(class_names[i])} ({100 * probs[i]:.1f}%)"))
    if pick == -1:
        pick = st.selectbox(
            f"Search all {len(class_names)} classes", range(len(class_names)),
            index=chosen if chosen not in top else 0, key=f"search_{context}",
            format_func=lambda i: f"{class_names[i]} (#{i})")
    st.session_state[ui.PREFS]["class"] = int(pick)
    return int(pick)


def _pick_contrast(preds, class_names, class_index: int) -> int | None:
    """Optional second class: explain S_a - S_b, what separates the two classes."""
    on = ui.bound_widget("contrast_on", st.toggle, default=False,
                         label="Contrast with another class",
                         help="Explain the difference of two class scores (S_a − S_b): what "
                              "makes the model prefer one class over the other.")
    if not on:
        return None
    others = [p.index for p in preds if p.index != class_index]
    options = others + [i for i in range(len(class_names)) if i not in others
                        and i != class_index]
    return ui.bound_widget(f"contrast.{class_index}", st.selectbox, options=options,
                           default=others[0], label="Minus the score of",
                           format_func=lambda i: f"{class_names[i]} (#{i})")


def _format_info(key: str, value) -> str:
    if key == "completeness gap":
        return f"completeness gap {100 * value:.2f}%"
    if isinstance(value, float):
        return f"{key} {value:.4g}"
    return f"{key} {value}"


ui.page_setup()
st.title("Explore")
st.caption("Pick an image and a class: the map shows which pixels the class score is most "
           "sensitive to.")

model_key = ui.pref("model")
model_name = ui.model_display_name(model_key)
classifier = ui.classifier_for(model_key)
if classifier is None:
    st.stop()

controls, display = st.columns([1, 2], gap="large")
with controls:
    st.subheader("1 · Image")
    image = ui.choose_image()
    if image is None:
        st.stop()

    with st.expander("Options", expanded=False):
        fit = ui.bound_widget("fit", st.radio, options=list(FIT_MODES),
                              label="Fit the image to the model",
                              format_func=FIT_LABELS.get,
                              help="Centre crop keeps the aspect ratio, as in ImageNet "
                                   "evaluation; squash keeps every pixel but distorts shapes.")
        score = ui.bound_widget("score", st.radio, options=list(SCORE_LABELS),
                                label="Score to explain", format_func=SCORE_LABELS.get,
                                help=SCORE_HELP)
        reduction = ui.bound_widget("reduction", st.selectbox, options=list(REDUCTIONS),
                                    label="Colour channels", format_func=REDUCTIONS.get)
        clip = ui.bound_widget("clip", st.slider, label="Clip the map at this percentile",
                               min_value=90.0, max_value=100.0, step=0.5,
                               help="Values above this percentile are clipped, so a few "
                                    "extreme pixels do not wash out the rest. 100 turns "
                                    "clipping off.")

    model_input, view, token, preds = ui.prepare_image(model_key, classifier, image, fit)

    st.subheader("2 · Class")
    class_index = _pick_class(preds, classifier.class_names, image.digest, model_key, fit)

    st.subheader("3 · Method")
    method = ui.bound_widget("method", st.selectbox, options=list(METHODS), label="Method",
                             format_func=lambda k: METHODS[k].label)
    st.caption(f"{METHODS[method].description} ({METHODS[method].citation})")
    params = ui.render_method_params(method, classifier)
    contrast_index = _pick_contrast(preds, classifier.class_names, class_index)
    cmap = ui.bound_widget("cmap", st.selectbox, options=list(COLORMAPS), label="Colour map",
                           format_func=COLORMAP_LABELS.get)
    opacity = ui.bound_widget("opacity", st.slider,
                              label="Opacity (initial view and PNG download)",
                              min_value=0.0, max_value=1.0, step=0.1)

with display:
    explanation = ui.run_explanation(
        METHODS[method].label, image.digest, model_key, token, fit, method,
        tuple(sorted(params.items())), class_index, contrast_index, score, classifier,
        model_input)
    values = explanation.attribution.values
    saliency = to_display_map(values, reduction, None if clip >= 100 else clip)
    signed = reduction == "signed"
    class_name = classifier.class_names[class_index]
    score_name = "S_c" if score == "logit" else "p_c"
    contrast_text = ("" if contrast_index is None else
                     f" minus **{shorten_label(classifier.class_names[contrast_index])}** "
                     f"(class {contrast_index})")
    st.markdown(f"**{METHODS[method].label}** for **{shorten_label(class_name)}** "
                f"(class {class_index}){contrast_text} · {ui.escape_markdown(model_name)}")
    overlay_tab, side_tab = st.tabs(["Overlay", "Side by side"])
    with overlay_tab:
        st.plotly_chart(make_overlay_figure(view, saliency, cmap, opacity, signed),
                        width="stretch", config=CONFIG, key="overlay_chart")
        st.caption("Drag the slider under the image to change the map's opacity instantly; "
                   "hover to read values.")
    with side_tab:
        st.plotly_chart(make_side_by_side_figure(view, saliency, cmap, signed),
                        width="stretch", config=CONFIG, key="side_chart")
    if contrast_index is not None:
        score_name = f"{score_name} − {score_name.replace('c', 'd')}"
    info = explanation.attribution.info
    if info:
        st.caption(" · ".join(_format_info(k, v) for k, v in info.items()))
    st.caption(f"{score_name} = {explanation.attribution.score:.4g} · computed in "
               f"{explanation.seconds:.2f} s · model input {classifier.input_size[1]}×"
               f"{classifier.input_size[0]}, shown at {view.shape[1]}×{view.shape[0]}.")

    stem = f"saliency_{model_key}_{class_index}_{method}"
    raw = io.BytesIO()
    np.save(raw, values)
    col_png, col_npy = st.columns(2)
    col_png.download_button(
        "Download overlay (PNG)",
        data=encode_png(blend_overlay(view, saliency, cmap, opacity, signed)),
        file_name=f"{stem}.png", mime="image/png", icon=":material/image:",
        key="download_png")
    col_npy.download_button(
        "Download raw map (.npy)", data=raw.getvalue(), file_name=f"{stem}.npy",
        mime="application/octet-stream", icon=":material/data_array:", key="download_npy",
        help="The attribution at the model's input resolution, shape (H, W, 3) (or (H, W, 1) "
             "for Grad-CAM and occlusion), before "
             "channel reduction and normalisation.")

    st.markdown("**Top-5 predictions**")
    top_positions = [p.index for p in preds]
    st.plotly_chart(
        make_topk_figure([shorten_label(p.name) for p in preds], [p.probability for p in preds],
                         highlight=top_positions.index(class_index)
                         if class_index in top_positions else None),
        width="stretch", config=CONFIG, key="topk_chart")

ui.sync_query_params(include_sample=ui.pref("source") == "Sample")
