"""The six new methods on the pages a user opens: Explore, Trust and Audit (Compare's picker
is in ``test_compare_picker.py``, Live's LayerCAM in ``test_live_core.py``)."""

from __future__ import annotations

import pytest
from apptest_support import new_app

from saliency_core.methods import METHODS
from saliency_core.samples import read_sample

pytestmark = pytest.mark.slow

# Small settings, as a shared link would carry them, so each map takes a second or two.
LINKS = {
    "xrai": {"xrai.steps": "4"},
    "blur_ig": {"blur_ig.steps": "4"},
    "guided_ig": {"guided_ig.steps": "10"},
    "scorecam": {"scorecam.channels": "64"},
    "layercam": {},
    "rise": {"rise.masks": "100", "rise.seed": "4"},
}
SHOWN = {"xrai": "regions ranked", "blur_ig": "score at blurred image",
         "guided_ig": "score at baseline", "scorecam": "channels used 64 of 1280",
         "layercam": "layer resolution 7×7", "rise": "mean score of the masked images"}


def texts(at) -> str:
    return " ".join(e.value for e in (*at.markdown, *at.caption)).replace("\\", "")


@pytest.mark.parametrize("key", list(LINKS))
def test_explore_shows_each_new_method_from_a_link(key):
    at = new_app(sample="chelsea", method=key, **LINKS[key])
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="w_method").value == key
    assert len(at.get("plotly_chart")) >= 1
    shown = texts(at)
    assert f"{METHODS[key].label}** for" in shown
    assert SHOWN[key] in shown, shown[-600:]


def test_trust_runs_its_checks_on_a_new_method():
    at = new_app(sample="chelsea", method="layercam")
    at.switch_page("trust.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "**LayerCAM** for" in texts(at)
    assert {"Edge-detector control", "Random-class check"} <= {h.value for h in at.subheader}
    # LayerCAM is one pass, so the edge-detector and random-class figures come at once
    assert len(at.get("plotly_chart")) >= 2
    assert not at.get("button") or all(b.key != "run_classes" for b in at.get("button"))


def test_audit_explains_uploads_with_rise():
    at = new_app(method="rise", **{"rise.masks": "100"})
    at.switch_page("audit.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="w_method").value == "rise"
    at.file_uploader(key="audit_upload").set_value([
        ("cat.png", read_sample("chelsea"), "image/png"),
        ("cup.png", read_sample("coffee"), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("2 images explained" in m.value and "RISE" in m.value for m in at.markdown)
