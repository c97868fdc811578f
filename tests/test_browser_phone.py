"""Compare and How it works at a desktop's width and a phone's (390x844, touch), in headless
Chromium under ``streamlit run`` (issue 24, items 3 and 4).

Streamlit tells Python nothing about the screen, so what a phone gets is decided in the
browser (columns that stack at 640 px, a CSS media query); only a browser can check it.
Fixtures and screenshots (``test-artifacts/``) come from ``tests/browser_support.py``.
"""

from __future__ import annotations

import pytest
from browser_support import screenshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
CELL = "[class*='st-key-compare_cell_']"

BOX = "e => { const r = e.getBoundingClientRect(); " \
      "return {x: r.x, y: r.y, right: r.right, bottom: r.bottom}; }"


@pytest.fixture
def phone(browser):
    context = browser.new_context(**PHONE)
    yield context.new_page()
    context.close()


def assert_no_exception(page) -> None:
    shown = page.locator("[data-testid='stException']")
    assert shown.count() == 0, shown.all_inner_texts()


def open_compare(page, server: str) -> list[dict]:
    """Compare on the cat with its default rows and columns; every cell's box, label and
    label box, in page order."""
    page.goto(server + "/compare?sample=chelsea")
    page.get_by_role("heading", name="Compare").first.wait_for(timeout=120_000)
    page.get_by_text("Perturbation", exact=True).first.wait_for(timeout=120_000)
    page.wait_for_timeout(1000)  # the pickers have their chips
    assert_chips_fit(page)
    page.wait_for_function(
        f"document.querySelectorAll(\"{CELL} .js-plotly-plot .hm image\").length == 12",
        timeout=300_000)
    assert_no_exception(page)
    return page.eval_on_selector_all(CELL, """cells => cells.map(cell => {
        let column = cell;
        while (column && column.getAttribute('data-testid') !== 'stColumn')
            column = column.parentElement;
        const label = column.querySelector('[data-testid="stMarkdownContainer"]');
        const box = e => { const r = e.getBoundingClientRect();
                           return {x: r.x, y: r.y, right: r.right, bottom: r.bottom}; };
        return {key: [...cell.classList].find(c => c.startsWith('st-key-')),
                cell: box(cell.querySelector('.js-plotly-plot')),
                label: label.innerText, labelBox: box(label)};
    })""")


def assert_chips_fit(page) -> None:
    """No chip of the method and class pickers, and no family toggle, is cut off."""
    clipped = page.evaluate("""(() => {
        const out = [];
        const inside = (e, box) => { const r = e.getBoundingClientRect();
            return r.left >= box.left - 1 && r.right <= box.right + 1; };
        const pickers = '[data-testid="stMultiSelectTagsContainer"]';
        for (const tags of document.querySelectorAll(pickers)) {
            const box = tags.getBoundingClientRect();
            for (const chip of tags.querySelectorAll('[data-tag]'))
                if (!inside(chip, box)) out.push(chip.innerText);
        }
        for (const group of document.querySelectorAll('[data-testid="stButtonGroup"]')) {
            const box = group.parentElement.getBoundingClientRect();
            for (const pill of group.querySelectorAll('button'))
                if (!inside(pill, box) || pill.getBoundingClientRect().right > innerWidth)
                    out.push(pill.innerText);
        }
        return out; })()""")
    assert clipped == [], clipped


def assert_labels_sit_on_their_maps(cells: list[dict]) -> None:
    for cell in cells:
        gap = cell["cell"]["y"] - cell["labelBox"]["bottom"]
        assert 0 <= gap < 48, cell  # right above its own map, nothing between
        assert "(#" in cell["label"] and (" s" in cell["label"] or "cache" in cell["label"])
        if "integrated_gradients" in cell["key"]:
            assert "gap " in cell["label"] and "steps" in cell["label"], cell


def test_compare_cells_are_units_on_a_desktop_and_a_phone(server, page, phone):
    cells = open_compare(page, server)  # 1400 x 1000
    assert_labels_sit_on_their_maps(cells)
    for row in range(4):  # a row of three cells side by side, one colour scale
        tops = {round(c["cell"]["y"]) for c in cells[3 * row:3 * row + 3]}
        lefts = [c["cell"]["x"] for c in cells[3 * row:3 * row + 3]]
        assert len(tops) == 1 and lefts == sorted(lefts) and len(set(lefts)) == 3, cells
        assert min(c["cell"]["right"] - c["cell"]["x"] for c in cells) > 200
    screenshot(page, "compare-1400")

    cells = open_compare(phone, server)  # 390 x 844: one cell a line, labels on their maps
    assert_labels_sit_on_their_maps(cells)
    assert len({round(c["cell"]["x"]) for c in cells}) == 1, cells
    tops = [c["cell"]["y"] for c in cells]
    assert tops == sorted(tops) and len(set(tops)) == 12
    assert all(c["cell"]["right"] <= 390 and c["cell"]["right"] - c["cell"]["x"] > 300
               for c in cells), cells
    headings = phone.locator("[data-testid='stMarkdownContainer'] h4").all()
    assert [h.inner_text() for h in headings] == ["Vanilla gradient", "SmoothGrad",
                                                  "Integrated Gradients", "Grad-CAM"]
    assert all(h.evaluate("e => e.scrollWidth <= e.clientWidth") for h in headings)
    screenshot(phone, "compare-phone")


def pipeline_charts(page):
    """The charts of the pipeline (their panel titles are numbered steps)."""
    return page.locator("[data-testid='stPlotlyChart']").filter(
        has=page.locator(".infolayer g.annotation", has_text="1 · input").or_(
            page.locator(".infolayer g.annotation", has_text="6 · overlay")))


def pipeline_titles(page) -> list[list[dict]]:
    """The panel titles of each pipeline figure: text and box."""
    return pipeline_charts(page).evaluate_all("""figures => figures.map(figure =>
        [...figure.querySelectorAll('.infolayer g.annotation')].map(a => {
            const r = a.getBoundingClientRect();
            return {text: a.textContent, x: r.x, y: r.y, right: r.right, bottom: r.bottom};
        }))""")


def open_lesson(page, server: str) -> None:
    page.goto(server + "/how_it_works?sample=chelsea")
    page.get_by_role("heading", name="How it works").first.wait_for(timeout=120_000)
    page.get_by_text("6 · overlay").first.wait_for(timeout=240_000)
    page.get_by_text("Actual ÷ predicted").first.wait_for(timeout=240_000)  # the Taylor test
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .hm image').length"
                           " >= 5", timeout=120_000)
    assert_no_exception(page)


def toolbar_display(page) -> list[str]:
    return page.eval_on_selector_all(
        "[data-testid='stPlotlyChart'] .modebar-container",
        "bars => bars.map(b => getComputedStyle(b).display)")


def test_how_it_works_lays_out_its_panels_for_the_screen(server, phone, browser):
    open_lesson(phone, server)  # 390 x 844
    figures = pipeline_titles(phone)
    assert sum(len(titles) for titles in figures) == 8
    for titles in figures:
        for i, a in enumerate(titles):
            assert a["x"] >= 0 and a["right"] <= 390, a
            for b in titles[i + 1:]:  # no title runs into another
                apart = (a["right"] <= b["x"] or b["right"] <= a["x"]
                         or a["bottom"] <= b["y"] or b["bottom"] <= a["y"])
                assert apart, (a, b)
    pipeline_charts(phone).first.tap()
    display = toolbar_display(phone)
    assert display and set(display) == {"none"}, display  # no toolbar over the titles
    boxes = pipeline_charts(phone).evaluate_all(f"es => es.map({BOX})")
    assert len(figures) == 2 and boxes[1]["y"] >= boxes[0]["bottom"]  # one under the other
    for titles in figures:  # two panels a row
        assert len(titles) == 4 and len({round(t["y"]) for t in titles}) == 2, titles
    screenshot(phone, "how-it-works-phone")

    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        desktop = context.new_page()
        open_lesson(desktop, server)
        boxes = pipeline_charts(desktop).evaluate_all(f"es => es.map({BOX})")
        assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2  # side by side: four panels a row
        pipeline_charts(desktop).first.hover()
        assert "none" not in toolbar_display(desktop)  # the toolbar stays on a desktop
        screenshot(desktop, "how-it-works-1280")
    finally:
        context.close()
