"""How a gradient saliency map is made, step by step, and a live test of its maths.

Simonyan, Vedaldi & Zisserman 2013 ("Deep Inside Convolutional Networks",
arXiv 1312.6034) approximate the class score near an image by its first-order
Taylor expansion, ``S_c(I) ~ w^T I + b`` with ``w = dS_c/dI``, and read ``|w|`` as
"which pixels need to be changed the least to affect the class score the most".

* :mod:`~saliency_core.teaching.steps`: every intermediate array of the vanilla
  map (the input as the network sees it, the signed gradient, ``|w|``, the
  maximum over channels, the normalised map);
* :mod:`~saliency_core.teaching.taylor`: nudge the most, the least and random
  salient pixels along ``sign(w)`` and compare the predicted change ``w . dI``
  with the model's actual change, all nudged images in one batch;
* :mod:`~saliency_core.teaching.sharp_maps`: why a sharp map can still be wrong:
  Guided Backpropagation's map barely changes when the model's top block is
  randomised, the vanilla gradient's does (Adebayo et al. 2018); it works on a
  model copy from :mod:`saliency_core.trust`, so it is imported on its own;
* :mod:`~saliency_core.teaching.figures`: pure Plotly figures of all three.

Pure numpy, never Streamlit; models are any :class:`~saliency_core.methods.base.GradientModel`.
"""

from saliency_core.teaching.steps import GradientSteps, compute_steps
from saliency_core.teaching.taylor import (
    SELECTIONS,
    TaylorCurve,
    TaylorTest,
    make_epsilons,
    nudge_pixels,
    run_taylor_test,
    select_pixels,
)

__all__ = [
    "SELECTIONS",
    "GradientSteps",
    "TaylorCurve",
    "TaylorTest",
    "compute_steps",
    "make_epsilons",
    "nudge_pixels",
    "run_taylor_test",
    "select_pixels",
]
