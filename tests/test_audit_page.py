"""The Audit page in AppTest: uploads, a zip with a nested folder, gallery, Explore hand-off."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from apptest_support import ROUTER
from PIL import Image
from streamlit.testing.v1 import AppTest

from saliency_core.samples import read_sample

pytestmark = pytest.mark.slow
TIMEOUT = 240



def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def audit_app() -> AppTest:
    at = AppTest.from_file(str(ROUTER), default_timeout=TIMEOUT).run()
    at.switch_page("audit.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def cards(at) -> list[str]:
    """The cards' texts, without Markdown escapes and the zero-width spaces that let file
    names wrap after a separator."""
    return [m.value.replace("\\", "").replace("\u200b", "") for m in at.markdown
            if "Border share" in m.value]


def test_three_uploads_make_three_cards_sorted_and_filtered():
    at = audit_app()
    at.file_uploader(key="audit_upload").set_value([
        ("cat.png", read_sample("chelsea"), "image/png"),
        ("cup.png", read_sample("coffee"), "image/png"),
        ("rocket.jpg", read_sample("rocket"), "image/jpeg")]).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = cards(at)
    assert len(shown) == 3 and "cat.png" in shown[0] and "rocket.jpg" in shown[2]
    assert any("3 images explained" in m.value for m in at.markdown)
    shares = [float(s.split("Border share ")[1].split()[0]) for s in shown]
    at.selectbox(key="w_audit_sort").set_value("border").run()
    again = [float(s.split("Border share ")[1].split()[0]) for s in cards(at)]
    assert again == sorted(shares, reverse=True)
    at.slider(key="audit_min_conf").set_value(0.9).run()
    assert [("cup.png" in s) for s in cards(at)] == [True]  # espresso at 94%
    assert len(at.get("download_button")) == 2  # CSV and ZIP


def test_zip_with_a_nested_folder_and_a_non_image_then_open_in_explore():
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("set/a.png", read_sample("chelsea"))
        archive.writestr("set/deeper/b.png", png_bytes(
            rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)))
        archive.writestr("set/notes.txt", b"not an image")
    at = audit_app()
    at.radio(key="w_audit_class_mode").set_value("fixed").run()
    at.selectbox(key="w_audit_class").set_value(281)
    at.selectbox(key="w_method").set_value("gradient_x_input").run()
    at.file_uploader(key="audit_upload").set_value([
        ("photos.zip", buffer.getvalue(), "application/zip"),
        ("broken.png", b"\x89PNG broken", "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = cards(at)
    assert len(shown) == 2
    assert "photos.zip/set/deeper/b.png" in shown[1].replace("\\", "")
    skipped = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "photos.zip/set/notes.txt: not an image file" in skipped
    assert "broken.png: " in skipped and "2 skipped" in skipped
    assert "tabby" in shown[0]  # the fixed class, not the top-1 (Egyptian cat)
    # the cat's card opens Explore on that photo with the same class and method
    next(b for b in at.button if b.key.startswith("open_0_")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["last_upload"][0] == "a.png"
    assert at.session_state["prefs"]["source"] == "Upload"
    headline = next(m.value for m in at.markdown if "for **" in m.value)
    assert "Gradient × Input" in headline and "(class 281)" in headline, headline
    assert any("Using your earlier file, a.png" in c.value.replace("\\", "")
               for c in at.caption)


def test_the_pages_count_its_csv_and_its_zip_list_every_skipped_file(monkeypatch):
    """Issue 24 item 6: the page said "2 skipped" but summary.csv listed only the broken
    JPEG, not the zip's notes.txt. The count, the list, the CSV and the ZIP must agree."""
    import csv

    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    from pages.lib import audit_gallery
    from saliency_core.audit.batch import AuditSettings

    downloads: dict[str, bytes] = {}
    keep = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, bytes):
            downloads[filename] = path_or_data
        return keep(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    jpeg = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(jpeg, "JPEG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("trip/cat.png", read_sample("chelsea"))
        archive.writestr("trip/notes.txt", b"not an image")
        archive.writestr("trip/broken.jpg", jpeg.getvalue()[:200])  # cut short
    at = audit_app()
    at.file_uploader(key="audit_upload").set_value([
        ("trip.zip", buffer.getvalue(), "application/zip")]).run()
    assert not at.exception, [e.value for e in at.exception]
    page = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "1 images explained" in page and "2 skipped" in page, page
    listing = next(m.value for m in at.markdown if m.value.startswith("- ")).replace("\\", "")
    listed = [line[2:].split(": ", 1) for line in listing.split("\n")]
    assert sorted(name for name, _ in listed) == ["trip.zip/trip/broken.jpg",
                                                  "trip.zip/trip/notes.txt"]
    assert all(reason for _, reason in listed)

    def skipped_rows(data: bytes) -> dict[str, str]:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
        assert sum(row["status"] == "ok" for row in rows) == 1
        return {row["file"]: row["reason"] for row in rows if row["status"] == "skipped"}

    shown = {name: reason for name, reason in listed}
    assert skipped_rows(downloads["summary.csv"]) == shown
    ids, files, found = at.session_state["audit_files"]
    from saliency_core.models.registry import DEFAULT_MODEL_KEY
    from saliency_core.pipeline import load_classifier

    classifier, _ = load_classifier(DEFAULT_MODEL_KEY)
    exported = zipfile.ZipFile(io.BytesIO(audit_gallery.export_zip(
        files, found, classifier, AuditSettings(batch_size=16),
        audit_gallery.model_identity(DEFAULT_MODEL_KEY), session="test")))
    assert skipped_rows(exported.read("summary.csv")) == shown
    assert sorted(n for n in exported.namelist() if n.endswith(".png")) == ["cat.png"]


def test_the_audit_upload_limits_come_from_the_config_files_limits(monkeypatch, tmp_path):
    """``[limits] max_audit_files`` (and the other ``max_audit_*``) bound the Audit page's
    uploads as every other limit, and the uploader's help says the limits in force."""
    config = tmp_path / "saliency_studio.toml"
    config.write_text("[limits]\nmax_audit_files = 2\nmax_audit_file_bytes = 3000000\n")
    monkeypatch.setenv("SALIENCY_STUDIO_CONFIG", str(config))
    at = audit_app()
    assert "at most 2 images" in at.file_uploader(key="audit_upload").help
    assert "each up to 3 MB" in at.file_uploader(key="audit_upload").help
    at.file_uploader(key="audit_upload").set_value([
        ("cat.png", read_sample("chelsea"), "image/png"),
        ("cup.png", read_sample("coffee"), "image/png"),
        ("rocket.jpg", read_sample("rocket"), "image/jpeg")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(cards(at)) == 2
    listed = " ".join(m.value.replace("\\", "") for m in at.markdown)
    assert "rocket.jpg" in listed and "over the limit of 2 images" in listed
