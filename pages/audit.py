"""Audit: many images through one model and method, as a sortable gallery with exports."""

import math

import streamlit as st

from pages.lib import (
    audit_gallery,
    image_choice,
    jobs,
    layout,
    method_controls,
    page,
    settings,
)
from saliency_core.audit.batch import AuditSettings
from saliency_core.audit.border import BORDER_BAND, uniform_border_share
from saliency_core.audit.uploads import UploadLimits
from saliency_core.imaging import FIT_MODES
from saliency_core.labels import shorten_label
from saliency_core.methods import METHODS
from saliency_core.safety.limits import format_bytes

COLUMNS = 4
CLASS_MODES = {"top1": "Each image's top-1 class", "fixed": "One class for all images"}
SORTS = {
    "order": "Upload order",
    "border": "Border share, highest first",
    "confidence_low": "Confidence, lowest first",
    "confidence_high": "Confidence, highest first",
    "class": "Predicted class",
}


def _sorted(records, how: str):
    if how == "border":
        return sorted(records, key=lambda r: -r.border_share if not math.isnan(
            r.border_share) else math.inf)
    if how == "confidence_low":
        return sorted(records, key=lambda r: r.probability)
    if how == "confidence_high":
        return sorted(records, key=lambda r: -r.probability)
    if how == "class":
        return sorted(records, key=lambda r: (r.top1_name, -r.probability))
    return list(records)


page.start_page("Audit", "Run many images through one model and method, then scan the maps "
                "for shortcuts: a model that looks at the background, a watermark or the "
                "frame.", notices=False)
model = page.open_model()
model_key, classifier, token, names = model.key, model.classifier, model.token, model.class_names

controls, gallery = st.columns([1, 3], gap="large")
with controls:
    st.subheader("1 · Images")
    upload_limits = UploadLimits.from_limits()  # the config's [limits], as in force now
    uploaded = st.file_uploader(
        "Images, or .zip files of them", accept_multiple_files=True, key="audit_upload",
        # The dropzone names this limit; a .zip never needs more than all images together.
        max_upload_size=max(1, math.ceil(upload_limits.max_total_bytes / 2**20)),
        help=f"JPEG, PNG, WebP, BMP, GIF or TIFF, each up to "
             f"{format_bytes(upload_limits.max_file_bytes)}; at most "
             f"{upload_limits.max_files} images and "
             f"{format_bytes(upload_limits.max_total_bytes)} in all. Folders inside a .zip "
             "are fine; other files are skipped and listed.")
    files, found = audit_gallery.collect_files(uploaded, upload_limits)
    for message in found.refused:
        st.error(layout.escape_markdown(message), icon=":material/error:")

    st.subheader("2 · Class")
    mode = settings.bind("audit_class_mode", st.radio, options=list(CLASS_MODES),
                         default="top1", label="Class to explain",
                         format_func=CLASS_MODES.get)
    fixed = None
    if mode == "fixed":
        fixed = settings.bind("audit_class", st.selectbox, options=list(range(len(names))),
                              default=0, label="Class",
                              format_func=lambda i: f"{shorten_label(names[i])} (#{i})")
    fit = settings.bind("fit", st.radio, options=list(FIT_MODES), label="What the model sees",
                        format_func=image_choice.FIT_LABELS.get, horizontal=True,
                        help=image_choice.fit_help(classifier.input_size))

    st.subheader("3 · Method")
    method = settings.bind("method", st.selectbox, options=list(METHODS), label="Method",
                           format_func=lambda k: METHODS[k].label)
    st.caption(METHODS[method].description)
    params = method_controls.render_method_params(method, classifier)

audit = AuditSettings(method=method, params=tuple(sorted(params.items())), class_index=fixed,
                      fit=fit, batch_size=16)

with gallery:
    if not files:
        st.info("Upload images (several at once) or a .zip of them to begin.")
        if found.skipped:
            with st.expander(f"Skipped files ({len(found.skipped)})"):
                st.markdown("\n".join(f"- {layout.escape_markdown(n)}: "
                                      f"{layout.escape_markdown(r)}" for n, r in found.skipped))
        st.stop()
    records = audit_gallery.run_audit(files, classifier, model_key, token, audit)
    good = [r for r in records if not r.reason]
    skipped = audit_gallery.skipped_files(found, records)
    st.markdown(f"**{len(good)} images explained** with {METHODS[method].label}"
                + (f" · {len(skipped)} skipped" if skipped else ""))
    if skipped:
        with st.expander(f"Skipped files ({len(skipped)})"):
            st.markdown("\n".join(f"- {layout.escape_markdown(n)}: {layout.escape_markdown(r)}"
                                  for n, r in skipped))

    col_sort, col_conf, col_border, col_class = st.columns([3, 2, 2, 3])
    with col_sort:
        how = settings.bind("audit_sort", st.selectbox, options=list(SORTS), default="order",
                            label="Sort by", format_func=SORTS.get)
    with col_conf:
        min_conf = st.slider("Confidence at least", 0.0, 1.0, 0.0, 0.05, key="audit_min_conf")
    uniform = uniform_border_share(classifier.input_size)
    with col_border:
        min_border = st.slider("Border share at least", 0.0, 1.0, 0.0, 0.05,
                               key="audit_min_border",
                               help=f"Share of the map's mass in the outer {BORDER_BAND:.0%} "
                                    f"band. A uniform map has {uniform:.3f} at this model's "
                                    "input size; much more can mean the model looks at the "
                                    "frame.")
    with col_class:
        present = sorted({r.top1_name for r in good})
        chosen_classes = st.multiselect("Predicted class", present, key="audit_classes",
                                        format_func=shorten_label, placeholder="All classes")
    shown = [r for r in _sorted(good, how)
             if r.probability >= min_conf
             and (math.isnan(r.border_share) or r.border_share >= min_border)
             and (not chosen_classes or r.top1_name in chosen_classes)]
    st.caption(f"Showing {len(shown)} of {len(good)}. The border share is the share of the "
               f"map in the outer {BORDER_BAND:.0%} band: {uniform:.4f} for a uniform map at "
               f"{classifier.input_size[0]}×{classifier.input_size[1]} px (the band is whole "
               "pixels wide). A high value is a hint to look, not proof of a shortcut.")

    data_by_digest = {digest: (name, data) for name, data, digest in files}
    for start in range(0, len(shown), COLUMNS):
        for place, (column, record) in enumerate(zip(
                st.columns(COLUMNS), shown[start:start + COLUMNS], strict=False), start=start):
            with column, st.container(border=True, key=f"card_{place}"):
                st.image(record.thumbnail, width="stretch")
                st.markdown(f"**{layout.escape_markdown(shorten_label(record.class_name))}** "
                            f"· {100 * record.probability:.1f}%  \n"
                            f"Border share {record.border_share:.2f}  \n"
                            f"{layout.breakable_name(record.name)}")
                if st.button("Open in Explore", key=f"open_{place}_{record.digest[:12]}",
                             icon=":material/visibility:"):
                    name, data = data_by_digest[record.digest]
                    audit_gallery.open_in_explore(name, data, record.digest,
                                                  record.class_index, audit)

    st.subheader("Export")
    col_csv, col_zip = st.columns(2)
    col_csv.download_button("Summary (CSV)", data=audit_gallery.summary_bytes(records, found),
                            file_name="summary.csv", mime="text/csv",
                            icon=":material/table:", key="audit_csv", on_click="ignore")
    identity = audit_gallery.model_identity(model_key)
    session = jobs.session_id()  # the download runs outside this script
    col_zip.download_button(
        "All files (ZIP)",  # the longer name was cut in a half column at 1280 px
        data=lambda: audit_gallery.export_zip(files, found, classifier, audit, identity,
                                              session),
        file_name="saliency-audit.zip", mime="application/zip", icon=":material/folder_zip:",
        key="audit_zip", on_click="ignore",
        help="Overlays, raw maps and provenance: the files the command line writes, "
             "STEM.png, STEM.npy and STEM.json per image, and summary.csv. The maps are "
             "computed again when you download.")
