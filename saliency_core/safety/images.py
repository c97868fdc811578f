"""Count an image's pages, frames, chunks, scans and markers with a cap, before Pillow opens it.

Pillow counts TIFF pages and GIF frames by walking every one of them, which
takes minutes for a small file with 200,000 pages; it reads a JPEG's markers one
by one in Python before the first frame (12 million empty ``APP`` markers: a
minute and 1.5 GB), and libjpeg decodes every scan of a progressive JPEG, each a
pass over the whole image, with no limit on their number (a 2.9 MB file with
100,000 scans holds a core for minutes). These walkers read only the file's
structure (IFD offsets, GIF block headers, RIFF and PNG chunk headers, JPEG
marker segments), do a bounded amount of work per step, and stop as soon as a cap
is passed, so their time does not depend on what the file claims.

They are the cheap first filter; the decoding itself then runs in a worker
process with a memory limit and a time limit (:mod:`saliency_core.safety.decoding`),
which also covers what the walkers cannot see.
"""

from __future__ import annotations

import re
import struct

from saliency_core.safety.errors import UnsafeUploadError
from saliency_core.safety.limits import Limits

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _refuse_frames(kind: str, cap: int) -> UnsafeUploadError:
    return UnsafeUploadError(
        f"The image has more than {cap:,} {kind}; only the first is used, and files with "
        "this many are refused to protect the server.")


def _damaged() -> UnsafeUploadError:
    return UnsafeUploadError("The image file is damaged or truncated and cannot be read.")


def count_tiff_pages(data: bytes, cap: int) -> int:
    """Count a TIFF's pages by following its IFD chain, stopping after ``cap``.

    Raises:
        UnsafeUploadError: more than ``cap`` pages, a loop in the chain, or an
            offset outside the file.
    """
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        raise _damaged()
    magic = struct.unpack(order + "H", data[2:4])[0]
    if magic == 42:
        offset = struct.unpack(order + "I", data[4:8])[0]
        count_format, count_size, entry_size, next_format = "H", 2, 12, "I"
    elif magic == 43 and len(data) >= 16:
        offset = struct.unpack(order + "Q", data[8:16])[0]
        count_format, count_size, entry_size, next_format = "Q", 8, 20, "Q"
    else:
        raise _damaged()
    next_size = struct.calcsize(next_format)
    pages, seen = 0, set()
    while offset:
        if offset in seen or offset + count_size > len(data):
            raise _damaged()
        seen.add(offset)
        pages += 1
        if pages > cap:
            raise _refuse_frames("pages", cap)
        entries = struct.unpack_from(order + count_format, data, offset)[0]
        link = offset + count_size + entries * entry_size
        if link + next_size > len(data):
            if pages == 1:
                raise _damaged()
            break  # a truncated chain after the first page: Pillow stops there too
        offset = struct.unpack_from(order + next_format, data, link)[0]
    return pages


def _max_sub_blocks(data: bytes) -> int:
    """How many GIF data sub-blocks a file of this size may hold. Encoders write them
    up to 255 bytes long; a file cut into 1-byte blocks costs a Python step per byte
    (3 s for 50 MB, in the server before the decoding worker), so it is refused."""
    return 10_000 + len(data) // 32


def _skip_sub_blocks(data: bytes, position: int, budget: list[int]) -> int:
    while position < len(data):
        size = data[position]
        position += 1 + size
        budget[0] -= 1
        if budget[0] < 0:
            raise UnsafeUploadError(
                "The GIF is cut into far more data blocks than an encoder writes; files "
                "built like this are refused to protect the server.")
        if size == 0:
            return position
    raise _damaged()


def count_gif_frames(data: bytes, cap: int) -> int:
    """Count a GIF's images by walking its block headers, stopping after ``cap``.

    Raises:
        UnsafeUploadError: more than ``cap`` frames, or a damaged structure.
    """
    if len(data) < 13:
        raise _damaged()
    position = 13
    flags = data[10]
    if flags & 0x80:
        position += 3 * (2 << (flags & 0x07))
    frames = 0
    budget = [_max_sub_blocks(data)]
    while position < len(data):
        block = data[position]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            position = _skip_sub_blocks(data, position + 2, budget)
        elif block == 0x2C:  # image descriptor
            frames += 1
            if frames > cap:
                raise _refuse_frames("frames", cap)
            if position + 10 > len(data):
                break
            local = data[position + 9]
            position += 10
            if local & 0x80:
                position += 3 * (2 << (local & 0x07))
            position = _skip_sub_blocks(data, position + 1, budget)  # after the LZW code size
        else:
            break  # garbage after the last frame: Pillow stops there too
    return max(frames, 1)


def count_webp_frames(data: bytes, frame_cap: int, chunk_cap: int) -> int:
    """Count an animated WebP's frames (``ANMF`` chunks), stopping after the caps.

    Raises:
        UnsafeUploadError: more than ``frame_cap`` frames or ``chunk_cap`` chunks.
    """
    position, frames, chunks = 12, 0, 0
    while position + 8 <= len(data):
        fourcc = data[position:position + 4]
        size = struct.unpack_from("<I", data, position + 4)[0]
        chunks += 1
        if chunks > chunk_cap:
            raise _refuse_frames("chunks", chunk_cap)
        if fourcc == b"ANMF":
            frames += 1
            if frames > frame_cap:
                raise _refuse_frames("frames", frame_cap)
        position += 8 + size + (size & 1)
    return max(frames, 1)


_PNG_METADATA = {b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf"}


def count_png_chunks(data: bytes, chunk_cap: int, frame_cap: int,
                     metadata_cap: int | None = None) -> tuple[int, int]:
    """Count a PNG's chunks and APNG frames (``fcTL``), stopping after the caps.

    Returns:
        ``(chunks, frames)``.

    Raises:
        UnsafeUploadError: more than ``chunk_cap`` chunks or ``frame_cap`` frames,
            or more than ``metadata_cap`` bytes of text, ICC and EXIF chunks.
    """
    position, chunks, frames, metadata = len(_PNG_SIGNATURE), 0, 0, 0
    while position + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, position)
        chunks += 1
        if chunks > chunk_cap:
            raise _refuse_frames("chunks", chunk_cap)
        if metadata_cap is not None and kind in _PNG_METADATA:
            metadata += size
            if metadata > metadata_cap:
                raise UnsafeUploadError(
                    f"The PNG carries more than {metadata_cap // (1 << 20)} MB of text and "
                    "metadata; files built like this are refused to protect the server.")
        if kind == b"fcTL":
            frames += 1
            if frames > frame_cap:
                raise _refuse_frames("frames", frame_cap)
        if kind == b"IEND":
            break
        position += 12 + size
    return chunks, max(frames, 1)


_JPEG_MARKER = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")
"""A real marker inside entropy-coded data: ``FF`` not followed by a stuffed ``00``, a
restart marker ``D0``-``D7``, or another fill byte ``FF``."""
_SKIPPED_AFTER_FF = frozenset([0x00, 0xFF, *range(0xD0, 0xD8)])


def walk_jpeg(data: bytes, limits: Limits) -> tuple[int, int, int]:
    """Walk a JPEG's marker segments up to its first ``EOI``, with caps.

    Returns:
        ``(markers, scans, metadata_bytes)``.

    Raises:
        UnsafeUploadError: more scans, markers or metadata than the limits allow.
    """
    position, markers, scans, metadata = 2, 0, 0, 0
    end = len(data)
    while position + 1 < end:
        if data[position] != 0xFF:
            found = _JPEG_MARKER.search(data, position)
            if found is None:
                break  # truncated: Pillow reports it
            position = found.start()
        if position + 1 < end and data[position + 1] in _SKIPPED_AFTER_FF:
            # Fill bytes, stuffed 00s and restarts: jump to the next real marker in C (a
            # Python step per pair took 4.5 s for 50 MB of FF00, in the server thread).
            found = _JPEG_MARKER.search(data, position + 1)
            if found is None:
                break
            position = found.start()
        if position + 1 >= end:
            break
        marker = data[position + 1]
        markers += 1
        if markers > limits.max_jpeg_markers:
            raise UnsafeUploadError(
                f"The JPEG has more than {limits.max_jpeg_markers:,} markers; files built "
                "like this are refused to protect the server.")
        if marker == 0xD9:  # EOI: the first image ends (an MPO's others follow)
            break
        if marker in (0xD8, 0x01):  # SOI, TEM: no length
            position += 2
            continue
        if position + 4 > end:
            break
        length = struct.unpack_from(">H", data, position + 2)[0]
        if length < 2:
            raise _damaged()
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            metadata += length
            if metadata > limits.max_image_metadata_bytes:
                raise UnsafeUploadError(
                    f"The JPEG carries more than "
                    f"{limits.max_image_metadata_bytes // (1 << 20)} MB of metadata; files "
                    "built like this are refused to protect the server.")
        position += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data follows, up to the next marker
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise UnsafeUploadError(
                    f"The JPEG has more than {limits.max_jpeg_scans:,} scans (a normal "
                    "progressive JPEG has about 10, and each one is a pass over the whole "
                    "image), so it is refused to protect the server.")
    return markers, scans, metadata


def check_png_header(data: bytes, limits: Limits, max_pixels: int) -> tuple[int, int]:
    """A PNG's size from its ``IHDR``, refused above the side or pixel limits.

    Returns:
        ``(width, height)``.
    """
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _damaged()
    width, height = struct.unpack_from(">II", data, 16)
    check_image_size(width, height, limits, max_pixels)
    return width, height


def check_image_size(width: int, height: int, limits: Limits, max_pixels: int) -> None:
    """Refuse an image whose side or pixel count is above the limits, before decoding.

    Raises:
        UnsafeUploadError: with the size and the limit.
    """
    if width < 1 or height < 1:
        raise UnsafeUploadError("The image has no pixels.")
    if max(width, height) > limits.max_image_side:
        raise UnsafeUploadError(
            f"The image is {width:,} x {height:,} pixels; sides longer than "
            f"{limits.max_image_side:,} pixels are refused to protect the server.")
    if width * height > max_pixels:
        raise UnsafeUploadError(
            f"The image is {width} x {height} pixels ({width * height / 1e6:.0f} "
            f"megapixels), above the limit of {max_pixels / 1e6:.0f} megapixels. Very "
            "large images are refused to protect the server (possible decompression "
            "bomb); please downscale it first.")


def check_image_structure(data: bytes, limits: Limits, max_pixels: int | None = None) -> None:
    """Refuse an image with too many pages, frames, chunks, scans or markers, or (a
    PNG, given ``max_pixels``) too many pixels, before it is decoded.

    Formats are recognised by their signature; other formats pass unchanged.

    Raises:
        UnsafeUploadError: with the reason, for the user.
    """
    frames = limits.max_image_frames
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        count_tiff_pages(data, frames)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        count_gif_frames(data, frames)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        count_webp_frames(data, frames, limits.max_png_chunks)
    elif data[:8] == _PNG_SIGNATURE:
        if max_pixels is not None:
            check_png_header(data, limits, max_pixels)
        count_png_chunks(data, limits.max_png_chunks, frames, limits.max_image_metadata_bytes)
    elif data[:2] == b"\xff\xd8":
        walk_jpeg(data, limits)
