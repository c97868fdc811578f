"""Can the map on screen be trusted? Sanity checks and faithfulness tests.

* :mod:`~saliency_core.trust.randomization`: cascading and independent model
  randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
  arXiv 1810.03292) on one reusable copy of the model;
* :mod:`~saliency_core.trust.controls`: the random-class check and the
  edge-detector (Sobel) control (:mod:`~saliency_core.trust.edges`);
* :mod:`~saliency_core.trust.faithfulness`: deletion and insertion curves
  (Petsiuk et al. 2018, RISE, arXiv 1806.07421) against many random orders, and a
  per-method comparison;
* :mod:`~saliency_core.trust.similarity`: Spearman rank correlation and SSIM;
* :mod:`~saliency_core.trust.verdicts`: plain-words verdicts;
* :mod:`~saliency_core.trust.figures`: pure Plotly figure functions.

Every check that rests on random draws uses several, seeded by the image (and
model, and draw number), and its verdict reports their spread: it is undecided
when the draws fall on both sides of the threshold. Pure numpy and Keras, never
Streamlit. Passing a check is necessary, not sufficient, for a map to explain the
model.
"""

from saliency_core.trust.controls import (
    EdgeResult,
    RandomClassResult,
    check_edges,
    check_random_classes,
)
from saliency_core.trust.edges import compute_sobel_edges, explain_with_sobel
from saliency_core.trust.faithfulness import (
    RANDOM_ORDERS,
    RANDOM_PART,
    Curve,
    FaithfulnessResult,
    MethodScore,
    RandomCurves,
    blur_image,
    compare_methods,
    comparison_weights,
    make_step_image,
    run_faithfulness,
)
from saliency_core.trust.randomization import (
    DRAWS,
    MAX_DRAWS,
    Block,
    ModelRandomizer,
    RandomizationResult,
    define_blocks,
    derive_seed,
    make_method_explainer,
    run_randomization,
)
from saliency_core.trust.similarity import Similarity, compare_maps, compute_spearman, compute_ssim
from saliency_core.trust.verdicts import NECESSARY_NOT_SUFFICIENT, Verdict

__all__ = ["DRAWS", "MAX_DRAWS", "NECESSARY_NOT_SUFFICIENT", "RANDOM_ORDERS", "RANDOM_PART",
           "RandomCurves", "derive_seed", "Block", "Curve", "EdgeResult", "FaithfulnessResult",
           "MethodScore", "ModelRandomizer", "RandomClassResult", "RandomizationResult",
           "Similarity", "Verdict", "blur_image", "check_edges", "check_random_classes",
           "compare_maps", "compare_methods", "comparison_weights", "compute_sobel_edges",
           "compute_spearman",
           "compute_ssim", "define_blocks", "explain_with_sobel", "make_method_explainer",
           "make_step_image", "run_faithfulness", "run_randomization"]
