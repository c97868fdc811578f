"""Explore: one image, one model, its top classes, and the saliency map of a chosen class."""

import io

import numpy as np
import streamlit as st

from pages.lib import (
    audit_gallery,
    caching,
    layout,
    method_controls,
    page,
    settings,
)
from pages.lib.overlay_bridge import mount_overlay_bridge
from saliency_core.labels import rank_classes, shorten_label
from saliency_core.methods import METHODS, Target
from saliency_core.methods.integrated_gradients import MAX_STEPS as IG_MAX_STEPS
from saliency_core.pipeline import display_reduction
from saliency_core.plotting import (
    COLORMAP_LABELS,
    COLORMAPS,
    FADE_FULL_AT,
    make_legend,
    make_overlay_figure,
    make_side_by_side_figure,
    make_topk_figure,
    render_overlay_png,
)
from saliency_core.postprocess import REDUCTIONS, normalize_map, reduce_channels
from saliency_core.safety.budget import OverBudgetError

SCORE_LABELS = {
    "logit": "Class score, before softmax (the paper's choice)",
    "probability": "Probability, after softmax (the TF2 blog's choice)",
}
SCORE_HELP = ("The paper differentiates the raw class score (the logit, before softmax). The "
              "probability also depends on every other class's score, so its gradient mixes "
              "in evidence against competing classes and vanishes when the model is very "
              "confident.")
CONFIG = {"displaylogo": False, "displayModeBar": False, "scrollZoom": False}
SIDE_CONFIG = {"displaylogo": False, "scrollZoom": False,
               "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
               "toImageButtonOptions": {"filename": "saliency-side-by-side"}}
SEARCH = -1


def pick_class(preds, class_names, digest: str, model_key: str, probabilities) -> int:
    """Radio over the top classes plus a ranked search over all; returns the class index.

    A new image or model goes back to its top-1 class; everything else keeps it. Every
    class shows its probability (``probabilities``, ``(K,)``), a found one as well.
    """
    top = [p.index for p in preds]
    chosen, changed = settings.class_for_image(digest, model_key, top[0], len(class_names))
    if changed:
        st.session_state["class_searching"] = False
    probs = {p.index: p.probability for p in preds}
    searching = st.session_state.get("class_searching", False) or chosen not in top
    st.session_state["w_class_pick"] = SEARCH if searching else chosen

    def picked() -> None:
        value = st.session_state["w_class_pick"]
        st.session_state["class_searching"] = value == SEARCH
        if value != SEARCH:
            settings.put("class", value)

    st.radio(f"Class to explain (top {len(top)})", top + [SEARCH], key="w_class_pick",
             on_change=picked,
             format_func=lambda i: ("Another class…" if i == SEARCH else
                                    f"{layout.escape_markdown(shorten_label(class_names[i]))}"
                                    f" ({100 * probs[i]:.1f}%)"))
    if searching:
        query = settings.bind("class_query", st.text_input, default="",
                              label=f"Search all {len(class_names)} classes",
                              placeholder="a name, e.g. golden retriever, or a class number")
        found = rank_classes(query, class_names, limit=50) if query.strip() else []
        options = ([chosen] if chosen not in found else []) + found
        if query.strip() and not found:
            st.caption("No class matches that; try another word.")

        def searched() -> None:
            settings.put("class", st.session_state["w_class_search"])

        st.session_state["w_class_search"] = chosen
        st.selectbox("Matching classes", options, key="w_class_search", on_change=searched,
                     format_func=lambda i: f"{class_names[i]} (#{i}), "
                                           f"{format_probability(probabilities[i])}")
    return int(settings.get("class"))


def format_probability(probability: float) -> str:
    """A probability for a label: ``"38.5%"``, and ``"<0.01%"`` rather than a bare 0."""
    return f"{100 * probability:.1f}%" if probability >= 0.001 else (
        f"{100 * probability:.2f}%" if probability >= 0.0001 else "<0.01%")


def pick_contrast(preds, class_names, class_index: int) -> int | None:
    """Optional second class b: explain S_a − S_b, what separates the two classes."""
    if len(class_names) < 2:
        return None  # nothing to contrast with
    current = settings.get("contrast")
    others = [p.index for p in preds if p.index != class_index]
    if not others:
        others = [i for i in range(len(class_names)) if i != class_index][:1]

    def toggled() -> None:
        settings.put("contrast", others[0] if st.session_state["w_contrast_on"] else None)

    st.session_state["w_contrast_on"] = current is not None
    on = st.toggle("Contrast with another class", key="w_contrast_on", on_change=toggled,
                   help="Explain the difference of two class scores, S_a − S_b: which pixels "
                        "make the model prefer class a over class b, and which the reverse.")
    if not on:
        return None
    options = others + [i for i in range(len(class_names)) if i not in others
                        and i != class_index]
    if current not in options:
        settings.put("contrast", options[0])
    return settings.bind("contrast", st.selectbox, options=options,
                         label="Class b (its score is subtracted)",
                         format_func=lambda i: f"{shorten_label(class_names[i])} (#{i})")


def _format_info(key: str, value) -> str:
    if key in ("completeness gap", "target gap"):
        return f"{key} {100 * value:.2f}%"
    if isinstance(value, float):
        return f"{key} {value:.4g}"
    return f"{key} {layout.escape_markdown(value)}"


def _download_bytes(kind: str, key: tuple, make) -> bytes:
    """Encoded download bytes, made once per key (a rerun or click never re-encodes)."""
    store = caching.download_store()
    data = store.get((kind, key))
    if data is None:
        data = make()
        store.put((kind, key), data)
    return data


def _npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values)
    return buffer.getvalue()


def finish_page() -> None:
    """The top classes, the overlay bridge and the link: drawn also when the map was refused."""
    with display:
        st.markdown(f"**Top {len(preds)} predictions**")
        top_positions = [p.index for p in preds]
        st.plotly_chart(
            make_topk_figure([shorten_label(p.name) for p in preds],
                             [p.probability for p in preds],
                             highlight=top_positions.index(class_index)
                             if class_index in top_positions else None),
            width="stretch", config=CONFIG, key="topk_chart")
    mount_overlay_bridge(scroll_token=f"{image.digest[:12]}:{model_key}")
    settings.sync_query_params(method, share_sample=chosen.source == "Sample",
                               photo_digest=image.digest)


opening = page.open_page(
    "Explore", "Pick an image and a class: the map shows which pixels the model's score for "
    "that class depends on most.", columns=[1, 2], image_heading="1 · Image", choose_fit=True)
model, chosen, fit, prepared = opening.model, opening.chosen, opening.fit, opening.prepared
model_key, model_name, classifier, token = model.key, model.name, model.classifier, model.token
image, (controls, display) = chosen.image, opening.columns
preds, names = prepared.predictions, classifier.class_names

with controls:
    st.subheader("2 · Class")
    class_index = pick_class(preds, names, image.digest, model_key, prepared.probabilities)
    contrast_index = pick_contrast(preds, names, class_index)
    score = settings.bind("score", st.radio, options=list(SCORE_LABELS),
                          label="Score to explain", format_func=SCORE_LABELS.get,
                          help=SCORE_HELP)

    st.subheader("3 · Method")
    method = settings.bind("method", st.selectbox, options=list(METHODS), label="Method",
                           format_func=lambda k: METHODS[k].label)
    st.caption(f"{METHODS[method].description} ({METHODS[method].citation})")
    params = method_controls.render_method_params(method, classifier)

with display:
    result = st.container(key="result")
with result:
    class_label = shorten_label(names[class_index])
    contrast_label = None if contrast_index is None else shorten_label(names[contrast_index])
    target_text = (f"**{layout.escape_markdown(class_label)}** (class {class_index})"
                   if contrast_label is None else
                   f"**{layout.escape_markdown(class_label)}** (class {class_index}) versus "
                   f"**{layout.escape_markdown(contrast_label)}** (class {contrast_index})")
    st.markdown(f"**{METHODS[method].label}** for {target_text} · "
                f"{layout.escape_markdown(model_name)}")
    figure_slot = st.container()
    col_cmap, col_red, col_clip = st.columns(3)
    signed_contrast = contrast_index is not None
    with col_cmap:
        if signed_contrast or METHODS[method].display == "signed":
            cmap = settings.get("cmap")
            st.caption("**Colour map:** red–blue, centred on 0 (the map has two sides).")
        else:
            cmap = settings.bind("cmap", st.selectbox, options=list(COLORMAPS),
                                 label="Colour map", format_func=COLORMAP_LABELS.get,
                                 help="Perceptually uniform maps show equal differences as "
                                      "equal steps in colour; Jet does not, and invents edges. "
                                      "Signed maps always use red–blue.")
    display_kind = METHODS[method].display
    with col_red:
        if signed_contrast:
            reduction = display_reduction(method, contrast=True)
            st.caption("**Colour channels:** signed sum, so both classes' evidence shows.")
        elif display_kind != "channels":
            reduction = display_reduction(method)
            st.caption("**Colour channels:** none to combine; this method gives one value "
                       "per pixel" + (", shown with its sign." if display_kind == "signed"
                                      else "."))
        else:
            reduction = settings.bind("reduction", st.selectbox, options=list(REDUCTIONS),
                                      label="Colour channels", format_func=REDUCTIONS.get,
                                      help="An attribution has one value per colour channel; "
                                           "the map shows one value per pixel.")
    with col_clip:
        clip = settings.bind("clip", st.slider, label="Clip at percentile",
                             min_value=90.0, max_value=100.0, step=0.5,
                             help="Values above this percentile are shown at full strength, "
                                  "so a few extreme pixels do not wash out the rest. 100 "
                                  "turns clipping off.")
    with st.container():
        fade = settings.bind("fade", st.toggle, label="Fade weak values",
                             help="Weak values let the photo show through, so the strong ones "
                                  "stand out; off, the whole map is laid over the photo at the "
                                  "chosen opacity (the blog's look).")
    signed = reduction == "signed"
    request = caching.MapRequest(image.digest, model_key, token, fit, method,
                                 tuple(sorted(params.items())), class_index, contrast_index,
                                 score)
    with figure_slot:
        try:
            explanation, from_cache = caching.run_explanation(METHODS[method].label, request,
                                                              classifier, prepared.model_input)
        except OverBudgetError as exc:
            st.error(f"**This map is too much work for this server.** "
                     f"{layout.escape_markdown(str(exc))}", icon=":material/hourglass_disabled:")
            finish_page()
            st.stop()
    values = explanation.attribution.values
    clip_at = None if clip >= 100 else clip
    raw = reduce_channels(values, reduction)  # once: the map and the hover both use it
    saliency = normalize_map(raw, clip_at, signed=signed)
    legend = make_legend(signed, (class_label, contrast_label) if signed_contrast else None)
    opacity = settings.snap_opacity(settings.get("opacity"))
    view = prepared.view
    look = (request, reduction, clip_at, cmap, legend)  # all that decides the figures
    with figure_slot:
        # One figure at a time: each carries the photo and the whole map, so tabs would
        # send both to every browser (twice the bytes of every view).
        shown = st.segmented_control("View", ["Overlay", "Side by side"], default="Overlay",
                                     key="w_view", label_visibility="collapsed") or "Overlay"
        if shown == "Overlay":
            st.plotly_chart(caching.build_figure(
                ("overlay", *look, opacity, fade), lambda: make_overlay_figure(
                    view, saliency, cmap, opacity, legend=legend, raw=raw, fade=fade)),
                width="stretch", config=CONFIG, key="overlay_chart")
        else:
            st.plotly_chart(caching.build_figure(
                ("side", *look), lambda: make_side_by_side_figure(view, saliency, cmap,
                                                                  legend=legend, raw=raw)),
                width="stretch", config=SIDE_CONFIG, key="side_chart")

    reading = (f"Red pixels favour **{layout.escape_markdown(class_label)}**, blue ones "
               f"**{layout.escape_markdown(contrast_label)}**: the map explains S_a − S_b, "
               "signed." if signed_contrast else METHODS[method].reading)
    if signed_contrast and display_kind == "unsigned":
        why = ("keeps only evidence that raises the score (its ReLU)"
               if METHODS[method].family == "cams" else
               "ranks regions from 0, the least useful one, upwards")
        st.warning(f"{METHODS[method].label} {why}, so this contrast map can show where class "
                   "a wins but never where class b does: it has no blue. Use a gradient method "
                   "to see both sides.", icon=":material/info:")
    clip_text = ("not clipped" if clip_at is None else
                 f"values above the {clip:g}th percentile are shown at full strength")
    st.caption(f"{reading} The map is scaled to this image alone ({clip_text}), so colours "
               "cannot be compared between images. Drag the opacity slider under the image; "
               "hover or tap a pixel to read it.")
    with st.expander("How to read this map"):
        st.markdown(
            f"- **What bright means:** {METHODS[method].reading}\n"
            "- **Scaled per image:** the map is normalised to 0–1 on this image "
            "(signed maps to −1…1, 0 staying 0), then clipped at the chosen percentile. The "
            "brightest pixel is always 1, even when the model barely cares about any pixel.\n"
            "- **Fading** (*Fade weak values*, on by default): each pixel's colour covers the "
            f"photo in proportion to its value. From {FADE_FULL_AT:g} of the scale up it gets "
            "the full opacity of the slider; weaker values fade towards transparent (with the "
            "square root of the value), so the photo shows through where the map is low and "
            "the strong pixels stand out. Off, every pixel gets the same opacity and the low "
            "end of the colour map tints the whole photo.\n"
            "- **Hover values:** the model-input pixel, the map value after scaling, and the "
            "raw attribution before scaling (after combining the colour channels).\n"
            "- **What a map cannot tell you:** whether the model is right, *why* a region "
            "matters (shape, texture or colour), or how pixels work together. A map can look "
            "plausible and still not depend on the model; the sanity checks of Adebayo et al. "
            "2018 test that.")

    info = explanation.attribution.info
    if info:
        st.caption(" · ".join(_format_info(k, v) for k, v in info.items()))
    if signed_contrast:
        score_words = ("Difference of the class scores before softmax, S_a − S_b"
                       if score == "logit" else
                       "Difference of the probabilities after softmax, p_a − p_b")
    else:
        score_words = ("Class score (before softmax)" if score == "logit" else
                       "Probability (after softmax)")
    shown_probability = (f" · probability {format_probability(prepared.probabilities[c])}"
                         + (f" for {layout.escape_markdown(n)}" if signed_contrast else "")
                         for c, n in ((class_index, class_label),
                                      (contrast_index, contrast_label)) if c is not None)
    timing = ("from cache" if from_cache else f"computed in {explanation.seconds:.2f} s")
    gap = info.get("completeness gap") if info else None
    target = info.get("target gap") if info else None
    if gap is not None and target is not None and abs(gap) > target:
        st.warning(f"The target completeness gap of {100 * target:g}% was not reached: "
                   f"{100 * abs(gap):.2f}% after {info['steps used']} steps. Each refinement "
                   f"doubles the steps and stops before {IG_MAX_STEPS}, so start from fewer "
                   "steps (25, 50 or 100) for more doublings, or use the adaptive grid.",
                   icon=":material/warning:")
    elif gap is not None and abs(gap) > 0.05:
        st.caption(f"A completeness gap of {100 * abs(gap):.0f}% means the attributions do not "
                   "yet add up to the score change: raise **Steps**"
                   + (" (200 usually brings it under 3%)." if method == "integrated_gradients"
                      else "."))
    st.caption(f"{score_words}: {explanation.attribution.score:.4g}"
               f"{''.join(shown_probability)} · {timing} · "
               f"model input {classifier.input_size[1]}×{classifier.input_size[0]}, shown "
               f"over the {view.shape[1]}×{view.shape[0]} region it was made from.")

    versus = f"_vs_{contrast_index}" if contrast_index is not None else ""
    stem = f"{chosen.stem}_{model_key.replace(':', '-')}_class{class_index}{versus}_{method}"
    caption = (f"{model_name} · {METHODS[method].label} · {class_label} (class {class_index})"
               + (f" − {contrast_label} (class {contrast_index})" if signed_contrast else "")
               + f" · {chosen.name}")
    png_key = (request, reduction, clip_at, cmap, opacity, fade)
    st.markdown("**Download**")
    col_png, col_npy, col_json = st.columns(3)
    col_png.download_button(
        "Overlay PNG",
        data=lambda: _download_bytes("png", png_key, lambda: render_overlay_png(
            view, saliency, cmap, opacity, legend, caption, fade)),
        file_name=f"{stem}.png", mime="image/png", icon=":material/image:",
        key="download_png", on_click="ignore",
        help="Download the overlay at the current opacity, with its colour bar and a caption "
             "line, as a PNG image.")
    col_npy.download_button(
        "Raw map .npy",
        data=lambda: _download_bytes("npy", request, lambda: _npy_bytes(values)),
        file_name=f"{stem}.npy", mime="application/octet-stream",
        icon=":material/data_array:", key="download_npy", on_click="ignore",
        help="Download the raw map as a NumPy .npy file: the attribution at the model's input "
             "resolution, shape (H, W, 3) (or "
             "(H, W, 1) for Grad-CAM and occlusion), before channel reduction and scaling.")
    col_json.download_button(
        "Provenance",
        data=lambda: _download_bytes("json", (request, reduction, clip_at), lambda:
                                     audit_gallery.provenance_json(
                                         model_key, classifier, image, chosen.name, fit,
                                         prepared.model_input,
                                         Target(class_index, contrast_index, score), method,
                                         params, explanation, reduction, clip_at)),
        file_name=f"{stem}.json", mime="application/json", icon=":material/description:",
        key="download_json", on_click="ignore",
        help="Download the provenance as JSON: everything needed to reproduce this map: the "
             "model and its weights' hash, the "
             "image's hash, the class, the method with every parameter, library versions and "
             "the map's statistics (the same record as the Audit page and command line).")

finish_page()
