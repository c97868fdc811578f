"""Saliency Studio's core: why an image classifier decided what it decided.

The stable Python API (see ``docs/python-api.md``; shapes in each docstring)::

    import saliency_core as sc

    model = sc.load_model("efficientnet_lite0")   # a key, a .keras file or a keras.Model
    image = sc.load_sample("chelsea")              # or sc.load_image("photo.jpg")
    explanation = sc.explain(model, image, "smoothgrad")
    sc.overlay_figure(explanation).show()          # or sc.overlay_png(explanation)

* :func:`load_model` -> :class:`~saliency_core.tf_adapter.KerasClassifier`
* :func:`load_image`, :func:`load_sample` -> :class:`~saliency_core.imaging.LoadedImage`
* :func:`explain` -> :class:`~saliency_core.api.Explanation`
* :func:`overlay_figure` -> ``plotly.graph_objects.Figure``; :func:`overlay_png` -> ``bytes``

The names are loaded on first use, so ``import saliency_core`` stays quick and
TensorFlow is imported only when a model is loaded or a map computed. The rest of
the package (``saliency_core.methods``, ``.audit``, ``.trust``, ...) serves the
app and the command line; it may change between versions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Explanation": "saliency_core.api",
    "explain": "saliency_core.api",
    "load_image": "saliency_core.api",
    "load_model": "saliency_core.api",
    "load_sample": "saliency_core.api",
    "overlay_figure": "saliency_core.api",
    "overlay_png": "saliency_core.api",
    "ImageError": "saliency_core.imaging",
    "LoadedImage": "saliency_core.imaging",
    "KerasClassifier": "saliency_core.tf_adapter",
}

__all__ = ["Explanation", "ImageError", "KerasClassifier", "LoadedImage", "explain",
           "load_image", "load_model", "load_sample", "overlay_figure", "overlay_png"]

if TYPE_CHECKING:
    from saliency_core.api import (
        Explanation,
        explain,
        load_image,
        load_model,
        load_sample,
        overlay_figure,
        overlay_png,
    )
    from saliency_core.imaging import ImageError, LoadedImage
    from saliency_core.tf_adapter import KerasClassifier


def __getattr__(name: str):
    """Import an API name from its module the first time it is used (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'saliency_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
