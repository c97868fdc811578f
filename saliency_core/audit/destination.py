"""Where the command line writes: an output folder that can never hold or hide its inputs.

``python -m saliency_core explain photos/ --out photos/`` once wrote ``cat.png``'s
overlay over an input called ``cat.png`` and then explained the overlay. So,
before anything is read or written:

* ``--out`` must not be an input, lie inside an input folder, or contain an
  input, compared after resolving symbolic links (an alias of the input folder
  is the input folder) and by device and inode (a bind mount of it is too);
* ``--out`` must be a folder (or not exist yet), not a file;
* an existing folder that already holds anything is left as it is: the run
  writes to a fresh sub-folder of it, ``run-YYYYMMDD-HHMMSS``, and says so.

Every output file is then created with ``O_EXCL`` (:func:`write_new_file`), so
even a file that appears during the run is never overwritten.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class DestinationError(ValueError):
    """``--out`` cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class Destination:
    """The folder a run writes to.

    Attributes:
        requested: ``--out`` as given.
        folder: where the files go (resolved); it may not exist yet.
        fresh: the requested folder already held files, so ``folder`` is a new
            sub-folder of it made for this run.
    """

    requested: str
    folder: Path
    fresh: bool = False

    def create(self) -> Path:
        """Make the folder (a fresh sub-folder is made new; never an existing one) and
        return it.

        Raises:
            DestinationError: it cannot be created.
        """
        folder = self.folder
        try:
            if self.fresh:
                folder.parent.mkdir(parents=True, exist_ok=True)
                for n in range(1, 1000):
                    candidate = folder if n == 1 else folder.with_name(f"{folder.name}-{n}")
                    try:
                        candidate.mkdir()
                    except FileExistsError:
                        continue
                    return candidate
                raise DestinationError(f"--out {self.requested}: no fresh sub-folder name "
                                       "is free")
            folder.mkdir(parents=True, exist_ok=True)
        except NotADirectoryError:
            raise DestinationError(f"--out {self.requested}: a part of that path is a file, "
                                   "not a folder") from None
        except OSError as exc:
            raise DestinationError(f"--out {self.requested}: the folder cannot be created "
                                   f"({(exc.strerror or 'error').lower()})") from None
        if any(folder.iterdir()):  # filled since it was checked: do not mix with it
            raise DestinationError(f"--out {self.requested} received files from elsewhere "
                                   "after the run started; nothing was written")
        return folder


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _chain(path: Path) -> list[tuple[int, int]]:
    """Device and inode of ``path`` and of every existing folder above it."""
    found = []
    for item in (path, *path.parents):
        identity = _identity(item)
        if identity is not None:
            found.append(identity)
    return found


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _conflict(out: Path, given: str, item: Path) -> str | None:
    """Why ``out`` (resolved) cannot be used with the input ``item`` (resolved), if so."""
    kind = "folder" if item.is_dir() else "file"
    out_id, item_id = _identity(out), _identity(item)
    if out == item or (out_id is not None and out_id == item_id):
        return f"is the input {kind} {given}"
    if kind == "folder" and (_is_within(out, item) or (item_id is not None
                                                         and item_id in _chain(out))):
        return f"lies inside the input folder {given}"
    if _is_within(item, out) or (out_id is not None and out_id in _chain(item)):
        return f"contains the input {kind} {given}"
    return None


def plan_destination(out: str, inputs: Sequence[str], images: Sequence[Path] = ()
                     ) -> Destination:
    """Check ``--out`` against the inputs and decide where the run writes.

    Nothing is created here (see :meth:`Destination.create`), so a run refused
    later for another reason leaves no empty folder behind.

    Args:
        out: ``--out`` as given.
        inputs: the ``PATH`` arguments (files and folders).
        images: every image file found; those reached through a symbolic link
            from outside their folder are checked too.

    Raises:
        DestinationError: ``--out`` is, holds or lies inside an input, or is a file.
    """
    if not out.strip():
        raise DestinationError("--out is empty; give a folder for the results")
    requested = Path(out).expanduser()
    if requested.is_symlink() and not requested.exists():
        raise DestinationError(f"--out {out} is a symbolic link to nothing; give a folder")
    target = requested.resolve()
    for given in inputs:
        reason = _conflict(target, given, Path(given).expanduser().resolve())
        if reason:
            raise DestinationError(f"--out {out} {reason}: the results would overwrite or "
                                   "mix with the images; give a folder outside the inputs")
    for image in images:
        resolved = image.resolve()
        if resolved != image.absolute() and _is_within(resolved, target):
            raise DestinationError(f"--out {out} contains the input file {image} (through a "
                                   "symbolic link); give a folder outside the inputs")
    if target.exists() and not target.is_dir():
        raise DestinationError(f"--out {out} is a file, not a folder: give a folder for the "
                               "results (it is created if needed)")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DestinationError(f"--out {out}: {parent} is a file, not a folder")
            break
    if target.is_dir():
        try:
            occupied = any(target.iterdir())
        except OSError as exc:
            raise DestinationError(f"--out {out} cannot be read "
                                   f"({(exc.strerror or 'error').lower()})") from None
        if occupied:
            stamp = time.strftime("run-%Y%m%d-%H%M%S")
            return Destination(out, target / stamp, fresh=True)
    return Destination(out, target)


def write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a file that must not exist yet (``O_EXCL``: never overwrites,
    never follows a symbolic link placed there).

    Raises:
        FileExistsError: something is already at ``path``.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
