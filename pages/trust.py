"""Trust: sanity checks and faithfulness tests for the map the Explore page shows."""

import dataclasses

import numpy as np
import streamlit as st

from pages.lib import (
    caching,
    layout,
    method_controls,
    page,
    settings,
    trust_checks,
)
from saliency_core.labels import shorten_label
from saliency_core.methods import METHODS, Target
from saliency_core.plotting import COLORMAPS
from saliency_core.safety.jobs import Estimate
from saliency_core.trust import (
    DRAWS,
    MAX_DRAWS,
    NECESSARY_NOT_SUFFICIENT,
    RANDOM_ORDERS,
    RANDOM_PART,
    check_edges,
    check_random_classes,
    compare_methods,
    comparison_weights,
    make_method_explainer,
    make_step_image,
    run_faithfulness,
    run_randomization,
)
from saliency_core.trust.figures import (
    make_curves_figure,
    make_edge_figure,
    make_method_auc_figure,
    make_random_class_figure,
    make_randomization_figure,
    make_randomization_strip,
)
from saliency_core.trust.similarity import to_abs_map
from saliency_core.trust.work import (
    count_comparison_work,
    count_faithfulness_work,
    count_random_class_work,
    count_randomization_work,
)

CONFIG = {"displaylogo": False, "displayModeBar": False, "scrollZoom": False}
MODE_LABELS = {"cascading": "Cascading: from the output down, blocks stay random",
               "independent": "Independent: one block at a time"}
PAPERS = ("Adebayo et al. 2018, *Sanity Checks for Saliency Maps*, "
          "[arXiv:1810.03292](https://arxiv.org/abs/1810.03292); Petsiuk et al. 2018, *RISE*, "
          "[arXiv:1806.07421](https://arxiv.org/abs/1806.07421)")


GUIDED = ("guided_backprop", "guided_gradcam")
FAILED_MEANING = {
    "deletion": "A failed deletion test means: blurring away the pixels this map calls most "
                "important hurts the model's confidence no more than blurring pixels picked "
                "at random, so this map does not show what the model needs for this image.",
    "insertion": "A failed insertion test means: showing the model only the pixels this map "
                 "calls most important brings its confidence back no faster than showing "
                 "pixels picked at random, so this map does not point to what is enough for "
                 "the model on this image.",
}
# What a failed deletion or insertion verdict means, in a sentence a teacher can read out.
WHY_GRADCAM = (
    "**Why can one method be worst on deletion and best on insertion (often Grad-CAM)?** "
    "Grad-CAM paints whole regions, one value per cell of a coarse grid, while gradient "
    "methods pick single pixels. Deletion rewards maps that find the scattered pixels the "
    "score is most sensitive to: blurring those few pixels all over the object drops the "
    "score fast, but blurring one of Grad-CAM's regions first leaves the rest of the object "
    "sharp and recognisable. Insertion rewards the opposite: revealing one whole region "
    "sharply, as Grad-CAM's order does, gives the model a piece of the object it recognises, "
    "while revealing scattered pixels gives it speckles on a blur. The two tests ask "
    "different questions, so read them together, on several images.")


def show_refusal(refusal: str) -> None:
    """A check that would pass the server's budget, said before it runs."""
    st.warning(refusal, icon=":material/block:")


def show_verdict(verdict) -> None:
    """A verdict in plain words (green: passes, red: fails, amber: undecided), its rule
    underneath."""
    text = verdict.text[0].upper() + verdict.text[1:] + "."
    if verdict.passed:
        st.success(text, icon=":material/check_circle:")
    elif verdict.undecided:
        st.warning(text, icon=":material/help:")
    else:
        st.error(text, icon=":material/cancel:")
    if verdict.rule:
        st.caption(verdict.rule)
    if verdict.outcome == "fails" and verdict.check in FAILED_MEANING:
        st.markdown(FAILED_MEANING[verdict.check])


opening = page.open_page(
    "Trust", "Can this map be trusted? Checks that a map must pass to explain the model: it "
    "must change when the model's weights are randomised and when another class is asked "
    f"for, it must be more than an edge map, and its top pixels must matter. {PAPERS}.",
    columns=[1, 3], pick_class=True)
model, chosen, fit, prepared = opening.model, opening.chosen, opening.fit, opening.prepared
model_key, model_name, classifier, token = model.key, model.name, model.classifier, model.token
image, names, class_index, (controls, checks) = (chosen.image, model.class_names,
                                                 opening.class_index, opening.columns)
with controls:
    method = settings.bind("method", st.selectbox, options=list(METHODS), label="Method",
                           format_func=lambda k: METHODS[k].label)
    params = method_controls.stored_method_params(method, classifier)
    score = settings.get("score")
    score_words = "class score before softmax" if score == "logit" else "probability"
    st.caption(f"Score explained: {score_words}; method parameters as last set on Explore.")
    if settings.get("contrast") is not None:
        st.caption("The class contrast set on Explore is not used here: every check explains "
                   "one class.")

with checks:
    class_label = shorten_label(names[class_index])
    st.markdown(f"**{METHODS[method].label}** for **{layout.escape_markdown(class_label)}** "
                f"(class {class_index}) · {layout.escape_markdown(model_name)}")
    st.info(NECESSARY_NOT_SUFFICIENT + " Checks that rest on random draws use several and "
            "show their spread; when the draws fall on both sides of the line, the check says "
            "undecided instead of picking a side.", icon=":material/info:")
    if method in GUIDED:
        st.caption(f"{METHODS[method].label} is here on purpose: its sharp maps look "
                   "convincing, but Guided Backpropagation stays almost the same when the "
                   "model's top blocks are randomised (Adebayo et al. 2018). Run the cascading "
                   "randomisation below to see a map fail.")
    request = caching.MapRequest(image.digest, model_key, token, fit, method,
                                 tuple(sorted(params.items())), class_index, None, score)
    target = Target(class_index, score=score)
    explanation, _ = caching.run_explanation(METHODS[method].label, request, classifier,
                                             prepared.model_input)
    values = explanation.attribution.values
    explain = make_method_explainer(method, params)
    cmap = settings.get("cmap") if settings.get("cmap") in COLORMAPS else "viridis"
    model_input = prepared.model_input

    # 1. Edge-detector control: needs only the map, so it always runs.
    st.subheader("Edge-detector control")
    st.caption("Is the map more than an edge map of the image? A Sobel edge detector needs no "
               "model; a map that looks like its output may show the image, not the model.")
    edges = check_edges(values, model_input)
    st.plotly_chart(make_edge_figure(to_abs_map(values), edges, cmap), width="stretch",
                    config=CONFIG, key="trust_edges")
    show_verdict(edges.verdict)

    # 2. Random classes: automatic for one-pass methods, on request for sampling ones.
    st.subheader("Random-class check")
    st.caption("The map of this class beside the maps of 5 other classes drawn at random for "
               "this image (the draw is seeded by the image, so each image gets its own). If "
               "they look the same, the map does not explain *this* class. Each title gives "
               "the Spearman of |map| and of the signed map.")
    one_map = trust_checks.map_work(method, params, classifier)
    key_classes = ("classes", request)
    classes = trust_checks.cached_result(key_classes)
    estimate, refusal = (None, None) if classes is not None else trust_checks.estimate_check(
        classifier, "The random-class check", count_random_class_work(one_map))
    if refusal:
        show_refusal(refusal)
    elif classes is None and (not METHODS[method].sampling
                              or st.button("Run the random-class check", key="run_classes")):
        classes = trust_checks.run_check(
            key_classes, "Computing the maps of 5 other classes",
            lambda progress: check_random_classes(classifier, explain, model_input, target,
                                                  values, seed_text=image.digest,
                                                  progress=progress),
            estimate=estimate)
    if classes is None and not refusal:
        st.caption(f"{METHODS[method].label} samples many images per map, so this check "
                   "runs only when you ask.")
    else:
        st.plotly_chart(make_random_class_figure(
            to_abs_map(values), class_label, classes,
            [shorten_label(names[c]) for c in classes.classes], cmap),
            width="stretch", config=CONFIG, key="trust_classes")
        show_verdict(classes.verdict)

    # 3. Model randomisation.
    st.subheader("Model randomisation")
    st.caption("The model's weights are re-initialised block by block with its own "
               "initialisers (batch-norm statistics kept) and the map recomputed after each "
               "step, several times with different random weights (each draw seeded by the "
               "image, the model and the draw's number). A map that explains the model must "
               "change; one that stays the same shows something the weights do not decide.")
    mode_column, draws_column = st.columns([3, 2])
    with mode_column:
        mode = settings.bind("trust.mode", st.radio, options=list(MODE_LABELS),
                             default="cascading", format_func=MODE_LABELS.get,
                             horizontal=True, label="Randomisation")
    with draws_column:
        draws = settings.bind("trust.draws", st.slider, default=DRAWS, min_value=2,
                              max_value=MAX_DRAWS, label="Random draws",
                              help="Independent draws of the random weights. One draw can "
                                   "be an outlier; the band shows how far they spread.")
    key_random = ("randomisation", mode, draws, request)
    randomised = trust_checks.cached_result(key_random)
    if randomised is None and st.button(f"Run the {mode} randomisation", key="run_random",
                                        type="primary"):
        randomizer = trust_checks.get_randomizer(model_key, token, classifier)
        estimate, refusal = trust_checks.estimate_check(
            classifier, f"The {mode} randomisation ({draws} draws)",
            count_randomization_work(one_map, len(randomizer.blocks), draws))
        if refusal:
            show_refusal(refusal + " Fewer draws, or a method with fewer passes, cost less.")
        else:
            randomised = trust_checks.run_check(
                key_random, f"Randomising {len(randomizer.blocks)} blocks, {draws} times",
                lambda progress: run_randomization(
                    randomizer, explain, model_input, target, mode, draws,
                    seed_text=f"{image.digest}|{model_key}", progress=progress),
                estimate=estimate)
    if randomised is not None:
        steps_said = ("blocks randomised from the output down, each step adding one"
                      if randomised.mode == "cascading" else "one block randomised at a time")
        st.plotly_chart(make_randomization_figure(randomised), width="stretch",
                        config=CONFIG, key="trust_random")
        st.caption(f"Similarity to the original map at each step ({steps_said}), over "
                   f"{randomised.draws} draws. Blue: Spearman rank correlation of |map|, the "
                   "mean with a band from the lowest to the highest draw; purple: Spearman of "
                   "the signed map (Adebayo et al. report both); orange: SSIM of the "
                   "normalised maps; green: how much a Sobel edge map of the image, made "
                   "without any model, resembles the original map. "
                   f"{randomised.draws} × {len(randomised.blocks)} steps in "
                   f"{randomised.seconds:.1f} s.")
        show_verdict(randomised.verdict)
        st.plotly_chart(make_randomization_strip(randomised, cmap), width="stretch",
                        config=CONFIG, key="trust_random_maps")
        st.caption("The original map, then the map after each step (first draw).")

    # 4. Deletion and insertion.
    st.subheader("Faithfulness: deletion and insertion")
    st.caption("Pixels are blurred away (deletion) or revealed from a blurred copy (insertion) "
               f"in the map's order, 1/32 of them per step, and the class probability is "
               f"measured; the same for {RANDOM_ORDERS} random orders (seeded by the image), "
               "scored in the same batches. A faithful map makes the probability fall faster "
               "and rise faster than random orders do; the verdict counts how many it beats. "
               + FAILED_MEANING["deletion"] + " " + FAILED_MEANING["insertion"])
    key_faith = ("faithfulness", request)
    faith = trust_checks.cached_result(key_faith)
    if faith is None and st.button("Run deletion and insertion", key="run_faith"):
        estimate, refusal = trust_checks.estimate_check(
            classifier, "Deletion and insertion", count_faithfulness_work())
        if refusal:
            show_refusal(refusal)
        else:
            faith = trust_checks.run_check(
                key_faith, f"Scoring the map's order and {RANDOM_ORDERS} random orders",
                lambda progress: run_faithfulness(classifier, model_input, values, target,
                                                  seed_text=image.digest, progress=progress),
                estimate=estimate)
    if faith is not None:
        step = settings.bind("trust.step", st.slider, default=8, min_value=0,
                             max_value=faith.steps, label="Step to view",
                             help="The perturbed images the model saw at this step.")
        st.plotly_chart(make_curves_figure(faith, step), width="stretch", config=CONFIG,
                        key="trust_curves")
        shown = f"{100 * step / faith.steps:.0f}%"
        left, right = st.columns(2)
        left.image(np.clip(make_step_image(model_input, faith.reference, faith.order, step,
                                           "deletion", faith.steps), 0, 255).astype(np.uint8),
                   caption=f"Deletion, step {step}: top {shown} of the pixels blurred",
                   width="stretch")
        right.image(np.clip(make_step_image(model_input, faith.reference, faith.order, step,
                                            "insertion", faith.steps), 0, 255).astype(np.uint8),
                    caption=f"Insertion, step {step}: top {shown} of the pixels revealed",
                    width="stretch")
        unit = "probability" if faith.measure == "probability" else "logit"
        st.caption(f"Step {step} of {faith.steps} ({shown} of the pixels changed): "
                   f"{unit} {faith.deletion.probabilities[step]:.3f} after deletion, "
                   f"{faith.insertion.probabilities[step]:.3f} after insertion (mean of "
                   f"{faith.random_deletion.count} random orders: "
                   f"{faith.random_deletion.probabilities[step]:.3f} and "
                   f"{faith.random_insertion.probabilities[step]:.3f}).")
        for verdict in faith.verdicts:
            show_verdict(verdict)

    # 5. Every method's AUCs on this image.
    st.subheader("All methods on this image")
    all_params = {key: method_controls.stored_method_params(key, classifier) for key in METHODS}
    key_methods = ("methods", dataclasses.replace(request, method="*", params=tuple(
        (key, tuple(sorted(p.items()))) for key, p in all_params.items())))
    compared = trust_checks.cached_result(key_methods)
    st.markdown(WHY_GRADCAM)
    if compared is None and st.button("Compare every method's deletion and insertion AUC",
                                      key="run_methods"):
        known = None if faith is None else (faith.random_deletion, faith.random_insertion)
        # Each method's part is checked like one map (its map and two curves): one that
        # would pass the budget alone is left out and named, the others run.
        part_works = count_comparison_work(
            {key: trust_checks.map_work(key, p, classifier) for key, p in all_params.items()},
            random_known=known is not None)
        estimates, left_out, refused = [], [], None
        for key, work in part_works.items():
            label = METHODS[key].label if key in METHODS else "Scoring the random orders"
            estimate, refusal = trust_checks.estimate_check(classifier, label, work)
            if refusal and key in METHODS:
                left_out.append(key)
            elif refusal:
                refused = refusal
            else:
                estimates.append(estimate)
        explainers = {key: make_method_explainer(key, p) for key, p in all_params.items()
                      if key not in left_out}
        if left_out:
            show_refusal("Left out, each over this server's budget for one map or check on "
                         "this model: " + ", ".join(METHODS[k].label for k in left_out)
                         + ". Explore says what each would take and which setting brings it "
                         "within the budget.")
        if refused or not explainers:
            show_refusal(refused or "No method fits this server's budget on this model.")
        else:
            total = Estimate(seconds=sum(e.seconds for e in estimates),
                             peak_bytes=max(e.peak_bytes for e in estimates))
            parts = {RANDOM_PART: f"{RANDOM_ORDERS} random orders"
                     + (" (from the deletion check)" if known else "")}
            parts.update({key: METHODS[key].label for key in explainers})
            compared = trust_checks.run_parts(
                key_methods, f"Scoring {len(explainers)} methods", parts,
                comparison_weights(explainers, random_known=known is not None),
                lambda progress: compare_methods(classifier, model_input, target, explainers,
                                                 seed_text=image.digest, random_curves=known,
                                                 progress=progress),
                estimate=total)
    if compared is not None:
        scores, random_deletion, random_insertion = compared
        st.plotly_chart(make_method_auc_figure(scores, [METHODS[s.method].label for s in scores],
                                               random_deletion, random_insertion),
                        width="stretch", config=CONFIG, key="trust_methods")
        st.caption(f"Lower deletion and higher insertion AUC than the {random_deletion.count} "
                   "random orders (grey band: lowest to highest; dashed: their mean) mean a "
                   "method's ranking of pixels matters to the model, on this image only. "
                   "Hover a bar for how many random orders it beats.")

settings.sync_query_params(method, share_sample=chosen.source == "Sample",
                           photo_digest=image.digest)
