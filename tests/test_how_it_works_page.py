"""The "How it works" page in AppTest with the default model: it renders the maths,
the pipeline and the Taylor test, shares image and class with Explore, and its link
carries the sample, class and k."""

import numpy as np
import pytest
from apptest_support import new_app

from saliency_core.imaging import fit_to_model, load_image
from saliency_core.samples import read_sample

pytestmark = pytest.mark.slow
PAGE = "how_it_works.py"



def second_class(classifier, sample: str) -> int:
    pixels = load_image(read_sample(sample)).pixels
    image, _view = fit_to_model(pixels, classifier.input_size, "crop")
    return int(np.argsort(-classifier.logits(image[None])[0])[1])


def test_the_lesson_follows_explore_and_its_link_carries_k(default_classifier):
    at = new_app()
    at.selectbox(key="w_sample").set_value("coffee").run()
    chosen_class = second_class(default_classifier, "coffee")
    at.radio(key="w_class_pick").set_value(chosen_class).run()  # on Explore
    assert not at.exception, at.exception

    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "How it works"
    assert at.selectbox(key="w_class").value == chosen_class  # shared with Explore
    assert len(at.get("latex")) == 4
    assert len(at.get("plotly_chart")) == 3  # the pipeline's two figures, the Taylor test
    # the pipeline: two figures of 2 x 2 panels in two columns, which a phone stacks
    # (test_browser_phone.py looks at both widths); no setting to pick panels per row
    pipeline = [c for c in at.columns if any("lesson_pipeline_" in chart.proto.id
                                             for chart in c.get("plotly_chart"))]
    assert len(pipeline) == 2 and all(len(c.get("plotly_chart")) == 1 for c in pipeline)
    assert not [r for r in at.radio if r.label == "Panels per row"]
    verdicts = [e.value for e in at.info] + [e.value for e in at.success] + \
        [e.value for e in at.warning]
    assert any("straight line" in v for v in verdicts), verdicts
    assert any("most salient pixels moved the score" in m.value for m in at.markdown)
    assert at.query_params["sample"] == "coffee"
    assert at.query_params["class"] == str(chosen_class)
    assert at.query_params["lesson.k"] == "100"

    at.select_slider(key="w_lesson.eps").set_range(0.1, 30.0).run()
    at.select_slider(key="w_lesson.k").set_value(500).run()  # the range stays a range
    assert not at.exception, at.exception
    assert at.query_params["lesson.k"] == "500"
    assert at.query_params["lesson.eps"] == "0.1-30"
    assert any("the 500 most salient pixels" in m.value for m in at.markdown)

    at.switch_page("explore.py").run()
    assert "lesson.k" not in at.query_params  # Explore's links stay Explore's
    at.switch_page(PAGE).run()
    assert at.select_slider(key="w_lesson.k").value == 500  # the settings survived
    assert tuple(at.select_slider(key="w_lesson.eps").value) == (0.1, 30.0)


def test_a_shared_lesson_link_opens_with_its_sample_class_and_k():
    at = new_app(sample="rocket", **{"class": "657", "lesson.k": "1000",
                                     "lesson.eps": "0.03-3"})
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="w_sample").value == "rocket"
    assert at.selectbox(key="w_class").value == 657
    assert at.select_slider(key="w_lesson.k").value == 1000
    assert tuple(at.select_slider(key="w_lesson.eps").value) == (0.03, 3.0)
    assert at.query_params["lesson.eps"] == "0.03-3"


def test_a_small_own_model_offers_only_the_ks_it_has_pixels_for(tmp_path):
    import safety_builders as build
    from test_shared_state import add_own_model

    at = add_own_model(new_app(), "tiny.keras", build.small_model_bytes(tmp_path, (8, 8, 3)))
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert not [e.value for e in at.error], [e.value for e in at.error]
    assert at.select_slider(key="w_lesson.k").value == 10  # of 64 pixels: 10 or 20 offered
    assert len(at.get("plotly_chart")) == 3
    at.select_slider(key="w_lesson.k").set_value(20).run()
    assert not at.exception, at.exception

    at = add_own_model(new_app(**{"lesson.k": "5000"}), "small.keras",
                       build.small_model_bytes(tmp_path, (16, 16, 3)))
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert not [e.value for e in at.error], [e.value for e in at.error]
    slider = at.select_slider(key="w_lesson.k")
    assert slider.value <= 128 and slider.value in (10, 20, 50, 100)


def test_the_sharp_map_section_shows_guided_backprop_unchanged_by_a_random_top():
    at = new_app()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert any(s.value == "4 · Why a sharp map can still be wrong" for s in at.subheader)
    assert len(at.get("plotly_chart")) == 3  # the lesson's figure waits for the button
    at.button(key="run_sharp").click().run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 4
    said = " ".join(m.value for m in at.markdown)
    assert "Guided Backpropagation's map keeps a Spearman of" in said
    assert "barely depends on the model's top" in said  # the default model and the cat
