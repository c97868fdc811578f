"""Compare: several methods (rows) x several classes (columns) for one image and model."""

import streamlit as st

from pages.lib import caching, layout, method_controls, page, settings
from saliency_core.labels import shorten_label
from saliency_core.methods import FAMILIES, METHODS, methods_by_family
from saliency_core.plotting import (
    COLORMAP_LABELS,
    COLORMAPS,
    choose_cell_height,
    make_colorbar_figure,
    make_comparison_cell,
    make_legend,
)
from saliency_core.postprocess import REDUCTIONS, normalize_jointly, reduce_channels
from saliency_core.safety.budget import OverBudgetError

DEFAULT_METHODS = ["vanilla", "smoothgrad", "integrated_gradients", "gradcam"]
FAMILY_HELP = {
    "gradients": "The gradient at the image, alone or averaged over noisy copies.",
    "paths": "Gradients integrated along a path from a reference image (black, white, "
             "blurred) to this one.",
    "cams": "Maps of a convolutional layer's features: coarse regions.",
    "perturbation": "Forward passes on covered or masked copies of the image: no gradients, "
                    "many passes.",
}
# cells are small: no toolbar over the map (hovering still shows the values)
CELL_CONFIG = {"displayModeBar": False, "scrollZoom": False}


def pick_methods_by_family(chosen: list[str]) -> None:
    """One row of toggles per family: a click adds a method as a row or removes it, and
    the toggles show which are in."""
    groups = methods_by_family()

    def toggled(keys: list[str], widget: str) -> None:
        picked = st.session_state.get(widget) or []
        current = settings.get("compare.methods") or []
        kept = [m for m in current if m not in keys or m in picked]
        settings.put("compare.methods", kept + [m for m in keys if m in picked and m not in kept])

    for family, keys in groups.items():
        widget = f"w_compare.family.{family}"
        st.session_state[widget] = [k for k in keys if k in chosen]
        name, toggles = st.columns([1.4, 6], vertical_alignment="center", gap="small")
        name.markdown(f"**{FAMILIES[family]}**", help=FAMILY_HELP.get(family))
        toggles.pills(FAMILIES[family], options=keys, selection_mode="multi", key=widget,
                      format_func=lambda k: METHODS[k].label, on_change=toggled,
                      args=(keys, widget), label_visibility="collapsed", wrap=True)


def describe_gap(info: dict | None) -> str:
    """Integrated Gradients' completeness gap and steps for a cell's note, else ''."""
    if not info or "completeness gap" not in info:
        return ""
    note = f" · gap {100 * abs(info['completeness gap']):.1f}%, {info['steps used']} steps"
    target = info.get("target gap")
    return note + (" (target missed)" if target is not None
                   and abs(info["completeness gap"]) > target else "")


opening = page.open_page(
    "Compare", "Which parts of a map hold up? Each row is one method with one colour scale "
    "shared by its cells; each column is one class. Method parameters are the ones last set "
    "on the Explore page.", columns=[1, 3])
model, chosen, fit, prepared = opening.model, opening.chosen, opening.fit, opening.prepared
model_key, classifier, token = model.key, model.classifier, model.token
image, names, top, (controls, grid) = chosen.image, model.class_names, opening.top, opening.columns
with controls:
    reduction = settings.bind("reduction", st.selectbox, options=list(REDUCTIONS),
                              label="Colour channels", format_func=REDUCTIONS.get)
    cmap = settings.bind("cmap", st.selectbox, options=list(COLORMAPS), label="Colour map",
                         format_func=COLORMAP_LABELS.get)
    score = settings.get("score")

with grid:
    # one picker per line, chips wrapping: side by side they clipped their chips
    methods = settings.bind("compare.methods", st.multiselect, options=list(METHODS),
                            default=DEFAULT_METHODS, label="Methods (rows)",
                            format_func=lambda k: METHODS[k].label, wrap=True,
                            help="Rows in this order; add more with the toggles below, "
                                 "grouped by family.")
    class_options = top + [i for i in range(len(names)) if i not in top]
    context = f"{image.digest[:12]}_{model_key}_{fit}"
    classes = settings.bind(f"compare.classes.{context}", st.multiselect,
                            options=class_options, default=top[:3],
                            label="Classes (columns, at most 5)", max_selections=5,
                            format_func=lambda i: f"{shorten_label(names[i])} (#{i})",
                            wrap=True)
    pick_methods_by_family(methods)
    if not methods or not classes:
        st.info("Pick at least one method and one class.")
        st.stop()
    clip = settings.get("clip")
    maps, notes, shown, refused = [], [], [], []
    for method in methods:
        params = method_controls.stored_method_params(method, classifier)
        requests = [caching.MapRequest(image.digest, model_key, token, fit, method,
                                       tuple(sorted(params.items())), class_index, None, score)
                    for class_index in classes]
        try:
            results = caching.run_explanations(
                [f"{METHODS[method].label} for {shorten_label(names[c])}" for c in classes],
                requests, classifier, prepared.model_input)  # one batched call where it can
        except OverBudgetError as exc:
            refused.append((method, str(exc)))
            continue
        shown.append(method)
        row = [reduce_channels(e.attribution.values, reduction) for e, _ in results]
        row_notes = [("from cache" if from_cache else f"{e.seconds:.2f} s")
                     + describe_gap(e.attribution.info) for e, from_cache in results]
        maps.append(normalize_jointly(row, None if clip >= 100 else clip,
                                      signed=reduction == "signed"))
        notes.append(row_notes)
    for method, reason in refused:
        st.warning(f"**{METHODS[method].label} is left out: too much work for this server.** "
                   f"{layout.escape_markdown(reason)}", icon=":material/hourglass_disabled:")

if shown:  # the grid spans the page: below the controls, not beside them
    signed = reduction == "signed"
    legend_column, _ = st.columns([2, 3])
    legend_column.plotly_chart(make_colorbar_figure(cmap, make_legend(signed)),
                               width="stretch", config=CELL_CONFIG, key="compare_legend")
    height = choose_cell_height(len(classes))
    for method, row, row_notes in zip(shown, maps, notes, strict=True):
        # a row: the method's name, then one cell per class; each cell holds its class,
        # its time and note, and its map, so they stay together when a phone stacks them
        st.markdown(f"#### {METHODS[method].label}")
        for column, class_index, saliency, note in zip(st.columns(len(classes)), classes,
                                                        row, row_notes, strict=True):
            with column:
                st.markdown(f"**{layout.escape_markdown(shorten_label(names[class_index]))}**"
                            f" (#{class_index})  \n:small[:gray[{layout.escape_markdown(note)}]]")
                st.plotly_chart(
                    make_comparison_cell(prepared.view, saliency, cmap, signed=signed,
                                         height=height),
                    width="stretch", config=CELL_CONFIG,
                    key=f"compare_cell_{method}_{class_index}")
    st.caption("Each row is one method, its cells on one colour scale; each cell names its "
               "class and the time it took to compute, or \"from cache\" when it was "
               "computed before (Integrated Gradients also its completeness gap and steps). "
               "Maps are laid over the photo at full strength (no fading), so faint "
               "structure stays comparable across cells.")

settings.sync_query_params(settings.get("method"), share_sample=chosen.source == "Sample",
                           photo_digest=image.digest)
