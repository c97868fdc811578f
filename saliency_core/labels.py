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


def find_class(name: str, names: tuple[str, ...] | list[str]) -> int | None:
    """The index of the class called ``name`` (the whole label or any one of its
    synonyms, any case), or ``None``: ``"tabby"`` and ``"Tabby cat"`` both find 281."""
    wanted = " ".join(name.lower().split())
    for index, label in enumerate(names):
        if wanted == label.lower() or wanted in (s.strip() for s in label.lower().split(",")):
            return index
    return None


def rank_classes(query: str, names: tuple[str, ...] | list[str], limit: int = 50) -> list[int]:
    """Class indices matching ``query``, best first.

    Whole-word and prefix matches rank above matches inside a word, so "golden"
    finds "golden retriever" and never "gas pump", and "cat" finds "tabby cat"
    before "catamaran". A query of
    digits also matches the class index.

    Tiers (lower is better): 0 a synonym equals the query; 1 every query word is
    a whole word of the label; 2 a synonym starts with it; 3 every query word
    starts a word of the label; 4 the query occurs anywhere. Ties keep class order.

    Args:
        query: what the user typed (case-insensitive).
        names: all class names, index-aligned with the model's outputs.
        limit: at most this many results.
    """
    text = " ".join(query.lower().split())
    if not text:
        return []
    words = text.replace(",", " ").split()
    ranked: list[tuple[int, int]] = []
    for index, name in enumerate(names):
        lower = name.lower()
        synonyms = [s.strip() for s in lower.split(",")]
        label_words = lower.replace(",", " ").replace("-", " ").replace("'", " ").split()
        if text.isdigit() and int(text) == index:
            tier = 0
        elif text in synonyms:
            tier = 0
        elif all(w in label_words for w in words):
            tier = 1
        elif any(s.startswith(text) for s in synonyms):
            tier = 2
        elif all(any(lw.startswith(w) for lw in label_words) for w in words):
            tier = 3
        elif text in lower:
            tier = 4
        else:
            continue
        ranked.append((tier, index))
    ranked.sort()
    return [index for _tier, index in ranked[:limit]]
