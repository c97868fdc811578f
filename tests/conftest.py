"""Shared fixtures. Tests never touch the network and never write outside tmp dirs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pylibsrtp  # noqa: F401  (before TensorFlow, or it crashes: see pages/lib/__init__.py)
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
pytest_plugins = ["browser_support"]  # the real server and headless Chromium fixtures

# Set before TensorFlow or the app is imported anywhere in the test session.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SALIENCY_STUDIO_OFFLINE"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """A fresh per-run cache directory, so tests prove the first-run conversion too."""
    cache = tmp_path_factory.mktemp("saliency-cache")
    old = os.environ.get("SALIENCY_STUDIO_CACHE")
    os.environ["SALIENCY_STUDIO_CACHE"] = str(cache)
    os.environ["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras-home"))
    yield cache
    if old is None:
        os.environ.pop("SALIENCY_STUDIO_CACHE", None)
    else:
        os.environ["SALIENCY_STUDIO_CACHE"] = old


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (the ../shared data folder is absent)")
    return path


@pytest.fixture(scope="session")
def expected_testimages() -> dict:
    return json.loads(shared_path("testimages", "expected.json").read_text())


@pytest.fixture(scope="session")
def default_classifier(_isolated_cache):
    from saliency_core.pipeline import load_classifier

    classifier, _source = load_classifier("efficientnet_lite0")
    return classifier
