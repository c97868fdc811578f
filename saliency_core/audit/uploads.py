"""Many uploaded files, or ``.zip`` archives of them, checked before anything is read.

Limits (per file as on Explore, and in total; the ``max_audit_*`` fields of the
config's ``[limits]``) bound memory. A zip's declared
unpacked sizes and member count are checked from its central directory before
any member is extracted, and a member is read with a hard cap on the bytes
actually produced, so a zip that lies about its sizes cannot get past them.
Members are only read into memory, never written to disk under their names.
Folders inside a zip are fine; non-images are skipped and listed.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from saliency_core.imaging import ImageError
from saliency_core.safety.limits import DEFAULT_LIMITS, Limits, format_bytes, load_limits

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def read_image_file(path: str | Path, max_bytes: int | None = None) -> bytes:
    """The bytes of an image file, refusing files larger than ``max_bytes`` before reading.

    Args:
        path: the file.
        max_bytes: default ``Limits.max_audit_file_bytes`` of the config in force.

    Raises:
        ImageError: the file is too large.
        OSError: it cannot be read.
    """
    if max_bytes is None:
        max_bytes = load_limits().max_audit_file_bytes
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise ImageError(f"The file is {format_bytes(size)}; images may be at most "
                         f"{format_bytes(max_bytes)}.")
    return Path(path).read_bytes()


@dataclass(frozen=True)
class UploadLimits:
    """Limits of one audit's uploads: the ``max_audit_*`` fields of
    :class:`saliency_core.safety.limits.Limits` (set in the config's ``[limits]``)."""

    max_file_bytes: int = DEFAULT_LIMITS.max_audit_file_bytes
    max_total_bytes: int = DEFAULT_LIMITS.max_audit_total_bytes
    max_files: int = DEFAULT_LIMITS.max_audit_files
    max_zip_members: int = DEFAULT_LIMITS.max_audit_zip_members

    @classmethod
    def from_limits(cls, limits: Limits | None = None) -> UploadLimits:
        """The audit limits of ``limits`` (default: the config file's, as in force now)."""
        limits = load_limits() if limits is None else limits
        return cls(limits.max_audit_file_bytes, limits.max_audit_total_bytes,
                   limits.max_audit_files, limits.max_audit_zip_members)


@dataclass
class CollectedFiles:
    """The images found in the uploads, and what was left out.

    Attributes:
        images: ``(name, bytes)``, a zip member named ``archive.zip/folder/file.png``.
        skipped: ``(name, reason)`` for files that are not images or over a limit.
        refused: messages about whole uploads refused (e.g. a zip over the limits).
    """

    images: list[tuple[str, bytes]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Bytes of all kept images."""
        return sum(len(data) for _, data in self.images)


def is_image_name(name: str) -> bool:
    """Whether a file name has an image suffix (hidden and macOS resource files excluded)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return (not base.startswith(".") and "__MACOSX/" not in name
            and base.lower().endswith(IMAGE_SUFFIXES))


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A member's bytes, stopping (ValueError) if it produces more than ``cap`` bytes."""
    with archive.open(info) as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise ValueError("unpacks to more than its declared size")
    return data


_END_OF_DIRECTORY = b"PK\x05\x06"
_DIRECTORY_ENTRY = b"PK\x01\x02"


def count_zip_entries(data: bytes) -> int | None:
    """An upper bound on a zip's entries, read without building them; ``None`` if there
    is no end-of-directory record.

    :class:`zipfile.ZipFile` reads the whole central directory into Python objects
    when it opens an archive, whatever count the end record declares (a 200 MB zip
    of 4 million 51-byte entries took 2 GB and 16 s of CPU before the entry limit
    could be checked). Counting the directory's entry signatures is a C-speed scan
    of bytes, so the limit is checked first. Names that happen to hold the signature
    can only make the bound larger.
    """
    end = data.rfind(_END_OF_DIRECTORY, max(0, len(data) - 65_557))
    if end < 0:
        return None
    size, offset = int.from_bytes(data[end + 12:end + 16], "little"), \
        int.from_bytes(data[end + 16:end + 20], "little")
    start = 0 if 0xFFFFFFFF in (size, offset) else max(0, min(offset, end - size))
    return data.count(_DIRECTORY_ENTRY, start, end)


def add_zip(collected: CollectedFiles, name: str, data: bytes,
            limits: UploadLimits | None = None) -> None:
    """Add the images of a zip archive to ``collected``, after checking its directory.

    The member count and the declared unpacked sizes (each image, and all of
    them with what is already collected) are checked before anything is
    extracted; a refused zip adds nothing. ``limits`` default: the config's.
    """
    limits = UploadLimits.from_limits() if limits is None else limits
    entries = count_zip_entries(data)
    if entries is not None and entries > limits.max_zip_members:
        collected.refused.append(f"{name} has {entries} entries; a zip may have at most "
                                 f"{limits.max_zip_members}.")
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        collected.refused.append(f"{name} is not a readable .zip file.")
        return
    with archive:
        if len(members) > limits.max_zip_members:
            collected.refused.append(f"{name} has {len(members)} entries; a zip may have at "
                                     f"most {limits.max_zip_members}.")
            return
        files = [m for m in members if not m.is_dir()]
        images = [m for m in files if is_image_name(m.filename)]
        declared = sum(m.file_size for m in images)
        room = limits.max_total_bytes - collected.total_bytes
        if declared > room:
            collected.refused.append(
                f"{name} unpacks to {format_bytes(declared)} of images; all images "
                f"together may be at most {format_bytes(limits.max_total_bytes)}.")
            return
        if len(images) + len(collected.images) > limits.max_files:
            collected.refused.append(
                f"{name} holds {len(images)} images; an audit may have at most "
                f"{limits.max_files} images.")
            return
        for member in files:
            member_name = f"{name}/{member.filename}"
            if not is_image_name(member.filename):
                if "__MACOSX/" not in member.filename:
                    collected.skipped.append((member_name, "not an image file"))
                continue
            if member.file_size > limits.max_file_bytes:
                collected.skipped.append((member_name, f"larger than "
                                                       f"{format_bytes(limits.max_file_bytes)}"))
                continue
            if member.flag_bits & 0x1:
                collected.skipped.append((member_name, "encrypted"))
                continue
            try:
                collected.images.append((member_name,
                                         _read_member(archive, member, member.file_size)))
            except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError,
                    EOFError) as exc:
                collected.skipped.append((member_name, f"cannot be unpacked ({exc})"))


def collect_uploads(files: list[tuple[str, bytes]],
                    limits: UploadLimits | None = None) -> CollectedFiles:
    """Images from uploaded files: images kept, zips opened, anything else skipped.

    Args:
        files: ``(file name, bytes)`` in upload order.
        limits: default :meth:`UploadLimits.from_limits`, the config file's ``[limits]``.

    Returns:
        The images (at most ``limits.max_files``, ``limits.max_total_bytes`` in
        total, each at most ``limits.max_file_bytes``) and what was left out.
    """
    limits = UploadLimits.from_limits() if limits is None else limits
    collected = CollectedFiles()
    for name, data in files:
        if name.lower().endswith(".zip"):
            add_zip(collected, name, data, limits)
        elif not is_image_name(name):
            collected.skipped.append((name, "not an image file"))
        elif len(data) > limits.max_file_bytes:
            collected.skipped.append((name, f"larger than {format_bytes(limits.max_file_bytes)}"))
        elif len(collected.images) >= limits.max_files:
            collected.skipped.append((name, f"over the limit of {limits.max_files} images"))
        elif collected.total_bytes + len(data) > limits.max_total_bytes:
            collected.skipped.append((name, f"over the total of "
                                            f"{format_bytes(limits.max_total_bytes)}"))
        else:
            collected.images.append((name, data))
    return collected
