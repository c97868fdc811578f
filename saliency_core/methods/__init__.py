"""Attribution methods, one per module, all following :class:`SaliencyMethod`."""

from saliency_core.methods.base import (
    FAMILIES,
    Attribution,
    GradientModel,
    LayerGradientModel,
    Param,
    SaliencyMethod,
    ScoreKind,
    Target,
    Work,
)
from saliency_core.methods.blur_ig import BlurIG
from saliency_core.methods.gradcam import GradCAM, GradCAMPlusPlus
from saliency_core.methods.gradient_x_input import GradientTimesInput
from saliency_core.methods.guided_ig import GuidedIG
from saliency_core.methods.integrated_gradients import IntegratedGradients
from saliency_core.methods.layercam import LayerCAM
from saliency_core.methods.occlusion import Occlusion
from saliency_core.methods.rise import RISE
from saliency_core.methods.scorecam import ScoreCAM
from saliency_core.methods.smoothgrad import SmoothGrad, SmoothGradSquared, VarGrad
from saliency_core.methods.vanilla import VanillaGradient
from saliency_core.methods.xrai import XRAI

METHODS: dict[str, type[SaliencyMethod]] = {cls.key: cls for cls in (
    VanillaGradient, SmoothGrad, SmoothGradSquared, VarGrad, IntegratedGradients,
    GradientTimesInput, GradCAM, GradCAMPlusPlus, Occlusion, XRAI, BlurIG, GuidedIG, ScoreCAM,
    LayerCAM, RISE)}


def get_method(key: str, **params) -> SaliencyMethod:
    """Instantiate the method registered under ``key`` with its parameters."""
    try:
        cls = METHODS[key]
    except KeyError:
        raise KeyError(f"unknown method {key!r}; known: {', '.join(METHODS)}") from None
    return cls(**params)




def methods_by_family() -> dict[str, list[str]]:
    """Method keys grouped by :data:`FAMILIES`, in the families' and the registry's order."""
    return {family: [key for key, cls in METHODS.items() if cls.family == family]
            for family in FAMILIES}


__all__ = ["FAMILIES", "METHODS", "RISE", "XRAI", "Attribution", "BlurIG", "GradCAM",
           "GradCAMPlusPlus", "GradientModel", "GradientTimesInput", "GuidedIG",
           "IntegratedGradients", "LayerCAM", "LayerGradientModel", "Occlusion", "Param",
           "SaliencyMethod", "ScoreCAM", "ScoreKind", "SmoothGrad", "SmoothGradSquared",
           "Target", "VanillaGradient", "VarGrad", "Work", "get_method", "methods_by_family"]
