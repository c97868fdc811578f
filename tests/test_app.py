"""The pages, run headless with streamlit.testing.v1.AppTest and the real default model."""

import io
import re

import numpy as np
import pytest
from apptest_support import new_app as open_app
from PIL import Image
from streamlit.testing.v1 import AppTest

from saliency_core.samples import read_sample

pytestmark = pytest.mark.slow
TIMEOUT = 180



def new_app(**query) -> AppTest:
    return open_app(TIMEOUT, **query)


def class_radio(at):
    return at.radio(key="w_class_pick")


def headline(at) -> str:
    return next(m.value for m in at.markdown if "for **" in m.value)


def assert_ok(at):
    assert not at.exception, [e.value for e in at.exception]


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(at, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    at.file_uploader(key="upload_widget").set_value((name, data, mime))
    return at.run()


def test_explore_renders_the_cat_sample_by_default():
    at = new_app()
    assert_ok(at)
    radio = class_radio(at)
    assert any("cat" in label for label in radio.options[:5]), radio.options
    assert radio.index == 0  # top-1 by default
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the overlay and the top-5 bars; side by side only when chosen
    assert "Vanilla gradient" in headline(at)
    assert at.query_params["sample"] == "chelsea"


def cat_top5(classifier) -> list[int]:
    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.pipeline import predict

    model_input, _ = fit_to_model(load_image(read_sample("chelsea")).pixels,
                                  classifier.input_size)
    return [p.index for p in predict(classifier, model_input)]


def test_changing_the_class_changes_the_map(default_classifier):
    top5 = cat_top5(default_classifier)
    at = new_app()
    assert f"class {top5[0]})" in headline(at)
    class_radio(at).set_value(top5[1]).run()
    assert_ok(at)
    assert f"class {top5[1]})" in headline(at)
    assert class_radio(at).index == 1
    assert at.query_params["class"] == str(top5[1])


def test_query_string_opens_the_shared_view():
    at = new_app(sample="coffee", cmap="cividis")
    assert_ok(at)
    assert at.selectbox(key="w_sample").value == "coffee"
    assert at.selectbox(key="w_cmap").value == "cividis"
    at2 = new_app(**{"class": "281"})
    assert "class 281" in headline(at2)


def test_upload_renders_and_a_bad_file_shows_a_clear_error():
    at = new_app()
    at.radio(key="w_source").set_value("Upload").run()
    assert_ok(at)
    upload(at, "holiday.jpg", b"this is a text file, not a photo\n" * 20, "image/jpeg")
    assert_ok(at)
    errors = [e.value for e in at.error]
    assert any("holiday\\.jpg" in e and "not an image" in e for e in errors), errors
    # the next valid upload works
    upload(at, "cat.png", read_sample("chelsea"))
    assert_ok(at)
    assert not at.error
    assert "Vanilla gradient" in headline(at)
    assert "sample" not in at.query_params  # an upload cannot be shared by link


def test_uploaded_image_is_classified():
    at = new_app()
    at.radio(key="w_source").set_value("Upload").run()
    rng = np.random.default_rng(0)
    upload(at, "noise.png", png_bytes(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)))
    assert_ok(at)
    assert len(class_radio(at).options) == 6  # top-5 + "another class"


def test_search_over_all_classes():
    at = new_app()
    radio = class_radio(at)
    radio.set_value(-1).run()
    assert at.text_input(key="w_class_query").label == "Search all 1000 classes"
    at.text_input(key="w_class_query").set_value("golden").run()
    search = at.selectbox(key="w_class_search")
    assert search.options[1].startswith("golden retriever")  # [0] is the current class
    at.text_input(key="w_class_query").set_value("street sign").run()
    search = at.selectbox(key="w_class_search")
    label = next(o for o in search.options if o.startswith("street sign (#919), "))
    probability = label.rsplit(", ", 1)[1]  # found classes show their probability too
    assert re.fullmatch(r"\d+\.\d{1,2}%|<0\.01%", probability), label
    search.set_value(919).run()  # "street sign"
    assert_ok(at)
    assert "class 919" in headline(at)
    assert class_radio(at).value == -1  # "Another class…" stays chosen
    assert any(f"· probability {probability} ·" in c.value for c in at.caption), \
        [c.value for c in at.caption]  # beside its score


def test_model_without_weights_explains_how_to_get_them():
    at = new_app()
    at.selectbox(key="w_model").set_value("resnet50").run()
    assert_ok(at)
    errors = " ".join(e.value for e in at.error)
    assert "SALIENCY_WEIGHTS_RESNET50" in errors and "Models page" in errors
    next(b for b in at.button if b.label == "Use the default model").click().run()
    assert_ok(at)
    assert at.selectbox(key="w_model").value == "efficientnet_lite0"
    assert not at.error


def test_models_page_renders():
    at = new_app()
    at.switch_page("models.py").run()
    assert_ok(at)
    assert any("Models" in t.value for t in at.title)
    assert len(at.table) == 1  # an HTML table, whose long cells wrap


def test_file_names_cannot_inject_markdown():
    at = new_app()
    at.radio(key="w_source").set_value("Upload").run()
    upload(at, "[click me](http://example.com).jpg", b"not an image", "image/jpeg")
    assert_ok(at)
    message = at.error[0].value
    assert "\\[click me\\]\\(http\\:" in message  # shown literally, not as a link


def test_upload_survives_a_visit_to_another_page():
    at = new_app()
    at.radio(key="w_source").set_value("Upload").run()
    upload(at, "parrot.png", read_sample("coffee"))
    first = headline(at)
    at.switch_page("models.py").run()
    assert_ok(at)
    at.switch_page("explore.py").run()
    assert_ok(at)
    assert headline(at) == first
    assert any("earlier file" in c.value for c in at.caption)
    # a later change keeps it, though the widget is empty after the page switch
    at.selectbox(key="w_cmap").set_value("cividis").run()
    assert_ok(at)
    assert headline(at) == first and any("earlier file" in c.value for c in at.caption)
    # removing a file from the widget really removes it
    upload(at, "parrot.png", read_sample("coffee"))
    at.file_uploader(key="upload_widget").set_value(None)
    at.run()
    assert any("Upload a photo" in i.value for i in at.info)


def test_camera_snapshot_is_explained():
    at = new_app()
    at.radio(key="w_source").set_value("Camera").run()
    buffer = io.BytesIO()
    Image.open(io.BytesIO(read_sample("coffee"))).convert("RGB").save(buffer, format="JPEG")
    at.camera_input(key="camera_widget").set_value(("shot.jpg", buffer.getvalue(),
                                                    "image/jpeg"))
    at.run()
    assert_ok(at)
    assert "Vanilla gradient" in headline(at)
    assert any("cup" in option or "espresso" in option for option in class_radio(at).options)


def test_settings_survive_a_visit_to_another_page():
    at = new_app()
    at.slider(key="w_clip").set_value(95.0).run()
    at.selectbox(key="w_cmap").set_value("inferno").run()
    at.switch_page("models.py").run()
    at.switch_page("explore.py").run()
    assert_ok(at)
    assert at.slider(key="w_clip").value == 95.0
    assert at.selectbox(key="w_cmap").value == "inferno"


def test_compare_page_renders_a_grid_of_methods_and_classes():
    at = new_app()
    at.switch_page("compare.py").run()
    assert_ok(at)
    methods = at.multiselect(key="w_compare.methods")
    assert methods.value == ["vanilla", "smoothgrad", "integrated_gradients", "gradcam"]
    classes = next(m for m in at.multiselect if m.label.startswith("Classes (columns"))
    assert len(classes.value) == 3  # the top-3 by default
    cells = [c for c in at.get("plotly_chart") if "compare_cell_" in c.proto.id]
    assert len(cells) == 4 * 3  # one figure per cell
    notes = [m.value.replace("\\", "") for m in at.markdown if ":small[:gray[" in m.value]
    assert len(notes) == 12  # every cell shows its time, or that it came from the cache
    assert all(" s" in t or "from cache" in t for t in notes), notes
    ig = notes[6:9]  # the third row: Integrated Gradients
    assert all("gap " in t and " steps" in t for t in ig), ig
    methods.set_value(["vanilla", "occlusion"]).run()
    assert_ok(at)
    assert len([c for c in at.get("plotly_chart") if "compare_cell_" in c.proto.id]) == 2 * 3


def test_method_picker_parameters_and_contrast():
    at = new_app()
    at.selectbox(key="w_method").set_value("integrated_gradients").run()
    assert_ok(at)
    assert at.slider(key="w_integrated_gradients.steps").value == 50
    assert any("completeness gap" in c.value for c in at.caption)
    at.selectbox(key="w_method").set_value("gradcam").run()
    assert_ok(at)
    layer = at.selectbox(key="w_gradcam.layer")
    assert layer.value == layer.options[-1] or layer.value.startswith("re_lu")
    assert any("layer re_lu" in c.value.replace("\\", "") for c in at.caption)
    at.toggle(key="w_contrast_on").set_value(True).run()
    assert_ok(at)
    assert " versus **" in headline(at)


def test_bounded_store_evicts_least_recently_used():
    from pages.lib.caching import BoundedStore

    store = BoundedStore(max_entries=2)
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1  # "a" is now the most recent
    store.put("c", 3)
    assert store.get("b") is None and store.get("a") == 1 and store.get("c") == 3
    assert len(store) == 2


def test_own_model_upload_is_usable_on_every_page(tmp_path):
    import keras

    inputs = keras.Input((48, 48, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.save(tmp_path / "mine.keras")
    at = new_app()
    at.switch_page("models.py").run()
    at.file_uploader(key="custom_model_upload").set_value(
        ("mine.keras", (tmp_path / "mine.keras").read_bytes(), "application/octet-stream"))
    at.file_uploader(key="custom_labels_upload").set_value(
        ("labels.txt", b"round\nsquare\n", "text/plain"))
    at.selectbox(key="custom_preprocessing").set_value("unit")
    at.run()
    next(b for b in at.button if b.label == "Add this model").click().run()
    assert_ok(at)
    assert any("Added mine.keras" in s.value.replace("\\", "") for s in at.success)
    assert at.session_state["w_model"].startswith("custom:")
    at.switch_page("explore.py").run()
    assert_ok(at)
    assert "Your model: mine" in headline(at).replace("\\", "")
    assert {o.split(" (")[0] for o in class_radio(at).options[:2]} == {"round", "square"}
    assert class_radio(at).label == "Class to explain (top 2)"  # not "top 5" for 2 classes
    at.switch_page("compare.py").run()
    assert_ok(at)
    assert any("compare_cell_" in c.proto.id for c in at.get("plotly_chart"))


def test_own_model_with_code_is_refused_in_the_ui(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    model.save(tmp_path / "lambda.keras")
    at = new_app()
    at.switch_page("models.py").run()
    at.file_uploader(key="custom_model_upload").set_value(
        ("lambda.keras", (tmp_path / "lambda.keras").read_bytes(), "application/octet-stream"))
    at.run()
    next(b for b in at.button if b.label == "Add this model").click().run()
    assert_ok(at)
    assert any("Python code" in e.value for e in at.error)
    assert at.selectbox(key="w_model").value == "efficientnet_lite0"


def test_gradcam_layer_choice_is_reset_for_another_model(tmp_path):
    at = new_app()
    at.selectbox(key="w_method").set_value("gradcam").run()
    layers = at.selectbox(key="w_gradcam.layer").options
    at.selectbox(key="w_gradcam.layer").set_value(layers[0]).run()  # an early layer
    assert_ok(at)
    at.session_state["prefs"]["gradcam.layer"] = "no_such_layer"  # as if set for another model
    at.switch_page("compare.py").run()
    at.multiselect(key="w_compare.methods").set_value(["gradcam"]).run()
    assert_ok(at)


# ------------------------------------------------------------ issue: Explore for real users


def overlay_figure(at) -> dict:
    import json

    for chart in at.get("plotly_chart"):
        figure = json.loads(chart.proto.spec)
        if figure["layout"].get("sliders"):
            return figure
    raise AssertionError("no overlay figure")


def heatmap(figure: dict) -> dict:
    return next(t for t in figure["data"] if t["type"] == "heatmap")


def decode(array) -> np.ndarray:
    """A Plotly data array: plain nested lists, or Plotly 6's base64 typed array."""
    import base64

    if isinstance(array, dict) and "bdata" in array:
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        return flat.reshape([int(n) for n in str(array.get("shape", len(flat))).split(",")])
    return np.asarray(array, dtype=float)


def test_settings_survive_an_upload_and_a_class_change(default_classifier):
    """The path a new user takes: settings on the sample, then Upload (a run that stops
    early, with no image), an upload, the second class. Nothing resets."""
    at = new_app()
    at.selectbox(key="w_method").set_value("smoothgrad").run()
    at.slider(key="w_smoothgrad.samples").set_value(30).run()
    at.selectbox(key="w_cmap").set_value("cividis").run()
    at.slider(key="w_clip").set_value(97.0).run()
    at.session_state["prefs"]["opacity"] = 0.7  # what the overlay's own slider reports
    at.radio(key="w_source").set_value("Upload").run()
    assert_ok(at)
    assert any("Upload a photo to begin" in i.value for i in at.info)
    upload(at, "cup.png", read_sample("coffee"))
    assert_ok(at)
    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.pipeline import predict

    x, _ = fit_to_model(load_image(read_sample("coffee")).pixels, default_classifier.input_size)
    second_class = predict(default_classifier, x)[1].index
    assert class_radio(at).options[1].startswith(
        default_classifier.class_names[second_class].split(",")[0])
    class_radio(at).set_value(second_class).run()
    assert_ok(at)
    assert f"class {second_class})" in headline(at)
    assert "SmoothGrad" in headline(at)
    assert at.selectbox(key="w_method").value == "smoothgrad"
    assert at.slider(key="w_smoothgrad.samples").value == 30
    assert at.selectbox(key="w_cmap").value == "cividis"
    assert at.slider(key="w_clip").value == 97.0
    assert heatmap(overlay_figure(at))["opacity"] == 0.7
    assert at.query_params["smoothgrad.samples"] == "30"
    assert at.query_params["opacity"] == "0.7"
    assert "sample" not in at.query_params and "photo" in at.query_params
    # removing the file keeps every setting too
    at.file_uploader(key="upload_widget").set_value(None)
    at.run()
    at.radio(key="w_source").set_value("Sample").run()
    assert_ok(at)
    assert at.selectbox(key="w_method").value == "smoothgrad"
    assert at.slider(key="w_smoothgrad.samples").value == 30
    assert at.selectbox(key="w_cmap").value == "cividis"
    assert heatmap(overlay_figure(at))["opacity"] == 0.7


def test_settings_defaults_come_from_one_place(monkeypatch):
    """Every page reads the one table of defaults: change a default there, and Explore,
    Compare and the URL all follow."""
    from pages.lib import settings

    at = new_app()
    for name in ("method", "cmap", "reduction", "fit", "score", "clip"):
        widget = at.get("selectbox") + at.get("radio") + at.get("slider")
        value = next(w.value for w in widget if w.key == f"w_{name}")
        assert value == settings.default_of(name), name
    at.selectbox(key="w_method").set_value("integrated_gradients").run()
    for param in ("steps", "baseline", "grid", "target_gap"):
        key = f"integrated_gradients.{param}"
        widget = at.get("selectbox") + at.get("slider")
        assert next(w.value for w in widget if w.key == f"w_{key}") == settings.default_of(key)

    changed = dict(settings.SETTINGS)
    changed["cmap"] = settings.Setting("cmap", "inferno", changed["cmap"].parse)
    monkeypatch.setattr(settings, "SETTINGS", changed)
    at = new_app()
    assert at.selectbox(key="w_cmap").value == "inferno"
    assert at.query_params["cmap"] == "inferno"
    at.switch_page("compare.py").run()
    assert_ok(at)
    assert at.selectbox(key="w_cmap").value == "inferno"


def test_single_channel_methods_need_no_channel_picker_and_occlusion_is_signed():
    at = new_app()
    at.selectbox(key="w_method").set_value("occlusion").run()
    assert_ok(at)
    assert "w_reduction" not in [s.key for s in at.selectbox]
    heat = heatmap(overlay_figure(at))
    assert heat["zmin"] == -1  # hiding a region can raise the score too: shown in blue
    assert heat["colorbar"]["ticktext"][-1] == "raises the score"
    at.selectbox(key="w_method").set_value("gradcam").run()
    assert heatmap(overlay_figure(at))["zmin"] == 0
    at.toggle(key="w_contrast_on").set_value(True).run()
    assert any("never where class b does" in w.value for w in at.warning)


def test_contrast_maps_are_signed_and_name_both_classes(default_classifier):
    at = new_app()
    at.toggle(key="w_contrast_on").set_value(True).run()
    assert_ok(at)
    figure = overlay_figure(at)
    heat = heatmap(figure)
    z = decode(heat["z"])
    assert heat["zmin"] == -1 and heat["zmax"] == 1
    assert z.min() < -0.05 and z.max() > 0.05  # evidence for both classes
    ticks = heat["colorbar"]["ticktext"]
    top = cat_top5(default_classifier)
    names = default_classifier.class_names
    assert ticks[0] == f"favours {names[top[1]].split(',')[0]}"
    assert ticks[-1] == f"favours {names[top[0]].split(',')[0]}"
    assert "w_reduction" not in [s.key for s in at.selectbox]  # a contrast is always signed
    assert any("signed sum" in c.value for c in at.caption)
    assert "S_a − S_b" in " ".join(c.value for c in at.caption)
    assert at.query_params["contrast"] == str(top[1])


def test_from_cache_label_only_when_the_map_was_not_computed_now():
    from pages.lib.caching import explanation_store

    explanation_store().clear()  # maps are shared by every session of the process
    at = new_app()
    captions = " ".join(c.value for c in at.caption)
    assert "computed in" in captions and "from cache" not in captions
    at.switch_page("models.py").run()
    at.switch_page("explore.py").run()
    captions = " ".join(c.value for c in at.caption)
    assert "from cache" in captions and "computed in" not in captions
    at.selectbox(key="w_method").set_value("gradient_x_input").run()
    captions = " ".join(c.value for c in at.caption)
    assert "computed in" in captions


def test_link_from_an_upload_never_applies_its_class_to_the_sample():
    at = new_app(photo="0123456789ab", **{"class": "967", "cmap": "cividis"})
    assert_ok(at)
    warning = " ".join(w.value for w in at.warning)
    assert "photos are never part of a link or kept" in warning and "967" in warning
    assert "class 967" not in headline(at)  # the cat's own top-1 instead
    assert at.selectbox(key="w_cmap").value == "cividis"  # the other settings apply
    # the same photo, uploaded, gets the link's class back
    at2 = new_app(photo=__import__("hashlib").sha256(read_sample("coffee")).hexdigest()[:12],
                  **{"class": "968"})
    at2.radio(key="w_source").set_value("Upload").run()
    upload(at2, "mine.png", read_sample("coffee"))
    assert_ok(at2)
    assert "class 968" in headline(at2)


def test_link_naming_an_own_model_says_it_is_not_loaded():
    at = new_app(model="custom:0123456789ab-unit", **{"class": "1"})
    assert_ok(at)
    warning = " ".join(w.value for w in at.warning)
    assert "not loaded in this browser session" in warning
    assert at.selectbox(key="w_model").value == "efficientnet_lite0"
    assert "class 1)" not in headline(at)


@pytest.mark.parametrize("query", [{"class": "²"}, {"class": "9" * 4301}, {"opacity": "nan"},
                                   {"clip": "1e9"}, {"smoothgrad.samples": "-3"},
                                   {"gradcam.layer": "<b>x</b>"}, {"photo": "../../etc"}])
def test_odd_url_parameters_are_ignored(query):
    at = new_app(**query)
    assert_ok(at)
    assert "Vanilla gradient" in headline(at)


def test_camera_hint_does_not_talk_about_files():
    at = new_app()
    at.radio(key="w_source").set_value("Camera").run()
    hint = " ".join(i.value for i in at.info)
    assert "snapshot" in hint and "Upload" not in hint and "file" not in hint


def weights_status(at, model_name: str) -> str:
    frame = at.table[0].value
    return frame.loc[frame["model"] == model_name, "weights"].iloc[0]


def test_weights_upload_serves_only_its_session_and_the_table_updates_at_once():
    from conftest import shared_path

    weights = shared_path("models", "mobilenet_v2_1.0_224_dequant.weights.h5").read_bytes()
    at = new_app()
    at.switch_page("models.py").run()
    assert weights_status(at, "MobileNetV2").startswith("needs weights")
    at.selectbox(key="weights_model").set_value("mobilenet_v2").run()
    at.file_uploader(key="weights_upload_0").set_value(
        ("mobilenet_v2.weights.h5", weights, "application/octet-stream")).run()
    next(b for b in at.button if b.label == "Use this weights file").click().run()
    assert_ok(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Saved" in s.value for s in at.success)
    # the table above the uploader already shows the new source
    assert weights_status(at, "MobileNetV2") == "ready (file you uploaded in this session)"
    assert at.file_uploader(key="weights_upload_1").value is None  # not offered again
    assert not [b for b in at.button if b.label == "Use this weights file"]
    assert any("is ready" in c.value for c in at.caption)
    at.selectbox(key="w_model").set_value("mobilenet_v2").run()
    at.switch_page("explore.py").run()
    assert_ok(at)
    assert "MobileNetV2" in headline(at)
    # another visitor is not affected
    other = new_app()
    other.switch_page("models.py").run()
    assert weights_status(other, "MobileNetV2").startswith("needs weights")
    other.selectbox(key="w_model").set_value("mobilenet_v2").run()
    other.switch_page("explore.py").run()
    assert_ok(other)
    assert any("SALIENCY_WEIGHTS_MOBILENET_V2" in e.value for e in other.error)


def test_explore_offers_the_provenance_of_the_map_on_screen(default_classifier):
    """The download button is there, and the record it sends describes the map on screen."""
    import json

    from pages.lib import audit_gallery
    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.methods import Target
    from saliency_core.pipeline import explain

    at = new_app()
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Provenance" in labels
    image = load_image(read_sample("chelsea"))
    model_input, _ = fit_to_model(image.pixels, default_classifier.input_size)
    target = Target(cat_top5(default_classifier)[0])
    explanation = explain(default_classifier, model_input, target)
    record = json.loads(audit_gallery.provenance_json(
        "efficientnet_lite0", default_classifier, image, "chelsea.png", "crop", model_input,
        target, "vanilla", {}, explanation, "max_abs", 99.5))
    assert record["image"]["sha256"] == image.digest
    assert record["target"]["class_index"] == target.class_index
    assert record["method"]["key"] == "vanilla"
    assert 0 < record["map"]["border_share"] < 1



def test_a_rerun_does_not_clear_the_keras_session(monkeypatch):
    """Streamlit would clear the Keras session (a full garbage collection) after every
    run; the app turns that off, so a click does not pay for it."""
    import keras

    at = new_app()
    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    at.run()
    assert_ok(at)
    assert calls == []


def test_compare_computes_a_rows_classes_in_one_call_and_nothing_twice(monkeypatch):
    """The vanilla row's three classes come from one batched call; a rerun and a revisit
    compute nothing (every cell is in the store)."""
    from pages.lib import caching

    caching.explanation_store().clear()
    calls = []
    original = caching.explain_classes
    monkeypatch.setattr(caching, "explain_classes",
                        lambda *a, **k: calls.append(list(a[2])) or original(*a, **k))
    from pages.lib import settings

    at = new_app()  # Explore computes the top class's map
    prefs = dict(at.session_state[settings.PREFS])
    prefs["compare.methods"] = ["vanilla"]
    at.session_state[settings.PREFS] = prefs
    at.switch_page("compare.py").run()
    assert_ok(at)
    assert at.multiselect(key="w_compare.methods").value == ["vanilla"]
    classes = next(m for m in at.multiselect if m.label.startswith("Classes (columns"))
    # the other two of the top 3 in one call; the top class's map came from Explore
    assert len(calls) == 1 and len(calls[0]) == 2 and set(calls[0]) < set(classes.value)
    before = len(caching.explanation_store())
    at.run()
    at.switch_page("explore.py").run()
    at.switch_page("compare.py").run()
    assert_ok(at)
    assert len(calls) == 1 and len(caching.explanation_store()) == before


def test_a_rerun_that_changes_nothing_builds_no_figure_again(monkeypatch):
    """The figure on show is built once per look; a no-op rerun draws the same figure
    without building it, a new colour map builds a new one, and the side-by-side view is
    built only when it is chosen (one figure per view goes to the browser)."""
    import json

    from pages.lib import caching
    from saliency_core import plotting

    caching.figure_store().clear()  # other tests may have built the cividis look already
    at = new_app()
    before = json.loads(at.get("plotly_chart")[0].proto.spec)
    calls = []
    for name in ("make_overlay_figure", "make_side_by_side_figure"):
        original = getattr(plotting, name)
        monkeypatch.setattr(plotting, name,
                            lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k))
    at.run()
    assert_ok(at)
    assert calls == []
    assert json.loads(at.get("plotly_chart")[0].proto.spec) == before
    at.selectbox(key="w_cmap").set_value("cividis").run()
    assert_ok(at)
    assert len(calls) == 1 and len(at.get("plotly_chart")) == 2  # the overlay, the top 5
    at.button_group(key="w_view").set_value("Side by side").run()
    assert_ok(at)
    assert len(calls) == 2 and len(at.get("plotly_chart")) == 2


@pytest.mark.parametrize("method", ["guided_backprop", "guided_gradcam"])
def test_guided_methods_are_offered_on_explore_and_compare_like_the_others(method):
    at = new_app()
    at.selectbox(key="w_method").set_value(method).run()
    assert_ok(at)
    assert any("ReLUs with guided gradients" in c.value for c in at.caption)
    assert any("barely depends on the model" in c.value for c in at.caption)  # the warning
    at.switch_page("compare.py").run()
    at.multiselect(key="w_compare.methods").set_value(["vanilla", method]).run()
    assert_ok(at)
    cells = [c.proto.id for c in at.get("plotly_chart") if "compare_cell_" in c.proto.id]
    assert len(cells) == 2 * 3 and sum(f"compare_cell_{method}_" in c for c in cells) == 3
