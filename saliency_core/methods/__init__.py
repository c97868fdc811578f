"""Attribution methods, one per module, all following :class:`SaliencyMethod`."""

from saliency_core.methods.base import Attribution, GradientModel, SaliencyMethod, ScoreKind, Target
from saliency_core.methods.vanilla import VanillaGradient

METHODS: dict[str, type[SaliencyMethod]] = {cls.key: cls for cls in (VanillaGradient,)}


def get_method(key: str) -> SaliencyMethod:
    """Instantiate the method registered under ``key``."""
    try:
        return METHODS[key]()
    except KeyError:
        raise KeyError(f"unknown method {key!r}; known: {', '.join(METHODS)}") from None


__all__ = ["METHODS", "Attribution", "GradientModel", "SaliencyMethod", "ScoreKind", "Target",
           "VanillaGradient", "get_method"]
