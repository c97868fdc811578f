"""How it works: every step of a gradient map for the current image, and a live test."""

import numpy as np
import streamlit as st

from pages.lib import layout, lesson, page, settings, trust_checks
from saliency_core.labels import shorten_label
from saliency_core.methods import METHODS, Target
from saliency_core.plotting import COLORMAP_LABELS, COLORMAPS
from saliency_core.teaching import SELECTIONS
from saliency_core.teaching.figures import (
    SELECTION_COLOR_NAMES,
    make_pipeline_figures,
    make_sharp_map_figure,
    make_taylor_figure,
    mark_pixels,
)
from saliency_core.teaching.sharp_maps import LESSON_METHODS, run_sharp_map_lesson

CONFIG = {"displaylogo": False, "scrollZoom": False,
          "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
PAPER = ("Simonyan, Vedaldi & Zisserman 2013, *Deep Inside Convolutional Networks*, "
         "[arXiv:1312.6034](https://arxiv.org/abs/1312.6034)")
TERMS = {
    "score": "The class score S_c is the number the network gives class c before softmax "
             "turns all scores into probabilities (the 'logit'). A higher score means the "
             "network favours that class more.",
    "taylor": "A first-order Taylor expansion replaces a curved function by its tangent: "
              "the straight line (here, a flat plane in 150,528 dimensions) that touches it "
              "at this image. Near the image the two agree; far away they need not.",
    "gradient": "The gradient ∂S_c/∂I is the list of slopes of the score, one per pixel "
                "and colour channel: how much the score would change per grey level that "
                "value moves, all else fixed. It is computed exactly by backpropagation.",
    "normalise": "Normalising rescales the map so its smallest value is 0 and its largest "
                 "1, after the brightest 0.5% are clipped so a few extreme pixels do not "
                 "wash out the rest. Each image is scaled on its own, so colours cannot be "
                 "compared between images.",
    "nudge": "A nudge of ε grey levels adds ε to a colour value (0 to 255) where the "
             "gradient is positive and subtracts it where it is negative, so every nudge "
             "should raise the score.",
}


opening = page.open_page(
    "How it works", f"How a gradient saliency map is made from this image, step by step, and "
    f"a live test of the idea behind it: {PAPER}. Image, model and class are shared with "
    "Explore.", columns=[5, 4, 3], pick_class=True, class_column=1, class_probabilities=True,
    class_help="The model's top classes for this image, with their probabilities. The score "
               "explained is the class score before softmax, as in the paper.")
model, chosen, fit, prepared = opening.model, opening.chosen, opening.fit, opening.prepared
model_key, model_name, classifier, token = model.key, model.name, model.classifier, model.token
image, names, class_index = chosen.image, model.class_names, opening.class_index
image_column, class_column, style_column = opening.columns
with style_column:
    cmap = settings.bind("cmap", st.selectbox, options=list(COLORMAPS), label="Colour map",
                         format_func=COLORMAP_LABELS.get)
st.caption("The map on this page is always the paper's vanilla gradient of the class score "
           "before softmax; Explore offers the other methods.")

clip = 99.5
steps = lesson.cached_steps(image.digest, model_key, token, fit, class_index, clip,
                            classifier, prepared.model_input)
height, width = steps.reduced.shape
class_label = shorten_label(names[class_index])
st.markdown(f"**{layout.escape_markdown(class_label)}** (class {class_index}) · "
            f"{layout.escape_markdown(model_name)} · class score $S_c = {steps.score:.2f}$")

st.subheader("1 · The idea")
st.markdown("A classifier gives every class $c$ a **score** $S_c(I)$ for the image $I$. That "
            "function is far from a straight line, but close to this one image it can be "
            "replaced by one, its **first-order Taylor expansion**:",
            help=TERMS["score"] + "\n\n" + TERMS["taylor"])
st.latex(r"S_c(I) \;\approx\; w^{\top} I + b, \qquad "
         r"w = \left.\frac{\partial S_c}{\partial I}\right|_{I_0}")
st.markdown(f"The **gradient** $w$ has one number per pixel and colour channel "
            f"({height}×{width}×3 here). Its size says which pixels need to be changed the "
            "least to change the class score the most. The paper turns it into one value "
            "per pixel by taking the largest magnitude over the three colour channels; the "
            "map is then **normalised** to 0–1 for display:",
            help=TERMS["gradient"] + "\n\n" + TERMS["normalise"])
st.latex(r"M_{ij} = \max_{k \in \{R,G,B\}} \left| w_{ij,k} \right|")
st.latex(r"\hat M = \frac{M - \min M}{\max M - \min M}")
st.markdown("That claim can be tested: **nudging** the pixels with the largest $M$ by "
            "$\\varepsilon$ grey levels, in the direction of the gradient's sign, should "
            "change the score by about", help=TERMS["nudge"])
st.latex(r"\Delta S_c \;\approx\; w^{\top} \Delta I "
         r"\;=\; \varepsilon \sum_{\text{nudged}} |w|")
st.caption("and by more than nudging as many random pixels, or the least salient ones "
           "(section 3).")

st.subheader("2 · The pipeline")
layout.hide_chart_toolbars_on_phones()  # on a phone it covered the panel titles
# two figures of 2 x 2 panels: side by side on a wide screen, one under the other where
# Streamlit stacks columns (a phone), so panels are never squeezed four to a phone's row
for column, figure, key in zip(st.columns(2, gap="medium"), make_pipeline_figures(steps, cmap),
                               ("lesson_pipeline_gradient", "lesson_pipeline_map"), strict=True):
    column.plotly_chart(figure, width="stretch", config=CONFIG, key=key)
low, high = float(steps.network_input.min()), float(steps.network_input.max())
grad_low, grad_high = float(steps.gradient.min()), float(steps.gradient.max())
st.markdown(
    f"1. **Input.** The photo fitted to the model's {height}×{width} input. The model's own "
    "preprocessing rescales its values inside the differentiated function (this image: "
    f"0–255 becomes {low:.2f}…{high:.2f}), so the map is about the pixels you see.\n"
    f"2. **Gradient, per colour channel.** $\\partial S/\\partial I$ from {grad_low:.2g} to "
    f"{grad_high:.2g} per grey level (the colour bar stops at the 99.5th percentile of "
    "|∂S/∂I|, so the few larger values look the same): red raises the score, blue lowers "
    "it, white is no effect.\n"
    "3. **Magnitude.** $|\\partial S/\\partial I|$, its three channels shown as red, green "
    "and blue.\n"
    "4. **Max over RGB.** One value per pixel: the paper's saliency map. Hover it to see "
    "all three channels.\n"
    f"5. **Normalised.** Scaled to 0–1 after clipping the top {100 - clip:g}%.\n"
    "6. **Overlay.** The map over the photo; weak values fade so the photo shows through.",
    help="Drag over any panel to zoom; the other panels of its figure follow. "
         "Double-click to zoom out.")

st.subheader("3 · Test it yourself")
st.markdown("Nudge $k$ pixels by $\\varepsilon$ grey levels along the gradient's sign and "
            "compare the **predicted** change $w^\\top \\Delta I$ (dashed) with the "
            "**actual** change of the score (solid), for the most salient, random and least "
            "salient pixels. All nudged images go through the model in one batch.",
            help=TERMS["nudge"])
k_column, eps_column = st.columns(2, gap="large")
pixels = height * width
k_options = [k for k in settings.LESSON_K if k <= pixels // 2] or [max(1, pixels // 2)]
with k_column:
    if len(k_options) > 1:
        k = settings.bind("lesson.k", st.select_slider, options=k_options,
                          label="Pixels nudged (k)",
                          help=f"Out of {pixels:,} pixels (at most half of them can be "
                               "picked, so the most and least salient never overlap). All "
                               "three colour values of each are nudged.")
    else:
        k = k_options[0]
        st.caption(f"Pixels nudged: {k} of this model's {pixels} (at most half).")
with eps_column:
    eps_range = settings.bind_range("lesson.eps", options=list(settings.LESSON_EPSILONS),
                                    label="Nudge range ε (grey levels)",
                                    format_func=lambda v: f"{v:g}",
                                    help="The smallest and largest nudge; the round values "
                                         "between (1, 2, 5, 10…) are tried too. One grey "
                                         "level is 1/255 of the range of a colour value.")
test = lesson.cached_taylor_test(image.digest, model_key, token, fit, class_index, clip,
                                 int(k), tuple(eps_range), classifier, steps)
chart, marked = st.columns([4, 1])
with chart:
    st.plotly_chart(make_taylor_figure(test), width="stretch", config=CONFIG,
                    key="lesson_taylor")
with marked:
    st.image(mark_pixels(steps.model_input, test.pixels), width="stretch",
             caption="The nudged pixels: " + ", ".join(
                 f"{label} in {SELECTION_COLOR_NAMES[key]}"
                 for key, label in SELECTIONS.items()) + " (first random draw).")
holds, breaks = test.holds_up_to("most"), test.breaks_at("most")
measurable = test.measurable("most")
floor = f"{test.noise_floor:.1g}"
if not measurable.any():
    st.warning(f"Every predicted change is below {floor}, where the model's float32 rounding "
               "alone moves the score: pick a larger range or more pixels.",
               icon=":material/show_chart:")
elif holds is None:
    first = float(test.epsilons[np.flatnonzero(measurable)[0]])
    st.warning(f"Already at ε = {first:g}, the smallest measurable nudge, the straight line "
               f"misses the actual change by more than {test.tolerance:.0%}."
               + (" Pick a smaller range to see where it holds."
                  if test.epsilons[0] > settings.LESSON_EPSILONS[0] else ""),
               icon=":material/show_chart:")
elif breaks is None:
    st.success(f"The straight line predicts the change within {test.tolerance:.0%} over the "
               f"whole range (up to ε = {holds:g}): pick a larger range to see where it "
               "stops holding.", icon=":material/show_chart:")
else:
    st.info(f"For the {k} most salient pixels the straight line predicts the change within "
            f"{test.tolerance:.0%} up to ε = {holds:g} grey levels; from ε = {breaks:g} on "
            "(shaded) the network's curvature takes over, and the gradient alone no longer "
            "tells what a change does.", icon=":material/show_chart:")
if not measurable.all():
    st.caption(f"Predicted changes below {floor} (at the smallest nudges) are within the "
               "model's float32 rounding: they are left out of the verdict and of the "
               "right-hand panel.")
if measurable.any():
    at = int(np.searchsorted(test.epsilons, holds if holds is not None
                             else test.epsilons[np.flatnonzero(measurable)[0]]))
    changes = {key: test.curves[key].actual[at] for key in SELECTIONS}
    ranked = changes["most"] > changes["random"] > changes["least"]
    st.markdown(
        f"At ε = {test.epsilons[at]:g}: the {k} most salient pixels moved the score by "
        f"{changes['most']:+.3g}, {k} random pixels by {changes['random']:+.3g} (mean of "
        f"{lesson.RANDOM_DRAWS} draws) and the {k} least salient by {changes['least']:+.3g}. "
        + ("So the map does rank pixels by their effect, as the paper claims."
           if ranked else "Here the map's ranking does **not** match the effects: a warning "
                          "sign for this map."))

st.subheader("4 · Why a sharp map can still be wrong")
st.markdown(
    "A map convinces by looking like the object. **Guided Backpropagation** (Springenberg et "
    "al. 2014) draws the sharpest outlines of all, because on the way back it drops every "
    "negative signal at each ReLU. Adebayo et al. 2018 then replaced the weights of the "
    "model's top layers, the ones that turn features into class scores, with random numbers: "
    "a map that explains the model must change, yet Guided Backpropagation's barely did. Its "
    "sharpness comes from the rule, which mostly redraws the image's edges, not from what "
    "the model learnt. The blurrier vanilla gradient does change.")
st.markdown(
    "**For the class:** judge a map by tests, not by looks. Does it change when the model "
    "is randomised? When another class is asked for? Does removing its brightest pixels "
    "lower the score faster than removing random ones? The Trust page runs all three, with "
    "Guided Backpropagation as the map that fails.")
sharp_key = ("sharp-map lesson", image.digest, model_key, token, fit, class_index)
sharp = trust_checks.cached_result(sharp_key)
if sharp is None and st.button("Show it on this image", key="run_sharp",
                               help="Randomises the model's top block (a copy; the model "
                                    "itself is not changed) three times and compares the "
                                    "maps."):
    randomizer = trust_checks.get_randomizer(model_key, token, classifier)
    sharp = trust_checks.run_check(
        sharp_key, "Randomising the model's top block",
        lambda progress: run_sharp_map_lesson(
            randomizer, prepared.model_input, Target(class_index),
            seed_text=f"{image.digest}|{model_key}", progress=progress))
if sharp is not None:
    labels = [METHODS[key].label for key in sharp.methods]
    st.plotly_chart(make_sharp_map_figure(sharp, labels, cmap), width="stretch",
                    config={**CONFIG, "displayModeBar": False}, key="lesson_sharp")
    means = dict(zip(sharp.methods, sharp.spearman.mean(axis=1), strict=True))
    guided, vanilla = means[LESSON_METHODS[1]], means[LESSON_METHODS[0]]
    st.markdown(
        f"With the {layout.escape_markdown(sharp.block)} random ({sharp.spearman.shape[1]} "
        f"draws), Guided Backpropagation's map keeps a Spearman of {guided:.2f} with the "
        f"trained model's (1 is the same ranking of pixels) and the vanilla gradient's "
        f"{vanilla:.2f}. "
        + ("The sharp map barely depends on the model's top: it looks convincing, but it "
           "cannot be showing what the model learnt about this class." if guided >= 0.9 > vanilla
           else
           "On this model and image the difference is smaller than on the default model: "
           "the test decides, not the look."))
    if trust_checks.get_randomizer(model_key, token, classifier).classifier \
            .guided_relu_count() == 0:
        st.caption("This model has no ReLU, so Guided Backpropagation is the vanilla "
                   "gradient here; the default model shows the difference.")

settings.sync_query_params(settings.get("method"), share_sample=chosen.source == "Sample",
                           photo_digest=image.digest, page=settings.LESSON_PAGE)
