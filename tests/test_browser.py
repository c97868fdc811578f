"""End-to-end: the real app under `streamlit run`, driven in headless Chromium.

Playwright's Python package drives Debian's ``chromium`` (found with
``shutil.which``); Playwright's own browser download is never used. Screenshots
are written to ``test-artifacts/``.
"""

from __future__ import annotations

import io
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser_support import ARTIFACTS, OVERLAY, screenshot
from PIL import Image

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser]
SAMPLE = ROOT / "saliency_core" / "samples" / "chelsea.png"
COFFEE = ROOT / "saliency_core" / "samples" / "coffee.png"






def assert_no_exception(page) -> None:
    shown = page.locator("[data-testid='stException']")
    assert shown.count() == 0, shown.all_inner_texts()


def wait_for_overlay(page, timeout_s: float = 120) -> None:
    page.wait_for_selector(OVERLAY, timeout=timeout_s * 1000)


def test_every_page_loads_without_exceptions(server, page):
    page.goto(server)
    wait_for_overlay(page)
    assert_no_exception(page)
    screenshot(page, "explore-default")
    page.goto(server + "/compare")
    page.get_by_role("heading", name="Compare").first.wait_for(timeout=60_000)
    wait_for_overlay(page, 180)
    assert_no_exception(page)
    screenshot(page, "compare")
    page.goto(server + "/models")
    page.get_by_role("heading", name="Models").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stTable']").first.wait_for(timeout=60_000)
    assert_no_exception(page)
    screenshot(page, "models")


def test_the_first_visitor_after_a_start_does_not_wait_for_the_model(fresh_server, page):
    """The server loads and traces the default model when it starts (its lifespan), before
    any browser connects: the log says so first, and the first visitor then finds it loaded,
    as the Models page's status shows."""
    from browser_support import SERVER_LOGS

    log = SERVER_LOGS[fresh_server]
    deadline = time.monotonic() + 180
    while "loaded and traced" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    text = log.read_text()
    assert "the default model is loaded and traced" in text, text[-2000:]
    page.goto(fresh_server + "/?sample=coffee")
    wait_for_overlay(page, 120)
    page.get_by_role("link", name="Models").click()
    status = page.get_by_text("after the server started, before any visitor")
    status.wait_for(timeout=60_000)
    assert "was loaded and traced" in status.inner_text()
    assert_no_exception(page)
    screenshot(page, "models-warm-status")


def test_a_shared_link_to_a_page_works_as_the_first_request(fresh_server, page):
    """The first request after start-up runs in Streamlit's folder-based mode (see
    pages/lib/layout.page_setup); a teacher's deep link must still work then."""
    page.goto(fresh_server + "/compare?sample=coffee&cmap=cividis")
    page.get_by_role("heading", name="Compare").first.wait_for(timeout=120_000)
    wait_for_overlay(page, 180)
    assert_no_exception(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    assert sidebar.get_by_text("Classifier", exact=True).count() == 1  # the model picker
    menu = page.locator("[data-testid='stSidebarNav'] a").all_inner_texts()
    assert [item.split()[-1] for item in menu[:2]] == ["Explore", "Compare"], menu  # not
    assert not any(item.strip() == "app" for item in menu), menu  # the raw file names
    assert "cmap=cividis" in page.url and "sample=coffee" in page.url
    screenshot(page, "compare-first-request")


def test_upload_shows_cat_classes_and_overlay(server, page):
    page.goto(server)
    wait_for_overlay(page)  # the default view: the model is loaded and warm
    page.get_by_text("Upload", exact=True).click()
    page.get_by_text("Upload a photo to begin").wait_for(timeout=30_000)
    page.wait_for_selector(OVERLAY, state="detached", timeout=30_000)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(SAMPLE))
    start = time.monotonic()
    radio = page.locator("[data-testid='stRadio']").filter(has_text="Class to explain")
    radio.wait_for(timeout=60_000)
    wait_for_overlay(page, 60)
    elapsed = time.monotonic() - start
    options = radio.inner_text().splitlines()
    assert any("cat" in option for option in options), options
    assert page.get_by_text("chelsea.png could not be used").count() == 0
    assert_no_exception(page)
    screenshot(page, "explore-upload-cat")
    (ARTIFACTS / "upload-to-overlay-seconds.txt").write_text(f"{elapsed:.2f}\n")


def test_png_download_is_the_overlay(server, page):
    page.goto(server)
    wait_for_overlay(page)
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Overlay PNG").click()
    data = Path(info.value.path()).read_bytes()
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    # the cat sample (451 x 300), centre-cropped to 300 x 300, plus a colour bar and a caption
    assert image.width > 300 and image.height > 300
    assert np.asarray(image.convert("RGB"))[:300, :300].std() > 10  # the photo is in it
    assert info.value.suggested_filename.startswith("chelsea_efficientnet_lite0_class")


def overlay_state(page) -> dict:
    """The overlay figure's heat-map opacity and a fingerprint of its values, read in-page."""
    return page.evaluate("""() => {
        const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
        const fig = plots.find(p => (p.data || []).some(t => t.type === 'heatmap'));
        const heat = fig.data.find(t => t.type === 'heatmap');
        const z = heat.z;  // {dtype, bdata, shape} from Plotly 6, or nested arrays
        return {opacity: heat.opacity, total: z.bdata || JSON.stringify(z)};
    }""")


def test_class_change_opacity_and_download(server, page):
    page.goto(server)
    wait_for_overlay(page)
    first = overlay_state(page)
    radio = page.locator("[data-testid='stRadio']").filter(has_text="Class to explain")
    second_label = radio.locator("label").filter(has_text="%").nth(1)
    second_name = second_label.inner_text().split(" (")[0]
    second_label.click()
    page.get_by_text(f"for {second_name}").first.wait_for(timeout=60_000)
    wait_for_overlay(page)
    page.wait_for_function(
        "(before) => { const f = Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".find(p => (p.data||[]).some(t => t.type === 'heatmap'));"
        " const z = f.data.find(t => t.type === 'heatmap').z;"
        " return (z.bdata || JSON.stringify(z)) !== before; }",
        arg=first["total"], timeout=60_000)
    assert overlay_state(page)["total"] != first["total"]  # the map itself changed
    # the opacity slider under the overlay works in the browser, without a rerun
    overlay = page.locator(".js-plotly-plot").filter(has=page.locator("g.hm")).first
    step = overlay.locator("g.slider-label-group", has_text="0.9").first.bounding_box()
    rail = overlay.locator("rect.slider-rail-touch-rect").first.bounding_box()
    page.mouse.click(step["x"] + step["width"] / 2, rail["y"] + rail["height"] / 2)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(p => (p.data||[])"
        ".some(t => t.type === 'heatmap' && Math.abs(t.opacity - 0.9) < 1e-6))", timeout=10_000)
    screenshot(page, "explore-second-class-opacity-0.9")
    wait_for_url_param(page, "opacity", "0.9")  # the server follows the one opacity control
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Overlay PNG").click()
    image = Image.open(io.BytesIO(Path(info.value.path()).read_bytes()))
    assert image.format == "PNG" and image.width > 300
    assert_no_exception(page)


def test_file_above_the_upload_limit_is_refused(server, page, tmp_path):
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * (51 * 1024 * 1024))
    page.goto(server)
    wait_for_overlay(page)
    page.get_by_text("Upload", exact=True).click()
    page.get_by_text("Upload a photo to begin").wait_for(timeout=30_000)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(big))
    page.get_by_text("50", exact=False).filter(has_text="MB").first.wait_for(timeout=30_000)
    message = page.locator("[data-testid='stFileUploader']").inner_text()
    assert "must be 50" in message or "exceeds" in message.lower(), message
    screenshot(page, "upload-too-large")
    # the next valid upload works
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(SAMPLE))
    wait_for_overlay(page, 60)
    assert_no_exception(page)


def test_eight_simultaneous_sessions_get_their_own_results(server, browser, tmp_path,
                                                           default_classifier):
    """Eight browser sessions upload eight different photos at once; each sees the top-1
    class of its own photo (checked against the core) and its own overlay image."""
    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.labels import shorten_label
    from saliency_core.pipeline import predict
    from saliency_core.samples import SAMPLES, read_sample

    files = []
    for key in SAMPLES:
        data = read_sample(key)
        for flip in (False, True):
            image = Image.open(io.BytesIO(data)).convert("RGB")
            if flip:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            path = tmp_path / f"{key}-{'flipped' if flip else 'plain'}.png"
            image.save(path)
            files.append(path)
    expected = []
    for path in files:
        pixels = load_image(path.read_bytes()).pixels
        x, _ = fit_to_model(pixels, default_classifier.input_size)
        expected.append(shorten_label(predict(default_classifier, x)[0].name))

    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in files]
    pages = [c.new_page() for c in contexts]
    try:
        for page in pages:
            page.goto(server)
        for page in pages:
            wait_for_overlay(page)
            page.get_by_text("Upload", exact=True).click()
        for page in pages:
            page.get_by_text("Upload a photo to begin").wait_for(
                timeout=60_000)
        for page, path in zip(pages, files, strict=True):  # all uploads in flight together
            page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
                str(path))
        sources = []
        for page, name in zip(pages, expected, strict=True):
            wait_for_overlay(page, 180)
            page.get_by_text(f"for {name}").first.wait_for(timeout=180_000)
            assert_no_exception(page)
            sources.append(page.evaluate(
                "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                ".flatMap(p => (p.data||[]).filter(t => t.type === 'image'))[0].source"))
        assert len(set(sources)) == len(files)  # every session shows its own image
        screenshot(pages[-1], "eight-sessions-last")
    finally:
        for context in contexts:
            context.close()


# ------------------------------------------------------------ Explore for real users


def upload_photo(page, path, tap: bool = False) -> None:
    """Switch the image source to Upload, upload ``path`` and wait for its overlay."""
    source = page.get_by_text("Upload", exact=True)
    if tap:
        source.tap()
    else:
        source.click()
    page.get_by_text("Upload a photo to begin").wait_for(timeout=30_000)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(path))
    wait_for_overlay(page, 180)


def wait_for_url_param(page, name: str, value: str, timeout_s: float = 30) -> None:
    page.wait_for_function(
        "([name, value]) => new URLSearchParams(location.search).get(name) === value",
        arg=[name, value], timeout=timeout_s * 1000)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label`` (a react-aria combobox)."""
    page.get_by_role("combobox", name=label).click()
    page.keyboard.press("ArrowDown")
    page.get_by_role("listbox", name=label).get_by_role("option", name=option).first.click()


def set_plotly_opacity(page, value: str) -> None:
    """Click a step of the overlay's own (client-side) opacity slider."""
    overlay = page.locator(".js-plotly-plot").filter(has=page.locator("g.hm")).first
    step = overlay.locator("g.slider-label-group", has_text=value).first.bounding_box()
    rail = overlay.locator("rect.slider-rail-touch-rect").first.bounding_box()
    page.mouse.click(step["x"] + step["width"] / 2, rail["y"] + rail["height"] / 2)


def set_slider_and_wait(page, label: str, value: int, param: str, attempts: int = 3) -> None:
    """Move a Streamlit slider (step 1) with the keyboard until the link has ``value``.

    Keys pressed while a rerun redraws the slider can be lost, as for a user, who then
    presses again: so does this helper, from the value the slider shows.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    for attempt in range(attempts):
        box = page.locator("[data-testid='stSlider']").filter(has_text=label)
        slider = box.get_by_role("slider")
        slider.wait_for(timeout=60_000)
        now = int(float(box.locator("[data-testid='stSliderThumbValue']").inner_text()))
        slider.focus()
        for _ in range(abs(value - now)):
            page.keyboard.press("ArrowRight" if value > now else "ArrowLeft")
        try:
            wait_for_url_param(page, param, str(value), 60)
            return
        except PlaywrightTimeoutError:
            if attempt == attempts - 1:
                raise


def set_opacity_and_wait(page, value: str, attempts: int = 3) -> None:
    """Move the overlay's opacity slider until the server has the value (in the link).

    A figure Streamlit redraws just after the click (the previous setting's rerun
    landing) starts again from the server's opacity, as a user would see; the user
    then drags again, and so does this helper, at most ``attempts`` times.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    for attempt in range(attempts):
        wait_for_overlay(page)
        set_plotly_opacity(page, value)
        try:
            wait_for_url_param(page, "opacity", value, 15)
            return
        except PlaywrightTimeoutError:
            if attempt == attempts - 1:
                raise


def overlay_heatmap(page) -> dict:
    """The overlay's heat map as the browser has it: opacity and colour scale."""
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(p => p.layout"
        " && p.layout.sliders && p.layout.sliders.length && p.data)", timeout=120_000)
    return page.evaluate("""() => {
        const plot = Array.from(document.querySelectorAll('.js-plotly-plot')).find(
            p => p.layout && p.layout.sliders && p.layout.sliders.length);
        const heat = plot.data.find(t => t.type === 'heatmap');
        return {opacity: heat.opacity, colorscale: JSON.stringify(heat.colorscale)};
    }""")


def headline_text(page) -> str:
    return page.locator("[data-testid='stMarkdownContainer']").filter(
        has_text=" for ").filter(has_text="(class").first.inner_text()


def pick_second_class(page) -> str:
    radio = page.locator("[data-testid='stRadio']").filter(has_text="Class to explain")
    radio.wait_for(timeout=120_000)
    second = radio.locator("label").filter(has_text="%").nth(1)
    name = second.inner_text().split(" (")[0]
    second.click()
    page.wait_for_function(
        "(name) => Array.from(document.querySelectorAll('[data-testid=stMarkdownContainer]'))"
        ".some(e => e.innerText.includes(' for ' + name + ' (class'))", arg=name,
        timeout=120_000)
    wait_for_overlay(page)
    return name


def set_up_smoothgrad_cividis_07(page) -> None:
    """SmoothGrad with 30 samples, Cividis and opacity 0.7 on the sample, as a user does."""
    wait_for_overlay(page)
    choose(page, "Method", "SmoothGrad")
    set_slider_and_wait(page, "Samples", 30, "smoothgrad.samples")  # from 25
    choose(page, "Colour map", "Cividis")
    wait_for_url_param(page, "cmap", "cividis", 120)
    wait_for_overlay(page)
    set_opacity_and_wait(page, "0.7")


def assert_settings_kept(page) -> None:
    assert page.get_by_role("combobox", name="Method").input_value() == "SmoothGrad"
    assert page.get_by_role("combobox", name="Colour map").input_value().startswith("Cividis")
    samples = page.locator("[data-testid='stSlider']").filter(has_text="Samples")
    assert "30" in samples.inner_text()
    heat = overlay_heatmap(page)
    assert heat["opacity"] == pytest.approx(0.7)
    assert "rgba(0,34,78," in heat["colorscale"].lower()  # Cividis's darkest blue, faded
    for name, value in (("method", "smoothgrad"), ("smoothgrad.samples", "30"),
                        ("cmap", "cividis"), ("opacity", "0.7")):
        wait_for_url_param(page, name, value)


def test_settings_survive_an_upload_and_a_class_change(server, page):
    page.goto(server)
    set_up_smoothgrad_cividis_07(page)
    upload_photo(page, COFFEE)
    name = pick_second_class(page)
    assert_settings_kept(page)
    assert "SmoothGrad" in headline_text(page) and name in headline_text(page)
    assert_no_exception(page)
    screenshot(page, "explore-upload-second-class-settings-kept")


def test_settings_survive_a_webcam_snapshot_and_a_class_change(server, page):
    page.goto(server)
    set_up_smoothgrad_cividis_07(page)
    page.get_by_text("Camera", exact=True).click()
    page.get_by_text("Take a snapshot with your camera").wait_for(timeout=30_000)
    take = page.get_by_role("button", name="Take Photo")
    take.wait_for(timeout=60_000)
    page.wait_for_function("() => { const v = document.querySelector('video');"
                           " return v && v.readyState >= 2; }", timeout=60_000)
    take.click()
    wait_for_overlay(page, 180)
    pick_second_class(page)
    assert_settings_kept(page)
    assert_no_exception(page)
    screenshot(page, "explore-snapshot-second-class-settings-kept")


def test_a_link_made_after_an_upload_never_shows_its_class_on_another_image(server, page,
                                                                            browser):
    page.goto(server)
    wait_for_overlay(page)
    upload_photo(page, COFFEE)
    pick_second_class(page)
    page.wait_for_function("() => new URLSearchParams(location.search).has('photo')")
    link = page.url
    linked_class = dict(p.split("=", 1) for p in link.split("?", 1)[1].split("&"))["class"]
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        visitor = other.new_page()
        visitor.goto(link)
        wait_for_overlay(visitor, 180)
        notice = visitor.locator("[data-testid='stAlert']").filter(
            has_text="photos are never part of a link or kept")
        notice.wait_for(timeout=30_000)
        assert f"class {linked_class}" in notice.inner_text()
        assert f"(class {linked_class})" not in headline_text(visitor)
        assert "Cat" in visitor.get_by_role("combobox", name="Sample photo").input_value()
        assert_no_exception(visitor)
        screenshot(visitor, "link-from-upload-opened-elsewhere")
    finally:
        other.close()


def test_a_link_naming_an_own_model_never_applies_its_class_to_the_default(server, page,
                                                                         tmp_path):
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3)(x)).save(tmp_path / "three.keras")
    page.goto(server + "/models")
    page.get_by_role("heading", name="Models").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stFileUploader']").filter(has_text="Model (.keras").locator(
        "[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        str(tmp_path / "three.keras"))
    page.get_by_role("button", name="Add this model").click()
    page.get_by_text("Added three.keras").wait_for(timeout=120_000)
    page.get_by_role("link", name="Explore").click()
    wait_for_overlay(page, 180)
    radio = page.locator("[data-testid='stRadio']").filter(has_text="Class to explain (top 3)")
    radio.wait_for(timeout=60_000)
    radio.locator("label").filter(has_text="class 2").first.click()
    wait_for_url_param(page, "class", "2", 60)
    page.wait_for_function(
        "() => (new URLSearchParams(location.search).get('model') || '').startsWith('custom:')")
    page.reload()
    wait_for_overlay(page, 180)
    notice = page.locator("[data-testid='stAlert']").filter(has_text="not loaded in this")
    notice.wait_for(timeout=30_000)
    assert "EfficientNet-Lite0" in headline_text(page)
    assert "(class 2)" not in headline_text(page)  # the cat's own top class instead
    assert_no_exception(page)
    screenshot(page, "link-own-model-after-reload")


def test_a_wide_own_model_sees_a_wide_centre_crop_on_explore(server, page, tmp_path):
    """Issue 27: a 64×128 (height × width) own model on the cat (451×300): the preview
    frames a 451×226 region, the overlay is that region (not a stretched square)."""
    import keras

    inputs = keras.Input((64, 128, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3)(x)).save(tmp_path / "wide.keras")
    page.goto(server + "/models")
    page.get_by_role("heading", name="Models").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stFileUploader']").filter(has_text="Model (.keras").locator(
        "[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        str(tmp_path / "wide.keras"))
    page.get_by_role("button", name="Add this model").click()
    page.get_by_text("Added wide.keras").wait_for(timeout=120_000)
    page.get_by_role("link", name="Explore").click()
    wait_for_overlay(page, 180)
    page.get_by_text("The model sees the framed 451×226 region, resized to 128×64").wait_for(
        timeout=60_000)
    assert page.get_by_text("Centre crop (the model's shape)").count() == 1
    # nothing calls the wide input a square ("square root" in the fading note is fine)
    assert page.get_by_text(re.compile(r"square(?! root)", re.IGNORECASE)).count() == 0
    plot = page.locator("[data-testid='stPlotlyChart']").first
    image = plot.locator(".js-plotly-plot g.hm image").first
    box = image.bounding_box()
    assert box is not None and 1.8 < box["width"] / box["height"] < 2.2, box  # 451×226
    assert_no_exception(page)
    screenshot(page, "explore-own-model-64x128")
    page.set_viewport_size({"width": 390, "height": 844})
    wait_for_overlay(page, 60)
    page.get_by_text("The model sees the framed 451×226 region").scroll_into_view_if_needed()
    screenshot(page, "explore-own-model-64x128-phone")


def touch_swipe(page, x: float, y: float, distance: float) -> None:
    """A one-finger swipe upwards by ``distance`` pixels, as real touch events."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for i in range(1, 11):
        cdp.send("Input.dispatchTouchEvent",
                 {"type": "touchMove", "touchPoints": [{"x": x, "y": y - distance * i / 10}]})
        time.sleep(0.02)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


SCROLL_TOP = ("() => (document.querySelector(\"[data-testid='stMain']\") || {}).scrollTop"
              " || window.scrollY")


def test_phone_layout_result_in_view_swipe_scrolls_and_tap_reads_a_pixel(server, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True, device_scale_factor=2)
    try:
        page = context.new_page()
        page.goto(server)
        wait_for_overlay(page)
        upload_photo(page, COFFEE, tap=True)
        # the result scrolls into view by itself: the map is on screen
        page.wait_for_function(
            "() => { const r = document.querySelector('.st-key-result .js-plotly-plot')"
            "?.getBoundingClientRect(); return r && r.top >= 0 && r.top < 844 * 0.5; }",
            timeout=30_000)
        screenshot(page, "phone-after-upload")
        plot = page.locator(".st-key-result .js-plotly-plot").first.bounding_box()
        before = page.evaluate(SCROLL_TOP)
        touch_swipe(page, plot["x"] + plot["width"] / 2, plot["y"] + plot["height"] * 0.5, 200)
        page.wait_for_function(f"() => ({SCROLL_TOP})() > {before} + 100", timeout=10_000)
        # the swipe scrolled the page; the figure was not zoomed or panned
        ranges = page.evaluate("""() => {
            const p = document.querySelector('.st-key-result .js-plotly-plot');
            return [p.layout.xaxis.range, p.layout.yaxis.range]; }""")
        assert ranges[0][0] == pytest.approx(-0.5) and ranges[1][1] == pytest.approx(-0.5)
        # a tap on the map shows that pixel's values
        touch_swipe(page, plot["x"] + plot["width"] / 2, plot["y"] + plot["height"] * 0.5, -200)
        page.wait_for_timeout(800)
        heat = page.locator(".st-key-result .js-plotly-plot g.hm").first.bounding_box()
        page.touchscreen.tap(heat["x"] + heat["width"] / 2, heat["y"] + heat["height"] / 2)
        label = page.locator(".st-key-result .js-plotly-plot .hoverlayer .hovertext")
        label.first.wait_for(timeout=10_000)
        text = label.first.text_content()
        assert "model's 224×224 input" in text and "raw attribution" in text
        screenshot(page, "phone-tap-reads-a-pixel")
        assert_no_exception(page)
    finally:
        context.close()


# ------------------------------------------------------------ safety across users


def test_a_teacher_opens_a_lesson_link_reads_a_pixel_widens_the_range_and_reloads(server,
                                                                                 browser):
    """A projector-sized window (1280x720): the link's sample and k apply, the maths is
    typeset, hovering the reduced map shows the three channel gradients, a change of
    the nudge range reaches the URL, and a reload keeps it all."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    try:
        page.goto(server + "/how_it_works?sample=coffee&lesson.k=200")
        page.get_by_role("heading", name="How it works").first.wait_for(timeout=120_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3",
                               timeout=180_000)
        assert_no_exception(page)
        assert page.locator(".katex").count() >= 3  # formulas typeset, from the app's own files
        wait_for_url_param(page, "lesson.k", "200")
        wait_for_url_param(page, "sample", "coffee")
        # the pipeline is two 2x2 figures; the second one's top-right panel is "max over RGB"
        reduced = page.locator(".js-plotly-plot").nth(1).locator(
            "g.draglayer g.x2y2 rect.nsewdrag").first
        reduced.scroll_into_view_if_needed()
        box = reduced.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_selector("g.hovertext", timeout=10_000)
        hover = page.locator("g.hovertext").first.text_content()
        for part in ("∂S/∂I red", "∂S/∂I green", "∂S/∂I blue", "max |∂S/∂I|"):
            assert part in hover, hover
        screenshot(page, "how-it-works-1280x720")

        start = page.get_by_role("slider", name="Nudge range ε (grey levels) — start")
        start.focus()
        page.keyboard.press("ArrowRight")
        wait_for_url_param(page, "lesson.eps", "0.03-10", 120)
        page.wait_for_function(  # the Taylor chart now starts at the new smallest nudge
            "() => { const p = document.querySelectorAll('.js-plotly-plot')[2];"
            " return p && p._fullData && Math.abs(Number(p._fullData[0].x[0]) - 0.03) < 1e-9; }",
            timeout=60_000)
        page.reload()
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3",
                               timeout=180_000)
        assert page.get_by_role("slider", name="Pixels nudged (k)").get_attribute(
            "aria-valuetext") == "200"
        assert start.get_attribute("aria-valuetext") == "0.03"
        assert_no_exception(page)
    finally:
        context.close()


def test_a_full_walk_requests_nothing_outside_the_app(server, browser):
    """No page asks a third party for anything (fonts, icons, beacons): every request of
    a walk through all pages goes to the app's own origin."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page = context.new_page()
        page.goto(server)
        wait_for_overlay(page)
        page.get_by_text("Upload", exact=True).click()
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(SAMPLE))
        wait_for_overlay(page, 120)
        page.get_by_role("link", name="Compare").click()
        page.get_by_role("heading", name="Compare").first.wait_for(timeout=60_000)
        wait_for_overlay(page, 180)
        page.get_by_role("link", name="How it works").click()
        page.locator(".katex").first.wait_for(timeout=120_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2",
                               timeout=180_000)
        page.get_by_role("link", name="Models").click()
        page.locator("[data-testid='stTable']").first.wait_for(timeout=60_000)
        page.get_by_role("link", name="Explore").click()
        wait_for_overlay(page, 120)
        page.wait_for_timeout(1000)
    finally:
        context.close()
    outside = [u for u in requests if not (u.startswith(server) or u.startswith(("data:",
                                                                                 "blob:")))]
    assert requests and not outside, outside


def test_a_memory_bomb_model_upload_does_not_stop_another_session(server, browser,
                                                                  tmp_path):
    """One visitor uploads a .keras whose weights declare 975M floats while another explores
    a photo: the first gets a clear refusal, the second its map, and the server lives on."""
    import safety_builders as build

    bomb = tmp_path / "bomb.keras"
    members = build.read_members(build.small_model_bytes(tmp_path))
    members["model.weights.h5"] = build.new_layout_huge()
    bomb.write_bytes(build.write_archive(members))
    attacker_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    visitor_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        attacker, visitor = attacker_context.new_page(), visitor_context.new_page()
        attacker.goto(server + "/models")
        attacker.get_by_role("heading", name="Models").first.wait_for(timeout=60_000)
        attacker.locator("[data-testid='stFileUploader']").filter(
            has_text="Model (.keras").locator(
            "[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(bomb))
        attacker.get_by_role("button", name="Add this model").click()
        visitor.goto(server + "/?sample=coffee")  # while the bomb is being checked
        wait_for_overlay(visitor, 180)
        assert_no_exception(visitor)
        refusal = attacker.locator("[data-testid='stAlert']").filter(has_text="refused")
        refusal.or_(attacker.locator("[data-testid='stAlert']").filter(
            has_text="could not")).first.wait_for(timeout=120_000)
        assert_no_exception(attacker)
        visitor.reload()
        wait_for_overlay(visitor, 120)  # the server still serves everyone
        with urllib.request.urlopen(server + "/_stcore/health", timeout=5) as response:
            assert response.read() == b"ok"
        screenshot(attacker, "memory-bomb-refused")
    finally:
        attacker_context.close()
        visitor_context.close()
