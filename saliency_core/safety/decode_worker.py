"""The decoding worker process: requests on stdin, decoded photos on stdout.

Started by :mod:`saliency_core.safety.decoding` as ``python -m
saliency_core.safety.decode_worker``; it imports only Pillow, NumPy and the
project's decoding code, caps its own address space, then decodes one request
after another with :func:`saliency_core.imaging.decode_image` until its stdin
closes. A request is a JSON line (``size``, ``max_pixels``, ``display_max_side``,
``limits``) followed by ``size`` bytes; an answer is a JSON line followed by the
raw RGB pixels. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from saliency_core.imaging import ImageError, decode_image
from saliency_core.safety.limits import Limits
from saliency_core.safety.rlimits import limit_address_space

MAX_HEADER = 1 << 16


def _read_exact(stream, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError()
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def worker_main() -> None:
    """Serve decoding requests until stdin closes."""
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the channel
    source = sys.stdin.buffer
    limit_address_space(int(os.environ.get("SALIENCY_DECODE_MEMORY", str(1 << 30))))

    def send(header: dict, payload: bytes = b"") -> None:
        channel.write(json.dumps(header).encode() + b"\n" + payload)

    while True:
        line = source.readline(MAX_HEADER)
        if not line:
            return
        request = json.loads(line)
        data = _read_exact(source, int(request["size"]))
        try:
            image = decode_image(data, max_pixels=int(request["max_pixels"]),
                                 display_max_side=int(request["display_max_side"]),
                                 limits=Limits(**request["limits"]))
            pixels = np.ascontiguousarray(image.pixels, dtype=np.uint8)
            send({"shape": list(pixels.shape), "original_size": list(image.original_size),
                  "decoded_size": list(image.decoded_size), "format": image.format,
                  "notes": list(image.notes)}, pixels.tobytes())
        except ImageError as exc:
            send({"error": str(exc)})
        except MemoryError:
            send({"error": "memory"})


if __name__ == "__main__":
    worker_main()
