"""End-to-end: the Audit page under ``streamlit run`` in headless Chromium.

The server and browser fixtures come from ``tests/browser_support.py``: the real app on a
free port with ``SALIENCY_STUDIO_OFFLINE=1``, Debian's ``chromium`` through
Playwright's Python package.
"""

from __future__ import annotations

import pytest
from browser_support import screenshot

from saliency_core.samples import SAMPLES, read_sample

pytestmark = [pytest.mark.slow, pytest.mark.browser]
OVERLAY = "[data-testid='stPlotlyChart'] .js-plotly-plot g.hm image"
CARD = "[class*='st-key-card_']"





def card_names(page) -> list[str]:
    """Each card's file name (the line after its border share)."""
    names = []
    for text in page.locator(CARD).all_inner_texts():
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        at = next(i for i, line in enumerate(lines) if line.startswith("Border share"))
        names.append(lines[at + 1])
    return names


def card_shares(page) -> list[float]:
    return [float(text.split("Border share ")[1].split()[0])
            for text in page.locator(CARD).all_inner_texts()]


def test_five_photos_give_five_cards_sorting_reorders_and_a_card_opens_explore(
        server, page, tmp_path):
    photos = []
    for key in SAMPLES:  # four bundled photos and a mirrored cat
        path = tmp_path / SAMPLES[key][1]
        path.write_bytes(read_sample(key))
        photos.append(path)
    from PIL import Image, ImageOps

    mirrored = tmp_path / "mirrored.png"
    ImageOps.mirror(Image.open(photos[0])).crop((0, 0, 300, 300)).save(mirrored)
    photos.append(mirrored)

    page.goto(server)  # the router first, as a visitor would (see layout.page_setup)
    page.wait_for_selector(OVERLAY, timeout=180_000)
    page.get_by_role("link", name="Audit").first.click()
    page.get_by_role("heading", name="Audit").first.wait_for(timeout=120_000)
    uploader = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    uploader.wait_for(state="attached", timeout=180_000)  # drawn once the model is loaded
    uploader.set_input_files([str(p) for p in photos])
    page.wait_for_function(f"document.querySelectorAll(\"{CARD}\").length === 5",
                           timeout=180_000)
    assert page.locator("[data-testid='stException']").count() == 0
    before, shares = card_names(page), card_shares(page)
    assert before == [p.name for p in photos]
    screenshot(page, "audit-gallery")

    page.get_by_role("combobox", name="Sort by").click()
    page.get_by_role("option", name="Border share, highest first").first.click()
    expected = [name for _, name in sorted(zip(shares, before, strict=True),
                                           key=lambda pair: -pair[0])]
    page.wait_for_function(
        "([sel, first]) => { const c = document.querySelectorAll(sel);"
        " return c.length === 5 && c[0].innerText.includes(first); }",
        arg=[CARD, expected[0]], timeout=60_000)
    assert card_names(page) == expected and expected != before
    assert card_shares(page) == sorted(shares, reverse=True)

    first = page.locator(CARD).first
    label = first.inner_text().strip().splitlines()[0].split(" · ")[0]
    first.get_by_role("button", name="Open in Explore").click()
    page.get_by_role("heading", name="Explore").first.wait_for(timeout=60_000)
    page.wait_for_selector(OVERLAY, timeout=120_000)
    assert page.get_by_text(f"Using your earlier file, {expected[0]}").count() == 1
    assert label in page.locator("[data-testid='stMarkdown']").filter(
        has_text="Vanilla gradient").first.inner_text()
    assert page.locator("[data-testid='stException']").count() == 0
    screenshot(page, "audit-opened-in-explore")
