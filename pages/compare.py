"""Compare: several methods (rows) x several classes (columns) for one image and model."""

import streamlit as st

from pages.lib import ui_common as ui
from saliency_core.labels import shorten_label
from saliency_core.methods import METHODS
from saliency_core.plotting import COLORMAP_LABELS, COLORMAPS, make_comparison_figure
from saliency_core.postprocess import REDUCTIONS, normalize_jointly, reduce_channels

DEFAULT_METHODS = ["vanilla", "smoothgrad", "integrated_gradients", "gradcam"]
CONFIG = {"displaylogo": False, "toImageButtonOptions": {"filename": "saliency-compare"}}

ui.page_setup()
st.title("Compare")
st.caption("Which parts of a map hold up? Each row is one method with one colour scale shared "
           "by its cells; each column is one class. Method parameters are the ones last set "
           "on the Explore page.")

model_key = ui.pref("model")
classifier = ui.classifier_for(model_key)
if classifier is None:
    st.stop()

controls, grid = st.columns([1.2, 2.8], gap="large")
with controls:
    image = ui.choose_image()
    if image is None:
        st.stop()
    fit = ui.pref("fit")
    model_input, view, token, preds = ui.prepare_image(model_key, classifier, image, fit)
    names = classifier.class_names
    top = [p.index for p in preds]
    methods = ui.bound_widget("compare.methods", st.multiselect, options=list(METHODS),
                              default=DEFAULT_METHODS, label="Methods (rows)",
                              format_func=lambda k: METHODS[k].label)
    class_options = top + [i for i in range(len(names)) if i not in top]
    context = f"{image.digest[:12]}_{model_key}_{fit}"
    classes = ui.bound_widget(f"compare.classes.{context}", st.multiselect,
                              options=class_options, default=top[:3],
                              label="Classes (columns)", max_selections=5,
                              format_func=lambda i: f"{shorten_label(names[i])} (#{i})")
    reduction = ui.bound_widget("reduction", st.selectbox, options=list(REDUCTIONS),
                                label="Colour channels", format_func=REDUCTIONS.get)
    cmap = ui.bound_widget("cmap", st.selectbox, options=list(COLORMAPS), label="Colour map",
                           format_func=COLORMAP_LABELS.get)
    score = ui.pref("score")

with grid:
    if not methods or not classes:
        st.info("Pick at least one method and one class.")
        st.stop()
    clip = ui.pref("clip")
    maps, notes = [], []
    for method in methods:
        params = ui.method_params(method, classifier)
        row, row_notes = [], []
        for class_index in classes:
            explanation = ui.run_explanation(
                f"{METHODS[method].label} for {shorten_label(names[class_index])}",
                image.digest, model_key, token, fit, method, tuple(sorted(params.items())),
                class_index, None, score, classifier, model_input)
            row.append(reduce_channels(explanation.attribution.values, reduction))
            row_notes.append(f"{explanation.seconds:.2f} s")
        maps.append(normalize_jointly(row, None if clip >= 100 else clip,
                                      signed=reduction == "signed"))
        notes.append(row_notes)
    st.plotly_chart(
        make_comparison_figure(view, maps, [METHODS[m].label for m in methods],
                               [shorten_label(names[c]) for c in classes], notes, cmap,
                               signed=reduction == "signed"),
        width="stretch", config=CONFIG, key="compare_chart")
    st.caption("Times are for the first computation; repeated views come from the cache.")
