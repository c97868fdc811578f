"""Attribution methods, one per module, all following :class:`SaliencyMethod`."""

from saliency_core.methods.base import (
    Attribution,
    GradientModel,
    LayerGradientModel,
    Param,
    SaliencyMethod,
    ScoreKind,
    Target,
    Work,
)
from saliency_core.methods.gradcam import GradCAM, GradCAMPlusPlus
from saliency_core.methods.gradient_x_input import GradientTimesInput
from saliency_core.methods.guided_backprop import GuidedBackprop, GuidedGradCAM
from saliency_core.methods.integrated_gradients import IntegratedGradients
from saliency_core.methods.occlusion import Occlusion
from saliency_core.methods.smoothgrad import SmoothGrad, SmoothGradSquared, VarGrad
from saliency_core.methods.vanilla import VanillaGradient

METHODS: dict[str, type[SaliencyMethod]] = {cls.key: cls for cls in (
    VanillaGradient, SmoothGrad, SmoothGradSquared, VarGrad, IntegratedGradients,
    GradientTimesInput, GradCAM, GradCAMPlusPlus, Occlusion)}
METHODS.update({cls.key: cls for cls in (GuidedBackprop, GuidedGradCAM)})


def get_method(key: str, **params) -> SaliencyMethod:
    """Instantiate the method registered under ``key`` with its parameters."""
    try:
        cls = METHODS[key]
    except KeyError:
        raise KeyError(f"unknown method {key!r}; known: {', '.join(METHODS)}") from None
    return cls(**params)


__all__ = ["METHODS", "Attribution", "GradCAM", "GradCAMPlusPlus", "GradientModel",
           "GradientTimesInput", "IntegratedGradients", "LayerGradientModel", "Occlusion",
           "Param", "SaliencyMethod", "ScoreKind", "SmoothGrad", "SmoothGradSquared", "Target",
           "VanillaGradient", "VarGrad", "Work", "get_method"]
__all__ += ["GuidedBackprop", "GuidedGradCAM"]
