"""Count an image's pages, frames and chunks with a cap, before Pillow opens it.

Pillow counts TIFF pages and GIF frames by walking every one of them, which
takes minutes for a small file with 200,000 pages. These counters read only
the file's structure (IFD offsets, GIF block headers, RIFF and PNG chunk
headers), do a bounded amount of work per step, and stop as soon as the cap
is passed, so their time does not depend on how many pages the file claims.
"""

from __future__ import annotations

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


def _skip_sub_blocks(data: bytes, position: int) -> int:
    while position < len(data):
        size = data[position]
        position += 1 + size
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
    while position < len(data):
        block = data[position]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            position = _skip_sub_blocks(data, position + 2)
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
            position = _skip_sub_blocks(data, position + 1)  # after the LZW code size
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


def count_png_chunks(data: bytes, chunk_cap: int, frame_cap: int) -> tuple[int, int]:
    """Count a PNG's chunks and APNG frames (``fcTL``), stopping after the caps.

    Returns:
        ``(chunks, frames)``.

    Raises:
        UnsafeUploadError: more than ``chunk_cap`` chunks or ``frame_cap`` frames.
    """
    position, chunks, frames = len(_PNG_SIGNATURE), 0, 0
    while position + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, position)
        chunks += 1
        if chunks > chunk_cap:
            raise _refuse_frames("chunks", chunk_cap)
        if kind == b"fcTL":
            frames += 1
            if frames > frame_cap:
                raise _refuse_frames("frames", frame_cap)
        if kind == b"IEND":
            break
        position += 12 + size
    return chunks, max(frames, 1)


def check_image_structure(data: bytes, limits: Limits) -> None:
    """Refuse an image with too many pages, frames or chunks, before it is decoded.

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
        count_png_chunks(data, limits.max_png_chunks, frames)
