"""Models: what each model needs, where its weights come from, and weights upload."""

import streamlit as st

from pages.lib import ui_common as ui
from saliency_core.models.custom import CustomModelError
from saliency_core.models.preprocessing import PREPROCESSING_LABELS
from saliency_core.models.registry import (
    DEFAULT_MODEL_KEY,
    MODELS,
    WeightsUnavailableError,
    find_local_weights,
    save_uploaded_weights,
    weights_help,
)

MAX_WEIGHTS_MB = 600
CUSTOM_MAX_MB = 200

ui.page_setup()
st.title("Models")
st.markdown(
    "Every model explains its **pre-softmax class score** and runs its own preprocessing "
    "inside the differentiated graph, so maps are always with respect to the pixels you see. "
    "**EfficientNet-Lite0** works offline: its ImageNet weights ship with the app. The Keras "
    "models need their standard ImageNet weights: downloaded automatically when this machine "
    "is online, or supplied as a local file.")

rows = []
for key, spec in MODELS.items():
    if key == DEFAULT_MODEL_KEY:
        status = "ready (bundled weights)"
    else:
        try:
            local = find_local_weights(spec)
            status = f"ready ({local.origin})" if local else "needs weights (download or upload)"
        except WeightsUnavailableError as exc:
            status = f"misconfigured: {exc}"
    rows.append({"model": spec.display_name, "input": f"{spec.input_size[1]}×{spec.input_size[0]}",
                 "preprocessing": spec.preprocessing, "weights": status,
                 "environment variable": "" if key == DEFAULT_MODEL_KEY else spec.env_var})
st.dataframe(rows, hide_index=True, width="stretch")

st.subheader("Upload weights")
choices = [k for k in MODELS if k != DEFAULT_MODEL_KEY]
target = st.selectbox("Model", choices, format_func=lambda k: MODELS[k].display_name,
                      key="weights_model")
st.caption(weights_help(MODELS[target], reason="To use this model offline, supply weights"))
uploaded = st.file_uploader("Weights file (.h5 or .weights.h5)", key="weights_upload",
                            max_upload_size=MAX_WEIGHTS_MB,
                            help=f"HDF5 weights only (no pickles, no code); up to "
                                 f"{MAX_WEIGHTS_MB} MB.")
if uploaded is not None and st.button("Use this weights file", type="primary"):
    if uploaded.size > MAX_WEIGHTS_MB * 1024 * 1024:
        st.error(f"The file is {uploaded.size / 2**20:.0f} MB, above the {MAX_WEIGHTS_MB} MB "
                 "limit.")
    else:
        with st.spinner("Checking the weights against the model…"):
            try:
                source = save_uploaded_weights(target, uploaded.getvalue())
            except WeightsUnavailableError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                st.session_state["weights_errors"].pop(target, None)
                st.success(f"Saved. {MODELS[target].display_name} now loads its weights from "
                           f"the {source.origin}. Pick it in the sidebar.")

st.subheader("Your own model")
st.markdown(
    "Upload a Keras 3 image classifier saved with `model.save('name.keras')`: one image input "
    "of fixed size, one output of class scores. It is loaded in Keras's safe mode, so a model "
    "that carries Python code (a `Lambda` layer, say) is refused and its code never runs. It "
    "stays available on every page for this browser session.")
model_file = st.file_uploader("Model (.keras)", key="custom_model_upload",
                              max_upload_size=CUSTOM_MAX_MB,
                              help=f"Up to {CUSTOM_MAX_MB} MB.")
labels_file = st.file_uploader("Class names (optional .txt, one per line)",
                               key="custom_labels_upload", max_upload_size=2)
preprocessing = st.selectbox(
    "The model's own input scaling", list(PREPROCESSING_LABELS),
    format_func=PREPROCESSING_LABELS.get, key="custom_preprocessing",
    help="Applied inside the differentiated graph, so maps stay with respect to the pixels "
         "you see. Choose 'none' if the model rescales its input itself.")
if model_file is not None and st.button("Add this model", type="primary"):
    with st.spinner("Checking the model…"):
        try:
            key = ui.add_custom_model(model_file.name, model_file.getvalue(),
                                      labels_file.getvalue() if labels_file else None,
                                      preprocessing)
        except CustomModelError as exc:
            st.error(ui.escape_markdown(str(exc)), icon=":material/error:")
        else:
            st.session_state["pending_model"] = key  # selected before the sidebar redraws
            st.session_state["models_flash"] = (
                f"Added {ui.escape_markdown(model_file.name)}. It is now selected in the "
                "sidebar; open Explore or Compare to use it.")
            st.rerun()
if "models_flash" in st.session_state:
    st.success(st.session_state.pop("models_flash"))
for entry in ui.custom_models().values():
    st.caption(f"In this session: {ui.escape_markdown(entry['name'])} "
               f"({entry['classes']} classes, scaling: {entry['preprocessing']}).")
