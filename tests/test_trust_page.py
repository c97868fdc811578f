"""The Trust page in AppTest with the default model and the cat sample."""

import pytest
from apptest_support import new_app as open_app
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.slow
TIMEOUT = 180



def new_app(**query) -> AppTest:
    return open_app(TIMEOUT, **query)


def texts(at) -> str:
    return " ".join([e.value for e in at.success] + [e.value for e in at.error]
                    + [e.value for e in at.info])


def test_trust_page_runs_cheap_checks_at_once_and_long_ones_on_request():
    at = new_app()
    at.switch_page("trust.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Trust"
    shown = texts(at)
    assert "necessary, not sufficient" in shown
    # cheap checks ran by themselves, each with its number and verdict
    assert "Edge map" in shown.replace("edge map", "Edge map") and "(Spearman " in shown
    assert "(mean Spearman " in shown
    assert any(v.endswith(("passes.", "fails.")) for v in
               [e.value for e in at.success] + [e.value for e in at.error])
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert len(charts) == 2  # edges and random classes; nothing long yet
    assert at.button(key="run_random") and at.button(key="run_faith")

    at.button(key="run_random").click().run()
    assert not at.exception, at.exception
    assert "when the model is randomised (Spearman" in texts(at)
    assert len(at.get("plotly_chart")) == 3

    at.button(key="run_faith").click().run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "random order (AUC" in shown
    assert at.slider(key="w_trust.step").value == 8
    at.slider(key="w_trust.step").set_value(20).run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("Step 20 of 32 (62% of the pixels changed)")
               for c in at.caption), [c.value for c in at.caption]
