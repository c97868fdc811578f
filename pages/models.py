"""Models: what each model needs, where its weights come from, and weights upload."""

import streamlit as st

from pages.lib import ui_common as ui
from saliency_core.models.registry import (
    DEFAULT_MODEL_KEY,
    MODELS,
    WeightsUnavailableError,
    find_local_weights,
    save_uploaded_weights,
    weights_help,
)

MAX_WEIGHTS_MB = 600

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
