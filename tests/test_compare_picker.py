"""Compare's method picker: four default rows, every other method one click away by family."""

from apptest_support import new_app

from saliency_core.methods import METHODS, methods_by_family


def rows(at) -> list[str]:
    """The row titles (each row's heading above its cells), top to bottom."""
    return [m.value[5:] for m in at.markdown if m.value.startswith("#### ")]


def test_family_toggles_add_and_remove_rows_and_show_what_is_in():
    at = new_app()
    at.switch_page("compare.py").run()
    assert not at.exception
    methods = at.multiselect(key="w_compare.methods")
    assert methods.value == ["vanilla", "smoothgrad", "integrated_gradients", "gradcam"]
    groups = methods_by_family()
    toggles = {family: at.button_group(key=f"w_compare.family.{family}") for family in groups}
    for family, toggle in toggles.items():
        assert len(toggle.options) == len(groups[family]), family
    assert sum(len(keys) for keys in groups.values()) == len(METHODS)  # every method offered
    # what is selected shows in each family's toggles
    assert toggles["gradients"].value == ["vanilla", "smoothgrad"]
    assert toggles["paths"].value == ["integrated_gradients"]
    assert toggles["cams"].value == ["gradcam"]
    assert toggles["perturbation"].value == []

    # keep it quick: one class, and rows of one-pass methods
    classes = next(m for m in at.multiselect if m.label.startswith("Classes (columns"))
    classes.set_value(classes.value[:1]).run()
    methods = at.multiselect(key="w_compare.methods")
    methods.set_value(["vanilla"]).run()
    assert at.button_group(key="w_compare.family.paths").value == []
    at.button_group(key="w_compare.family.cams").set_value(["layercam"]).run()
    assert not at.exception
    assert at.multiselect(key="w_compare.methods").value == ["vanilla", "layercam"]
    assert at.button_group(key="w_compare.family.cams").value == ["layercam"]
    assert rows(at) == ["Vanilla gradient", "LayerCAM"]
    at.button_group(key="w_compare.family.gradients").set_value([]).run()
    assert at.multiselect(key="w_compare.methods").value == ["layercam"]
    assert rows(at) == ["LayerCAM"]


def test_a_class_the_model_does_not_have_is_dropped_with_a_notice_not_written_back():
    """``/compare?class=999999`` used to keep the class and write it back to the URL. Each
    page that reads the class, opened first from such a link, says it was not applied and
    leaves it out (Explore explains the image's top class instead)."""
    from apptest_support import ROUTER
    from streamlit.testing.v1 import AppTest

    for page in ("compare.py", "trust.py", "explore.py"):
        at = AppTest.from_file(str(ROUTER), default_timeout=300)
        at.query_params["class"] = "999999"
        at.query_params["cmap"] = "inferno"
        at.switch_page(page).run()  # the link's page is the first one drawn
        assert not at.exception, [e.value for e in at.exception]
        notices = [w.value for w in at.warning if "class 999999" in w.value]
        assert len(notices) == 1 and "has classes 0 to 999" in notices[0], page
        assert at.query_params.get("class") != "999999", page
        assert at.query_params["cmap"] == "inferno", page  # the rest of the link applies
