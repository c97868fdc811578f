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
                    + [e.value for e in at.info] + [e.value for e in at.warning])


def test_trust_page_runs_cheap_checks_at_once_and_long_ones_on_request():
    at = new_app()
    at.switch_page("trust.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Trust"
    shown = texts(at)
    assert "necessary, not sufficient" in shown
    # cheap checks ran by themselves, each with its number and verdict
    assert "Edge map" in shown.replace("edge map", "Edge map") and "(Spearman " in shown
    assert "over 5 classes, from" in shown  # every random class's Spearman, with the spread
    assert any(v.endswith(("passes.", "fails.", "undecided.")) for v in
               [e.value for e in at.success] + [e.value for e in at.error]
               + [e.value for e in at.warning])
    assert any(c.value.startswith("Rule: passes when the map of every one of the 5 random "
                                  "classes") for c in at.caption)
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert len(charts) == 2  # edges and random classes; nothing long yet
    assert at.button(key="run_random") and at.button(key="run_faith")

    assert at.slider(key="w_trust.draws").value == 3
    at.button(key="run_random").click().run()
    assert not at.exception, at.exception
    assert "when the model is randomised (Spearman" in texts(at)
    assert "over 3 draws" in texts(at)
    assert len(at.get("plotly_chart")) == 4  # the similarity curves and the maps

    at.button(key="run_faith").click().run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "of 20 random orders (AUC" in shown
    assert at.slider(key="w_trust.step").value == 8
    at.slider(key="w_trust.step").set_value(20).run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("Step 20 of 32 (62% of the pixels changed)")
               for c in at.caption), [c.value for c in at.caption]


def test_guided_backprop_gets_a_red_verdict_in_plain_words():
    """The method that fails on purpose: Guided Backpropagation, cascading randomisation,
    the default model and the cat."""
    at = new_app()
    at.switch_page("trust.py").run()
    at.selectbox(key="w_method").set_value("guided_backprop").run()
    assert not at.exception, at.exception
    assert any("is here on purpose" in c.value for c in at.caption)
    at.button(key="run_random").click().run()
    assert not at.exception, at.exception
    failing = [e.value for e in at.error
               if "this map looks convincing, but it barely depends on the model" in e.value]
    assert failing and failing[0].endswith("fails."), [e.value for e in at.error]
    assert "over 3 draws" in failing[0]


def test_the_page_says_what_a_failed_faithfulness_test_means_and_why_gradcam_splits():
    """Issue 24 item 7: a failed deletion or insertion test in a sentence a teacher can read
    out, and why Grad-CAM can be worst on deletion and best on insertion; both are on the
    page before anything long runs."""
    at = new_app()
    at.switch_page("trust.py").run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "A failed deletion test means: blurring away the pixels this map calls most " \
           "important hurts the model's confidence no more than blurring pixels picked at " \
           "random" in captions
    assert "A failed insertion test means: showing the model only the pixels this map calls " \
           "most important brings its confidence back no faster" in captions
    why = next(m.value for m in at.markdown if "worst on deletion and best on insertion"
               in m.value)
    assert "Grad-CAM paints whole regions" in why and "speckles on a blur" in why


def test_checks_over_the_budget_are_refused_before_they_run(tmp_path, monkeypatch):
    """The map is drawn within the default budget; then the operator lowers the budget
    to a millisecond per map or check (the file is re-read when it changes): the map,
    already computed, stays, and every check says what it would take instead of running.
    The page goes on."""
    config = tmp_path / "saliency_studio.toml"
    monkeypatch.setenv("SALIENCY_STUDIO_CONFIG", str(config))  # absent: default limits
    # a sample and method no other test checks, so no result is stored for them yet
    at = new_app(sample="rocket", method="gradient_x_input")
    at.switch_page("trust.py").run()
    assert not at.exception, at.exception
    config.write_text("[limits]\nmax_job_seconds = 0.001\n", encoding="utf-8")
    at.button(key="run_random").click().run()
    assert not at.exception, at.exception
    refusals = [w.value for w in at.warning]
    assert any(r.startswith("The cascading randomisation (3 draws) would take about")
               and "gradient passes" in r and "the limit is 0.0 s per map or check" in r
               for r in refusals), refusals
    assert "when the model is randomised (Spearman" not in texts(at)
    at.button(key="run_faith").click().run()
    assert not at.exception, at.exception
    assert any(w.value.startswith("Deletion and insertion would take about")
               and "706 forward passes" in w.value for w in at.warning), \
        [w.value for w in at.warning]
    at.button(key="run_methods").click().run()
    assert not at.exception, at.exception
    assert any(w.value.startswith("Scoring the random orders would take about")
               for w in at.warning), [w.value for w in at.warning]
    assert any(w.value.startswith("Left out, each over this server's budget")
               and "Gradient" in w.value for w in at.warning), [w.value for w in at.warning]
