"""Resource limits for the child processes that open untrusted files.

Both the model-checking child (:mod:`saliency_core.safety.isolation`) and the
photo-decoding worker (:mod:`saliency_core.safety.decoding`) cap their own
address space (``RLIMIT_AS``) at what they have mapped after importing their
libraries plus a budget, and the parent reads their peak resident memory. Only
the standard library is imported here, so the decoding worker stays small.
"""

from __future__ import annotations

import os
import resource

MIB = 1024 * 1024


def mapped_bytes() -> int:
    """The address space this process maps now (``/proc/self/statm``), in bytes."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 2048 * MIB  # no /proc: assume a TensorFlow-sized process


def peak_resident_mb(pid: int | str = "self") -> float:
    """Peak resident memory (``VmHWM``) of a process in MB, or 0 when unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def limit_address_space(extra_bytes: int) -> int:
    """Set this process's soft ``RLIMIT_AS`` to what it maps now plus ``extra_bytes``.

    Only the soft limit changes, so trusted code may raise it again after a
    large import; a file being opened runs no code and cannot.

    Returns:
        The limit set, in bytes.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped_bytes() + int(extra_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit
