"""The Audit page's parts: many uploads, cached per-image results, gallery cards, exports.

Results are cached per image and settings in a bounded store shared by sessions
(only small records: a thumbnail, the class, the confidence, the border share),
so memory stays bounded for hundreds of images. The ZIP export computes the maps
again with the same core as the command line when it is downloaded, instead of
keeping every raw map in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np
import streamlit as st

from pages.lib import caching, image_choice, jobs, own_models, settings
from saliency_core.audit.batch import (
    AuditSettings,
    ImageFailure,
    ImageResult,
    iter_audit,
)
from saliency_core.audit.outputs import (
    ModelIdentity,
    StemNamer,
    result_files,
    summary_csv,
    summary_row,
)
from saliency_core.audit.provenance import make_provenance, registered_weights_sha256
from saliency_core.audit.uploads import CollectedFiles, UploadLimits, collect_uploads
from saliency_core.imaging import LoadedImage
from saliency_core.methods import METHODS, Target, Work
from saliency_core.models.registry import MODELS
from saliency_core.plotting import blend_overlay, encode_png
from saliency_core.safety.jobs import Estimate
from saliency_core.safety.limits import load_limits
from saliency_core.tf_adapter import KerasClassifier

THUMB_SIDE = 224
UploadedFile = tuple[str, bytes, str]  # (name, bytes, SHA-256)


@dataclass(frozen=True)
class CardRecord:
    """What the gallery keeps of one image (small: no raw map).

    Attributes:
        name: the file name (zip members as ``archive.zip/folder/file.png``).
        digest: SHA-256 of the file.
        thumbnail: PNG bytes of the overlay, longer side at most ``THUMB_SIDE``.
        class_index, class_name, probability: the explained class and its probability.
        top1_name: the predicted class.
        border_share: share of the map's mass in the outer 10% band.
        row: the ``summary.csv`` row (without its stem).
        reason: why the image was skipped (then the other fields are empty).
    """

    name: str
    digest: str
    thumbnail: bytes = b""
    class_index: int = -1
    class_name: str = ""
    probability: float = float("nan")
    top1_name: str = ""
    border_share: float = float("nan")
    row: tuple = ()
    reason: str = ""


@st.cache_resource
def record_store() -> caching.BoundedStore:
    """Gallery records of all sessions, by (image, model, weights, settings); bounded."""
    return caching.BoundedStore(max_entries=2000)


def collect_files(uploaded, limits: UploadLimits | None = None
                  ) -> tuple[list[UploadedFile], CollectedFiles]:
    """The images of the current uploads (zips opened, within ``limits``, default the
    config's ``[limits]``), kept in session state.

    The files are collected and hashed once per set of uploads; coming back from
    another page (the uploader is empty then) reuses them.
    """
    ids = tuple(f.file_id for f in uploaded or [])
    kept = st.session_state.get("audit_files")
    if uploaded:
        if kept is None or kept[0] != ids:
            found = collect_uploads([(f.name, f.getvalue()) for f in uploaded], limits)
            files = [(name, data, hashlib.sha256(data).hexdigest())
                     for name, data in found.images]
            found.images = []  # the bytes live in ``files`` only
            kept = (ids, files, found)
            st.session_state["audit_files"] = kept
    elif "audit_upload" in st.session_state and kept is not None and kept[0]:
        st.session_state.pop("audit_files", None)  # the user removed the files
        kept = None
    if kept is None:
        return [], CollectedFiles()
    return kept[1], kept[2]


def model_identity(model_key: str) -> ModelIdentity:
    """How provenance names the current model (own models by their file name and hash)."""
    if model_key.startswith(settings.CUSTOM_PREFIX):
        entry = own_models.custom_models().get(model_key, {})
        digest = (entry.get("digests") or (None,))[0]
        return ModelIdentity(model_key, entry.get("name"), digest,
                             entry.get("preprocessing", "raw"))
    scope = None if model_key == "efficientnet_lite0" else own_models.weights_scope()
    return ModelIdentity(model_key, None, registered_weights_sha256(model_key, scope),
                         MODELS[model_key].preprocessing)


def _thumbnail(result: ImageResult, audit: AuditSettings) -> bytes:
    overlay = blend_overlay(result.view, result.saliency, audit.colormap, audit.opacity,
                            audit.reduction == "signed", audit.fade)
    height, width = overlay.shape[:2]
    scale = min(1.0, THUMB_SIDE / max(height, width))
    if scale < 1.0:
        from PIL import Image

        small = Image.fromarray(overlay).resize(
            (max(1, round(width * scale)), max(1, round(height * scale))),
            Image.Resampling.LANCZOS)
        overlay = np.asarray(small)
    return encode_png(overlay)


def _record(item: ImageResult | ImageFailure, digest: str, audit: AuditSettings
            ) -> CardRecord:
    row = tuple(summary_row(item).items())
    if isinstance(item, ImageFailure):
        return CardRecord(item.name, digest, reason=item.reason, row=row)
    return CardRecord(item.name, digest, _thumbnail(item, audit), item.class_index,
                      item.class_name, item.probability, item.predictions[0].name,
                      item.border_share, row)


def _cache_key(digest: str, model_key: str, token: str, audit: AuditSettings) -> tuple:
    return (digest, model_key, token, audit)


def _per_image_estimate(classifier: KerasClassifier, audit: AuditSettings) -> Estimate:
    """One image's cost (its map and the forward pass for its classes), within budget."""
    return jobs.check_method(classifier, audit.method, audit.param_dict, extra=Work(forward=1),
                             label=f"{METHODS[audit.method].label} for one image")


def _groups(positions: list[int], classifier: KerasClassifier, audit: AuditSettings
            ) -> tuple[Estimate, list[list[int]]]:
    """Split the images into jobs of at most ``audit.batch_size`` images that each fit the
    time budget, so other visitors' work gets its turn between them."""
    one = _per_image_estimate(classifier, audit)
    size = max(1, min(audit.batch_size, int(load_limits().max_job_seconds
                                            // max(one.seconds, 1e-3))))
    return one, [positions[i:i + size] for i in range(0, len(positions), size)]


def _group_estimate(one: Estimate, count: int) -> Estimate:
    return Estimate(seconds=one.seconds * count, peak_bytes=one.peak_bytes)


def run_audit(files: list[UploadedFile], classifier: KerasClassifier, model_key: str,
              token: str, audit: AuditSettings) -> list[CardRecord]:
    """Gallery records for ``files``, computing only those not cached, with a progress bar.

    The missing images go through the admission queue in small jobs, each checked
    against the work budget; a visitor who leaves cancels the rest.
    """
    store = record_store()
    records: dict[int, CardRecord] = {}
    missing = []
    for position, (name, _data, digest) in enumerate(files):
        cached = store.get(_cache_key(digest, model_key, token, audit))
        if cached is not None:  # the same photo may come under another name
            records[position] = dataclasses.replace(
                cached, name=name,
                row=tuple((k, name if k == "file" else v) for k, v in cached.row))
        else:
            missing.append(position)
    if missing:
        one, groups = _groups(missing, classifier, audit)
        bar = st.progress(0.0, text=f"Explaining {len(missing)} images…")
        done = 0
        try:
            for group in groups:
                def compute(progress, group=group) -> list[CardRecord]:
                    sources = [(files[p][0], (lambda d=files[p][1]: d)) for p in group]
                    run = dataclasses.replace(audit, batch_size=len(group))
                    made = []
                    for position, item in zip(group, iter_audit(classifier, sources, run),
                                              strict=True):
                        record = _record(item, files[position][2], audit)
                        store.put(_cache_key(files[position][2], model_key, token, audit),
                                  record)
                        made.append(record)
                    return made

                key = ("audit", model_key, token, audit, tuple(files[p][2] for p in group))
                made = jobs.run_job(key, f"{len(group)} of the images",
                                    _group_estimate(one, len(group)), compute)
                for position, record in zip(group, made, strict=True):
                    records[position] = record
                done += len(group)
                bar.progress(done / len(missing),
                             text=f"Explaining images… {done} of {len(missing)}")
        finally:
            bar.empty()
    return [records[p] for p in range(len(files))]


def skipped_files(found: CollectedFiles, records: list[CardRecord]) -> list[tuple[str, str]]:
    """Every file that gave no map, with its reason: those left out while the uploads were
    unpacked (not an image, over a limit), then the images that could not be read.

    The page's count and list, ``summary.csv`` and the ZIP's ``summary.csv`` all come from
    this one list, so they agree.
    """
    return list(found.skipped) + [(r.name, r.reason) for r in records if r.reason]


def _unpacking_rows(found: CollectedFiles) -> list[dict[str, str]]:
    return [summary_row(ImageFailure(name, reason)) for name, reason in found.skipped]


def summary_bytes(records: list[CardRecord], found: CollectedFiles) -> bytes:
    """``summary.csv`` of the gallery, stems as the ZIP export names the files: a row per
    image in upload order (unreadable ones with their reason), then a row per file skipped
    while unpacking the uploads."""
    stems = StemNamer()
    rows = []
    for record in records:
        row = dict(record.row)
        if not record.reason:
            row["stem"] = stems(record.name)
        rows.append(row)
    return summary_csv(rows + _unpacking_rows(found))


def export_zip(files: list[UploadedFile], found: CollectedFiles, classifier: KerasClassifier,
               audit: AuditSettings, identity: ModelIdentity, session: str) -> bytes:
    """The ZIP the command line would write: ``STEM.png/.npy/.json`` and ``summary.csv``
    (with the same rows as :func:`summary_bytes`, skipped files included).

    It runs when the download is clicked, outside the page's script, so its jobs
    are waited for without a progress bar; each is within the work budget.
    """
    buffer = io.BytesIO()
    stems = StemNamer()
    rows = []
    one, groups = _groups(list(range(len(files))), classifier, audit)
    queue = jobs.queue()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for group in groups:
            def compute(progress, group=group) -> list:
                sources = [(files[p][0], (lambda d=files[p][1]: d)) for p in group]
                run = dataclasses.replace(audit, batch_size=len(group))
                out = []  # the groups run one after the other, so stems stay in order
                for item in iter_audit(classifier, sources, run):
                    if isinstance(item, ImageFailure):
                        out.append((item, None, None))
                    else:
                        stem = stems(item.name)
                        out.append((item, stem, result_files(item, stem, classifier, audit,
                                                             identity)[1]))
                return out

            key = ("export", session, identity, audit, tuple(files[p][2] for p in group))
            job = queue.submit(key, session, "the ZIP export",
                               _group_estimate(one, len(group)), compute)
            try:
                job.wait()
            finally:
                queue.leave(job)
            for item, stem, outputs in job.outcome():
                if outputs is None:
                    rows.append(summary_row(item))
                    continue
                for file_name, data in outputs.items():
                    archive.writestr(file_name, data)
                rows.append(summary_row(item, stem))
        archive.writestr("summary.csv", summary_csv(rows + _unpacking_rows(found)))
    return buffer.getvalue()


def open_in_explore(name: str, data: bytes, digest: str, class_index: int,
                    audit: AuditSettings) -> None:
    """Show this image on Explore with the same model, class, method, parameters and fit."""
    image_choice.keep_as_upload(name, data, digest)
    settings.put("method", audit.method)
    for param, value in audit.params:
        settings.put(settings.param_setting_name(audit.method, param), value)
    settings.put("fit", audit.fit)
    settings.put("score", audit.score)
    settings.put("class", class_index)
    settings.put("contrast", None)
    st.session_state["class_context"] = None  # keep this class for the new image
    st.switch_page("explore.py")


def provenance_json(model_key: str, classifier: KerasClassifier, image: LoadedImage,
                    image_name: str, fit: str, model_input: np.ndarray, target: Target,
                    method: str, params: dict, explanation, reduction: str,
                    clip_percentile: float | None) -> bytes:
    """Explore's "Download provenance (JSON)": the same record as the command line's."""
    identity = model_identity(model_key)
    probabilities = classifier.probabilities(np.asarray(model_input, np.float32)[None])[0]
    record = make_provenance(
        model_key=identity.key, model_file=identity.file,
        weights_sha256=identity.weights_sha256, preprocessing=identity.preprocessing,
        classifier=classifier, image_name=image_name, image_sha256=image.digest,
        image_size=image.original_size, fit=fit, probabilities=probabilities, target=target,
        method=method, params=params, values=explanation.attribution.values,
        seconds=explanation.seconds, reduction=reduction, clip_percentile=clip_percentile,
        info=explanation.attribution.info, decoded_size=image.decoded_size,
        fitted_size=(image.pixels.shape[1], image.pixels.shape[0]))
    return (json.dumps(record, indent=2) + "\n").encode()
