"""ImageNet-1k class names, shipped with the project (no download at run time).

``data/imagenet_classes.txt`` holds the 1000 names in the standard Keras/ImageNet
order (index 0 = "tench"), one WordNet-synonym list per line. It comes from the
MIT-licensed ``imagenet-classes`` package (see NOTICE.md).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def load_imagenet_labels() -> tuple[str, ...]:
    """Return the 1000 ImageNet class names, index-aligned with model outputs."""
    text = resources.files("saliency_core").joinpath("data/imagenet_classes.txt").read_text(
        encoding="utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != 1000:
        raise RuntimeError(f"imagenet_classes.txt has {len(labels)} names, expected 1000")
    return labels


def shorten_label(label: str) -> str:
    """First synonym of a label: ``"tabby, tabby cat"`` -> ``"tabby"``."""
    return label.split(",")[0].strip()
