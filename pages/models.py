"""Models: what each model needs, where its weights come from, and uploads."""

import streamlit as st

from pages.lib import layout, own_models, settings
from pages.lib.server import warm_state
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
from saliency_core.safety.limits import load_limits

MIB = 1024 * 1024


def weights_limit_mb(key: str) -> int:
    """The weights uploader's limit for a model: its file size with room to spare.

    Streamlit's dropzone shows a limit above 500 MB in whole gigabytes, so such a
    limit is a whole gigabyte (VGG16's 528 MB file); all stay within the operator's
    ``max_weights_bytes``.
    """
    need = -(-MODELS[key].weights_size_mb * 5 // 4 // 10) * 10  # +25 %, whole tens of MB
    limit = need if need <= 500 else -(-need // 1000) * 1000
    return max(1, min(limit, load_limits().max_weights_bytes // MIB))



def _status(key: str) -> str:
    if key == DEFAULT_MODEL_KEY:
        return "ready (weights ship with the app)"
    try:
        local = find_local_weights(MODELS[key], own_models.weights_scope())
    except WeightsUnavailableError as exc:
        return f"misconfigured: {exc}"
    return f"ready ({local.origin})" if local else "needs weights (download or upload)"


def _flash(message: str) -> None:
    st.session_state["models_flash"] = message


layout.page_setup()
st.title("Models")
st.markdown(
    "Every model explains its **class score before softmax** and runs its own input scaling "
    "inside the differentiated graph, so maps are always with respect to the pixels you see. "
    "**EfficientNet-Lite0** works offline: its ImageNet weights ship with the app. The Keras "
    "models need their standard ImageNet weights: downloaded automatically when this machine "
    "is online, or supplied as a local file.")
if "models_flash" in st.session_state:
    st.success(st.session_state.pop("models_flash"), icon=":material/check_circle:")

statuses = {key: _status(key) for key in MODELS}  # one weights look-up per model and run
st.table(  # an HTML table: long cells wrap between words instead of being cut off
    [{"model": spec.display_name, "input": f"{spec.input_size[1]}×{spec.input_size[0]}",
      "input scaling": PREPROCESSING_LABELS.get(spec.preprocessing, spec.preprocessing),
      "weights": statuses[key],
      "environment variable": "" if key == DEFAULT_MODEL_KEY else spec.env_var}
     for key, spec in MODELS.items()])
warm = warm_state()
if warm.ready.is_set() and warm.seconds is not None:
    st.caption(f"{MODELS[DEFAULT_MODEL_KEY].display_name} was loaded and traced "
               f"{warm.seconds:.1f} s after the server started, before any visitor, so nobody "
               "waits for it.")

st.subheader("Upload weights")
scope = own_models.weights_scope()
st.caption("Weights you upload serve **only this browser session**; other visitors do not "
           "see them." if scope else
           "The operator has allowed shared uploads: weights you upload serve **every "
           "visitor** of this server.")
choices = [k for k in MODELS if k != DEFAULT_MODEL_KEY]
target = st.selectbox("Model", choices, format_func=lambda k: MODELS[k].display_name,
                      key="weights_model")
status = statuses[target]
if status.startswith("ready"):
    st.caption(f"{MODELS[target].display_name} is {status}. Uploading another file replaces "
               "it for this session.")
else:
    st.caption(weights_help(MODELS[target], reason="To use this model offline, supply weights"))
limit_mb = weights_limit_mb(target)
limit_text = f"{limit_mb // 1000} GB" if limit_mb % 1000 == 0 else f"{limit_mb} MB"
uploaded = st.file_uploader(f"Weights file (.h5 or .weights.h5, up to {limit_text})",
                            key=f"weights_upload_{st.session_state.get('weights_round', 0)}",
                            max_upload_size=limit_mb,
                            help="HDF5 weights only (no pickles, no code).")
if uploaded is not None and st.button("Use this weights file", type="primary"):
    if uploaded.size > limit_mb * MIB:  # the browser's check can be skipped
        st.error(f"The file is {uploaded.size / MIB:.0f} MB, above the {limit_text} limit.")
    else:
        with st.spinner("Checking the weights against the model…"):
            try:
                source = save_uploaded_weights(target, uploaded.getvalue(), scope)
            except WeightsUnavailableError as exc:
                st.error(layout.escape_markdown(str(exc)), icon=":material/error:")
            else:
                st.session_state["weights_errors"].pop(target, None)
                # a fresh, empty uploader: the saved file is not offered for checking again
                st.session_state["weights_round"] = st.session_state.get("weights_round", 0) + 1
                _flash(f"Saved. {MODELS[target].display_name} now loads its weights from the "
                       f"{source.origin}. Pick it in the sidebar.")
                st.rerun()  # the status table above shows the new source

st.subheader("Your own model")
st.markdown(
    "Upload a Keras 3 image classifier saved with `model.save('name.keras')`: one image input "
    "of fixed size, one output of class scores. It is loaded in Keras's safe mode, so a model "
    "that carries Python code (a `Lambda` layer, say) is refused and its code never runs. It "
    "stays available on every page **for this browser session**: a reload or a shared link "
    "does not bring it back, so upload it again then.")
custom_max_mb = max(1, min(500, load_limits().max_model_bytes // MIB))
labels_max_mb = max(1, min(500, load_limits().max_labels_bytes // MIB))
model_file = st.file_uploader(f"Model (.keras, up to {custom_max_mb} MB)",
                              key="custom_model_upload", max_upload_size=custom_max_mb)
labels_file = st.file_uploader(f"Class names (optional .txt, one per line, up to "
                               f"{labels_max_mb} MB)", key="custom_labels_upload",
                               max_upload_size=labels_max_mb)
preprocessing = st.selectbox(
    "The model's own input scaling", list(PREPROCESSING_LABELS),
    format_func=PREPROCESSING_LABELS.get, key="custom_preprocessing",
    help="Applied inside the differentiated graph, so maps stay with respect to the pixels "
         "you see. Choose 'none' if the model rescales its input itself.")
if model_file is not None and st.button("Add this model", type="primary"):
    too_big = [(f.name, limit) for f, limit in ((model_file, custom_max_mb),
                                               (labels_file, labels_max_mb))
               if f is not None and f.size > limit * 1024 * 1024]
    if too_big:
        name, limit = too_big[0]
        st.error(f"**{layout.escape_markdown(name)}** is larger than {limit} MB.",
                 icon=":material/error:")
    else:
        with st.spinner("Checking the model…"):
            try:
                key, removed = own_models.add_custom_model(
                    model_file.name, model_file.getvalue(),
                    labels_file.getvalue() if labels_file else None, preprocessing)
            except CustomModelError as exc:
                st.error(layout.escape_markdown(str(exc)), icon=":material/error:")
            else:
                st.session_state["pending_model"] = key  # selected before the sidebar redraws
                settings.put("class", None)
                settings.put("contrast", None)
                note = ("" if not removed else
                        f" To stay within {own_models.MAX_OWN_MODELS} models per session, "
                        "your oldest was removed: "
                        + ", ".join(layout.escape_markdown(n) for n in removed) + ".")
                _flash(f"Added {layout.escape_markdown(model_file.name)}. It is now selected "
                       f"in the sidebar; open Explore or Compare to use it.{note}")
                st.rerun()
for entry in own_models.custom_models().values():
    st.caption(f"In this session: {layout.escape_markdown(entry['name'])} "
               f"({entry['classes']} classes, input scaling: "
               f"{PREPROCESSING_LABELS.get(entry['preprocessing'], entry['preprocessing'])}).")
