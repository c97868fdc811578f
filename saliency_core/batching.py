"""How many images go through a model at once, and how a long batch is split.

On a CPU a larger batch runs faster per image, but a gradient keeps every
layer's output for the backward pass, so memory grows with the batch. The bound
follows the model's memory per image and the machine's free memory
(:func:`choose_batch_size`) instead of a fixed number per model, and a long batch
is split into chunks of nearly equal size (:func:`split_evenly`): 20 samples
under a bound of 16 go as 10 + 10, not 16 + 4.
"""

from __future__ import annotations

import os

# What one image costs in a gradient call, as a multiple of the sum of its layer
# outputs (the forward activations kept for the backward pass, their gradients and
# TensorFlow's temporaries). EfficientNet-Lite0 measured 0.4-0.7 (29-54 MB of peak
# memory per image for 76 MB of layer outputs); 1.5 leaves a margin.
GRADIENT_MEMORY_FACTOR = 1.5
MEMORY_SHARE = 0.2  # of the memory available when the model is loaded
MAX_BATCH = 64
FALLBACK_AVAILABLE_BYTES = 4 * 2**30


def available_memory_bytes() -> int:
    """Memory available to new allocations (``MemAvailable`` on Linux), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return FALLBACK_AVAILABLE_BYTES


def choose_batch_size(activation_bytes: int, available_bytes: int | None = None,
                      share: float = MEMORY_SHARE, maximum: int = MAX_BATCH) -> int:
    """The most images per gradient call that fit ``share`` of the available memory.

    Args:
        activation_bytes: the sum of one image's layer outputs (see
            :func:`saliency_core.tf_adapter.activation_bytes`).
        available_bytes: free memory; measured when ``None``.
        share: the fraction of it one call may use.
        maximum: an upper bound, however much memory is free.

    Returns:
        An integer in ``[1, maximum]``.
    """
    if available_bytes is None:
        available_bytes = available_memory_bytes()
    per_image = max(1, GRADIENT_MEMORY_FACTOR * int(activation_bytes))
    return int(max(1, min(maximum, (share * available_bytes) // per_image)))


def split_evenly(total: int, bound: int) -> list[tuple[int, int]]:
    """``(start, stop)`` chunks covering ``range(total)``, at most ``bound`` long, sizes within 1.

    >>> split_evenly(20, 16)
    [(0, 10), (10, 20)]
    """
    if total <= 0:
        return []
    bound = max(1, int(bound))
    count = -(-total // bound)
    base, extra = divmod(total, count)
    chunks, start = [], 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        chunks.append((start, stop))
        start = stop
    return chunks
