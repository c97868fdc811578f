"""Compare's grid is made of cells: each class's map is its own small figure, in the same
column as its class name, its time and its note (issue 24, item 3). A row of cells lays
out side by side on a desktop and one under the other on a phone (that part is seen in
``test_browser_phone.py``)."""

import json

import pytest
from apptest_support import new_app

from pages.lib import settings
from saliency_core.plotting import choose_cell_height, make_colorbar_figure, make_legend

pytestmark = pytest.mark.slow


def open_compare(methods: list[str]):
    at = new_app()
    prefs = dict(at.session_state[settings.PREFS])
    prefs["compare.methods"] = methods  # quick rows: one pass each
    at.session_state[settings.PREFS] = prefs
    at.switch_page("compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def cell_columns(at) -> list:
    """The columns that hold one cell's figure (the legend's column holds no label)."""
    return [column for column in at.columns
            if any("compare_cell_" in chart.proto.id for chart in column.get("plotly_chart"))]


def test_each_cell_holds_its_class_time_note_and_map_together():
    at = open_compare(["vanilla", "integrated_gradients"])
    classes = next(m for m in at.multiselect if m.label.startswith("Classes (columns"))
    assert len(classes.value) == 3
    headers = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert headers == ["#### Vanilla gradient", "#### Integrated Gradients"]  # row labels
    cells = cell_columns(at)
    assert len(cells) == 2 * 3  # one column per cell, not one figure for the whole grid
    for position, column in enumerate(cells):
        charts = column.get("plotly_chart")
        labels = [m.value.replace("\\", "") for m in column.markdown]
        assert len(charts) == 1 and len(labels) == 1, labels
        class_index = classes.value[position % 3]
        method = "vanilla" if position < 3 else "integrated_gradients"
        assert charts[0].proto.id.endswith(f"compare_cell_{method}_{class_index}")
        assert f"(#{class_index})" in labels[0]  # the class, above its own map
        assert " s" in labels[0] or "from cache" in labels[0]  # its time
        if method == "integrated_gradients":  # and Integrated Gradients' note, in its cell
            assert "gap " in labels[0] and " steps" in labels[0], labels[0]
        figure = json.loads(charts[0].proto.spec)
        assert [t["type"] for t in figure["data"]] == ["image", "heatmap"]
        assert figure["layout"]["height"] == choose_cell_height(3)
    # one colour bar for the grid, above it
    legend = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert at.get("plotly_chart")[0].proto.id.endswith("compare_legend")
    assert [a["text"] for a in legend["layout"]["annotations"]] == ["0 = least", "1 = most"]


def test_the_pickers_wrap_their_chips():
    """Side by side in half a column the pickers clipped their chips ("thGrad", "pra…")."""
    at = open_compare(["vanilla"])
    pickers = [m for m in at.multiselect if m.label.startswith(("Methods", "Classes"))]
    assert len(pickers) == 2
    assert all(picker.proto.wrap for picker in pickers)
    toggles = [at.button_group(key=f"w_compare.family.{f}") for f in
               ("gradients", "paths", "cams", "perturbation")]
    assert all(toggle.proto.wrap for toggle in toggles)


def test_cell_sizes_and_the_legend():
    assert choose_cell_height(3) == 262 and choose_cell_height(1) == 300
    assert choose_cell_height(5) == 200  # stacked on a phone, never smaller
    signed = make_colorbar_figure("viridis", make_legend(signed=True))
    assert [a.text for a in signed.layout.annotations] == ["lowers the score", "0",
                                                          "raises the score"]
    assert signed.data[0].zmin == -1.0
