"""One page skeleton (``pages/lib/page.py``) serves every page.

A house rule checked on the source (no page opens itself by hand: loading the model,
picking the image and preparing it go through the skeleton), and the skeleton's options
checked on the running pages (which page offers the fit and which picks a class)."""

import ast
from pathlib import Path

import pytest
from apptest_support import new_app

from conftest import ROOT

OPENING_CALLS = {"classifier_for", "choose_image", "prepare_image"}
"""The steps of the opening that only the skeleton may call."""
SKELETON_CALLS = {"open_page", "open_model"}


def called_names(source: str) -> set[str]:
    """The names of every function called in ``source``: ``f(…)`` and ``x.f(…)`` give
    ``f``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                names.add(node.func.id)
            elif isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
    return names


def page_files() -> list[Path]:
    """Every page script: ``pages/*.py`` but the router (``pages/lib`` holds the shared
    parts)."""
    return [p for p in sorted((ROOT / "pages").glob("*.py"))
            if p.name not in ("router.py", "__init__.py")]


def test_the_rule_finds_a_page_that_opens_itself():
    hand_made = ("classifier, token = own_models.classifier_for(model_key)\n"
                 "chosen = image_choice.choose_image()\n"
                 "prepared = caching.prepare_image(model_key, token, classifier, image, fit)\n")
    assert called_names(hand_made) & OPENING_CALLS == OPENING_CALLS
    assert not called_names("opening = page.open_page('Explore', '', columns=[1, 2])\n") \
        & OPENING_CALLS


def test_no_page_opens_itself_by_hand():
    """Each copy of the opening drifted from the others; only the skeleton may load the
    model, pick the image and prepare it."""
    pages = page_files()
    assert {p.name for p in pages} >= {"explore.py", "compare.py", "trust.py",
                                       "how_it_works.py", "live.py", "audit.py"}
    offenders = {p.name: sorted(called_names(p.read_text(encoding="utf-8")) & OPENING_CALLS)
                 for p in pages}
    assert not {name: calls for name, calls in offenders.items() if calls}


def test_every_page_that_uses_a_model_opens_through_the_skeleton():
    """Models manages the models and loads none; every other page uses the skeleton."""
    for path in page_files():
        if path.name == "models.py":
            continue
        assert called_names(path.read_text(encoding="utf-8")) & SKELETON_CALLS, path.name


PHOTO_PAGES = {  # page: (offers the fit, its class widget's key or None)
    "explore.py": (True, "w_class_pick"),
    "compare.py": (False, None),
    "trust.py": (False, "w_class"),
    "how_it_works.py": (False, "w_class"),
}


def widget_keys(at) -> set[str]:
    return {w.key for kind in ("radio", "selectbox") for w in at.get(kind) if w.key}


@pytest.mark.slow
def test_each_photo_page_opens_alike_and_stops_without_a_photo():
    """The same image picker on every photo page; with no photo yet each page stops under
    the same prompt, before any class; with one, its own options show."""
    at = new_app()
    at.radio(key="w_source").set_value("Upload").run()
    for name in PHOTO_PAGES:
        at.switch_page(name).run()
        assert not at.exception, (name, at.exception)
        assert at.radio(key="w_source").value == "Upload", name
        assert any(i.value.startswith("Upload a photo to begin") for i in at.info), name
        assert not widget_keys(at) & {"w_fit", "w_class", "w_class_pick"}, name
    at.radio(key="w_source").set_value("Sample").run()
    for name, (offers_fit, class_key) in PHOTO_PAGES.items():
        at.switch_page(name).run()
        assert not at.exception, (name, at.exception)
        keys = widget_keys(at)
        assert ("w_fit" in keys) == offers_fit, name
        assert {"w_class", "w_class_pick"} & keys == ({class_key} if class_key else set()), name
