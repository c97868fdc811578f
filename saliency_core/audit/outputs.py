"""What an audit writes for each image, and its summary table.

For an image ``STEM``: ``STEM.png`` (the overlay, at the resolution of the
region the model saw), ``STEM.npy`` (the raw attribution at the model's input
resolution, float32, as Explore's download) and ``STEM.json`` (the provenance).
``summary.csv`` has one row per image, failures included with their reason.
The same bytes go to a folder (command line) or into a ``.zip`` (Audit page).

``summary.csv`` holds text from outside (file names, class names from a labels
file), so :class:`SummaryWriter`, the one CSV writer of the project, follows the
OWASP advice on CSV injection: a cell that begins with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return gets a leading ``'`` and every cell is quoted, so a
spreadsheet shows the text instead of running it as a formula. Plain numbers the
project writes (a negative score such as ``-3.25``) stay numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from saliency_core.audit.batch import AuditSettings, ImageFailure, ImageResult
from saliency_core.audit.provenance import make_provenance, npy_bytes
from saliency_core.methods import Target
from saliency_core.plotting import blend_overlay, encode_png
from saliency_core.tf_adapter import KerasClassifier

SUMMARY_FIELDS = ("file", "stem", "status", "reason", "class_index", "class_name",
                  "probability", "top1_index", "top1_name", "top1_probability", "border_share",
                  "score", "seconds", "image_sha256")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""First characters that make a spreadsheet read a cell as a formula (OWASP's list, and
the full-width forms some spreadsheets also accept)."""
_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class ModelIdentity:
    """How a provenance record names the model.

    Attributes:
        key: a registered key, ``"file"`` for a ``.keras`` file, or an own model's key.
        file: the ``.keras`` file's name, if any.
        weights_sha256: SHA-256 of the weights or ``.keras`` file.
        preprocessing: the preprocessing key.
    """

    key: str
    file: str | None
    weights_sha256: str | None
    preprocessing: str


class StemNamer:
    """Safe, unique output stems: ``cat.png`` -> ``cat``, a second ``cat.jpg`` -> ``cat_2``."""

    def __init__(self):
        self._taken: set[str] = {"summary"}

    def __call__(self, name: str) -> str:
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        base = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
        base = _UNSAFE.sub("_", base).strip("_")[:80] or "image"
        stem, n = base, 1
        while stem.lower() in self._taken:
            n += 1
            stem = f"{base}_{n}"
        self._taken.add(stem.lower())
        return stem


def overlay_png(result: ImageResult, settings: AuditSettings) -> bytes:
    """The overlay PNG at the resolution of the region the model saw ``(H', W')``
    (encoded for speed: see :func:`saliency_core.plotting.encode_png`)."""
    signed = settings.reduction == "signed"
    return encode_png(blend_overlay(result.view, result.saliency, settings.colormap,
                                    settings.opacity, signed, settings.fade), fast=True)


def result_provenance(result: ImageResult, classifier: KerasClassifier,
                      settings: AuditSettings, model: ModelIdentity,
                      npy: bytes | None = None) -> dict:
    """The provenance record of one audit result (``npy``: its ``.npy`` bytes, if made)."""
    return make_provenance(
        model_key=model.key, model_file=model.file, weights_sha256=model.weights_sha256,
        preprocessing=model.preprocessing, classifier=classifier, image_name=result.name,
        image_sha256=result.image.digest, image_size=result.image.original_size,
        fit=settings.fit, probabilities=result.probabilities,
        target=Target(result.class_index, score=settings.score), method=settings.method,
        params=settings.param_dict, values=result.values, seconds=result.seconds,
        reduction=settings.reduction, clip_percentile=settings.clip_percentile,
        class_choice="top1" if settings.class_index is None else "fixed",
        batch_rows=result.batch_rows, info=result.info,
        decoded_size=result.image.decoded_size,
        fitted_size=(result.image.pixels.shape[1], result.image.pixels.shape[0]),
        saliency=result.saliency, npy=npy)


def result_files(result: ImageResult, stem: str, classifier: KerasClassifier,
                 settings: AuditSettings, model: ModelIdentity, engine: dict | None = None
                 ) -> tuple[dict, dict[str, bytes]]:
    """``(provenance, {file name: bytes})`` of one result: ``STEM.png``, ``.npy``, ``.json``.

    ``engine``, if given, is recorded as the provenance's ``engine`` (what ran
    the command line's batches, e.g. ``{"name": "ray", "version": "2.60.0"}``).
    """
    npy = npy_bytes(result.values)
    record = result_provenance(result, classifier, settings, model, npy)
    record["outputs"] = {"png": f"{stem}.png", "npy": f"{stem}.npy", "json": f"{stem}.json"}
    if engine is not None:
        record["engine"] = dict(engine)
    return record, {
        f"{stem}.png": overlay_png(result, settings),
        f"{stem}.npy": npy,
        f"{stem}.json": (json.dumps(record, indent=2, allow_nan=False,
                                    default=_json_default) + "\n").encode(),
    }


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _number(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.6g}"


def summary_row(item: ImageResult | ImageFailure, stem: str = "") -> dict[str, str]:
    """One ``summary.csv`` row (all strings)."""
    if isinstance(item, ImageFailure):
        return {"file": item.name, "stem": "", "status": "skipped", "reason": item.reason,
                **{k: "" for k in SUMMARY_FIELDS[4:]}}
    top = item.predictions[0]
    return {"file": item.name, "stem": stem, "status": "ok", "reason": "",
            "class_index": str(item.class_index),
            "class_name": item.class_name,
            "probability": _number(item.probability), "top1_index": str(top.index),
            "top1_name": top.name, "top1_probability": _number(top.probability),
            "border_share": _number(item.border_share), "score": _number(item.score),
            "seconds": f"{item.seconds:.4f}", "image_sha256": item.image.digest}


def neutralise_cell(text: str) -> str:
    """``text`` made inert for a spreadsheet: ``'`` before a formula's first character.

    A plain number (``-3.25``, ``1e-05``) is left as it is: it is read as a number, not
    run, and the score column must stay numeric.
    """
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class SummaryWriter:
    """Writes ``summary.csv`` row by row to a text stream (nothing is kept in memory).

    Every cell is neutralised (:func:`neutralise_cell`) and quoted.
    """

    def __init__(self, stream: io.TextIOBase):
        self._writer = csv.DictWriter(stream, fieldnames=SUMMARY_FIELDS, lineterminator="\n",
                                      quoting=csv.QUOTE_ALL)
        self._stream = stream
        self._writer.writeheader()

    def write(self, row: dict[str, str]) -> None:
        """Append one row, neutralised, and flush it."""
        self._writer.writerow({key: neutralise_cell(str(value)) for key, value in row.items()})
        self._stream.flush()


def summary_csv(rows: list[dict[str, str]]) -> bytes:
    """A whole ``summary.csv`` from its rows, as UTF-8 bytes."""
    stream = io.StringIO()
    writer = SummaryWriter(stream)
    for row in rows:
        writer.write(row)
    return stream.getvalue().encode("utf-8")


FileSink = Callable[[str, bytes], None]
"""Where output files go: ``sink(file name, bytes)``."""
