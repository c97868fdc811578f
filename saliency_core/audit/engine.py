"""The command line's audit: one per-batch function, run in this process or on Ray.

:func:`explain_files` is the unit of work of ``python -m saliency_core explain``:
a batch of image files in; for each file, its output files and its
``summary.csv`` row out. The local engine (:func:`iter_local`) calls it batch
after batch in this process; the Ray engine
(:mod:`saliency_core.audit.ray_engine`) calls the very same function in a pool
of Ray actors that each load the model once (:func:`open_model`). Both hand the
outcomes, in input order, to :class:`OutputFolder`, so they write the same files.

Batches are ``batch_size`` consecutive files of the sorted input (a broken file
leaves its batch one image smaller), so a batch, and with it the floats of a
batched model call, does not depend on the engine or on which worker runs it.

A batch goes through three stages: :func:`prepare_files` (read, decode in the
decoding worker, fit: no model), :func:`~saliency_core.audit.batch.attribute_fitted`
(the model) and :func:`finish_files` (display map, overlay PNG, ``.npy``, JSON: no
model). The local engine runs the first and the last on a small pool of threads,
so the next batch is decoded and the last one encoded while the model computes
this one (Pillow, zlib, NumPy and the decoding worker's pipe all release the GIL).
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from saliency_core.audit.batch import (
    AuditSettings,
    FittedImage,
    ImageFailure,
    attribute_fitted,
    decode_source,
    finish_result,
    fit_images,
)
from saliency_core.audit.destination import write_new_file
from saliency_core.audit.outputs import (
    ModelIdentity,
    StemNamer,
    SummaryWriter,
    result_files,
    summary_row,
)
from saliency_core.audit.progress import Progress
from saliency_core.audit.uploads import read_image_file
from saliency_core.imaging import ImageError
from saliency_core.tf_adapter import KerasClassifier


class EngineError(RuntimeError):
    """An engine cannot go on (e.g. a cluster that is too small); the message is for the user."""


class ModelChoiceError(ValueError):
    """The chosen model cannot be used; the message is for the user."""


@dataclass(frozen=True)
class ModelChoice:
    """The model of an audit, in a form a worker on another machine can open.

    A ``.keras`` file travels as its bytes (with its labels), so workers need
    no access to the file; a registered model is opened from the worker's own
    weights (its package or weights cache).

    Attributes:
        key: a registered model's key, or ``"file"`` for a ``.keras`` file.
        file_name: the ``.keras`` file's name.
        data: the ``.keras`` file's bytes.
        labels: the labels file's bytes (one class name per line), if any.
        preprocessing: the preprocessing key of a ``.keras`` model.
    """

    key: str
    file_name: str | None = None
    data: bytes | None = field(default=None, repr=False)
    labels: bytes | None = field(default=None, repr=False)
    preprocessing: str | None = None


def open_model(choice: ModelChoice) -> tuple[KerasClassifier, ModelIdentity]:
    """Load the chosen model: a registered one, or a ``.keras`` file through the safe path.

    Raises:
        ModelChoiceError: the weights are unavailable or the file is not a usable model.
    """
    from saliency_core.audit.provenance import registered_weights_sha256
    from saliency_core.models.custom import CustomModelError, load_custom_model, make_classifier
    from saliency_core.models.preprocessing import get_preprocessor
    from saliency_core.models.registry import MODELS, WeightsUnavailableError, is_offline_forced
    from saliency_core.pipeline import load_classifier

    if choice.data is None:
        try:
            classifier, _source = load_classifier(choice.key,
                                                  allow_download=not is_offline_forced())
        except WeightsUnavailableError as exc:
            raise ModelChoiceError(" ".join(str(exc).split())) from None
        return classifier, ModelIdentity(choice.key, None, registered_weights_sha256(choice.key),
                                         MODELS[choice.key].preprocessing)
    preprocessing = choice.preprocessing or "raw"
    try:
        custom = load_custom_model(choice.data, choice.labels)
        classifier = make_classifier(custom, get_preprocessor(preprocessing))
    except (CustomModelError, ValueError) as exc:
        raise ModelChoiceError(f"{choice.file_name}: {' '.join(str(exc).split())}") from None
    return classifier, ModelIdentity("file", choice.file_name, custom.digest, preprocessing)


def file_choice(path: str | Path, labels: bytes | None = None,
                preprocessing: str | None = None) -> ModelChoice:
    """A ``.keras`` file as a :class:`ModelChoice` (its bytes read), for :func:`open_model`.

    A file larger than ``Limits.max_model_bytes`` is refused before it is read.

    Raises:
        ModelChoiceError: the file is too large.
        OSError: it cannot be read.
    """
    from saliency_core.safety.limits import format_bytes, load_limits

    path = Path(path)
    limit = load_limits().max_model_bytes
    if path.stat().st_size > limit:
        raise ModelChoiceError(f"{path.name} is larger than the limit of {format_bytes(limit)}")
    return ModelChoice("file", path.name, path.read_bytes(), labels, preprocessing or "raw")


@dataclass(frozen=True)
class AuditFile:
    """One input file and the stem of its outputs.

    Attributes:
        name: the name in ``summary.csv`` (relative to the folder given).
        path: where the file is read from.
        stem: ``STEM`` of ``STEM.png``, ``STEM.npy`` and ``STEM.json``.
    """

    name: str
    path: str
    stem: str


@dataclass(frozen=True)
class FileOutcome:
    """What one file gives: its ``summary.csv`` row and its output files (none if skipped)."""

    row: dict[str, str]
    files: dict[str, bytes]

    @property
    def ok(self) -> bool:
        """Whether the image was explained."""
        return self.row["status"] == "ok"


def plan_files(images: Sequence[tuple[str, Path]]) -> list[AuditFile]:
    """Give every ``(name, path)`` a unique, safe output stem, in input order."""
    stems = StemNamer()
    return [AuditFile(name, str(path), stems(name)) for name, path in images]


def split_batches(files: Sequence[AuditFile], batch_size: int) -> list[list[AuditFile]]:
    """Consecutive batches of ``batch_size`` files (the last may be shorter)."""
    return [list(files[i:i + batch_size]) for i in range(0, len(files), batch_size)]


@dataclass
class PreparedBatch:
    """A batch read, decoded and fitted, in input order.

    Attributes:
        outcomes: one per file: the skipped file's outcome, or ``None`` where the file
            was decoded (its place in :attr:`fitted`).
        fitted: the decoded files, fitted to the model.
        stems: their output stems.
    """

    outcomes: list[FileOutcome | None]
    fitted: list[FittedImage]
    stems: list[str]


def prepare_files(files: Sequence[AuditFile], input_size: tuple[int, int],
                  fit: str) -> PreparedBatch:
    """Read, check, decode and fit one batch of files (no model: safe on any thread).

    Every file goes through the same size limit (:func:`read_image_file`) and the
    same decoding checks as an upload (:func:`saliency_core.imaging.load_image`,
    which decodes in a worker process); a file that fails is skipped with its reason.
    """
    outcomes: list[FileOutcome | None] = []
    decoded, stems = [], []
    for file in files:
        try:
            image = decode_source((file.name, lambda path=file.path: read_image_file(path)))
        except ImageError as exc:
            outcomes.append(FileOutcome(summary_row(ImageFailure(file.name, str(exc))), {}))
            continue
        decoded.append((file.name, image))
        stems.append(file.stem)
        outcomes.append(None)
    return PreparedBatch(outcomes, fit_images(decoded, input_size, fit), stems)


def finish_files(prepared: PreparedBatch, raws: Sequence, classifier: KerasClassifier,
                 model: ModelIdentity, settings: AuditSettings,
                 engine: dict | None = None) -> list[FileOutcome]:
    """Each file's outputs (display map, overlay PNG, ``.npy``, JSON) and summary row, in
    order, from the model's results ``raws`` (no model call: safe on any thread)."""
    results = iter(zip(prepared.fitted, raws, prepared.stems, strict=True))
    done = []
    for outcome in prepared.outcomes:
        if outcome is None:
            fitted, raw, stem = next(results)
            result = finish_result(fitted, raw, classifier.class_names, settings)
            _record, data = result_files(result, stem, classifier, settings, model, engine)
            outcome = FileOutcome(summary_row(result, stem), data)
        done.append(outcome)
    return done


def explain_files(classifier: KerasClassifier, model: ModelIdentity, settings: AuditSettings,
                  files: Sequence[AuditFile], engine: dict | None = None) -> list[FileOutcome]:
    """Read, check, decode, fit and explain one batch of files; their outputs, in order.

    The three stages of a batch one after another (:func:`prepare_files`,
    :func:`~saliency_core.audit.batch.attribute_fitted`, :func:`finish_files`); the
    images that pass are explained together.

    Args:
        classifier: the model.
        model: how provenance names the model.
        settings: method, parameters, class, fit and display settings.
        files: the batch.
        engine: recorded as the provenance's ``engine`` (e.g. ``{"name": "ray"}``).

    Returns:
        One outcome per file: a skipped file's row has its reason and no files.
    """
    prepared = prepare_files(files, classifier.input_size, settings.fit)
    raws = attribute_fitted(classifier, prepared.fitted, settings)
    return finish_files(prepared, raws, classifier, model, settings, engine)


class OutputFolder:
    """Writes outcomes to a folder: each file's outputs, ``summary.csv`` row by row, progress.

    Use as a context manager; :meth:`write` takes outcomes in input order. Every file
    is created new (``O_EXCL``): a file already there is never overwritten, the run
    stops with :class:`EngineError` instead.

    Args:
        out: the output folder (must exist).
        total: the number of files, for the progress bar.
        stream: where progress and skipped files are reported (default stderr).
    """

    def __init__(self, out: Path, total: int, stream: TextIO | None = None):
        self.out = Path(out)
        self.processed = 0
        self.skipped = 0
        self._bar = Progress(total, stream=stream or sys.stderr)
        self._handle = None
        self._summary = None

    def __enter__(self) -> OutputFolder:
        try:
            self._handle = (self.out / "summary.csv").open("x", newline="", encoding="utf-8")
        except FileExistsError:
            raise self._exists("summary.csv") from None
        self._summary = SummaryWriter(self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.close()
        self._bar.close()

    def write(self, outcome: FileOutcome) -> None:
        """Write one file's outputs and its summary row."""
        for file_name, data in outcome.files.items():
            try:
                write_new_file(self.out / file_name, data)
            except FileExistsError:
                raise self._exists(file_name) from None
        if outcome.ok:
            self.processed += 1
        else:
            self.skipped += 1
            self._bar.message(f"skipped {outcome.row['file']}: {outcome.row['reason']}")
        self._summary.write(outcome.row)
        self._bar.advance()

    def _exists(self, name: str) -> EngineError:
        return EngineError(f"{self.out / name} appeared during the run and was not "
                           "overwritten; the run stopped")


PIPELINE_THREADS = 2
"""Threads that decode the next batch and encode the last one while the model runs."""


def iter_local(classifier: KerasClassifier, model: ModelIdentity, settings: AuditSettings,
               files: Sequence[AuditFile], threads: int = PIPELINE_THREADS
               ) -> Iterator[FileOutcome]:
    """The local engine: :func:`explain_files`' three stages, batch after batch, overlapped.

    While the model computes batch ``k`` (in this thread), a pool of ``threads`` threads
    decodes and fits batch ``k + 1`` and encodes the outputs of batch ``k - 1``. At most
    one batch is prepared ahead and two are being finished, so memory stays bounded
    whatever the number of files; outcomes come in input order, as from
    :func:`explain_files` one batch at a time (the same batches, so the same floats).
    """
    engine = {"name": "local"}
    batches = split_batches(files, settings.batch_size)
    if not batches:
        return
    pool = concurrent.futures.ThreadPoolExecutor(max(1, threads),
                                                 thread_name_prefix="saliency-audit")
    finishing: deque[concurrent.futures.Future] = deque()
    try:
        ahead = pool.submit(prepare_files, batches[0], classifier.input_size, settings.fit)
        for index in range(len(batches)):
            prepared = ahead.result()
            if index + 1 < len(batches):
                ahead = pool.submit(prepare_files, batches[index + 1], classifier.input_size,
                                    settings.fit)
            raws = attribute_fitted(classifier, prepared.fitted, settings)
            finishing.append(pool.submit(finish_files, prepared, raws, classifier, model,
                                         settings, engine))
            del prepared, raws
            while len(finishing) > 1:
                yield from finishing.popleft().result()
        while finishing:
            yield from finishing.popleft().result()
    finally:
        for future in finishing:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
