"""Measure what one model call costs: seconds and memory per image, forward and backward.

The work budget (:mod:`saliency_core.safety.budget`) multiplies these figures by
the passes a method declares. They are measured, not derived from the model's
layer shapes: a ``keras.layers.Attention`` over 8192 tokens has small layer
outputs but builds a 256 MB score matrix per image inside one layer, which only
a real pass shows.

:func:`measure_cost` runs the adapter's real gradient call (the one every
gradient method uses) at batch 1 and batch 2, and a forward call at batch 1 and
batch 2, timing each and reading the process's peak resident memory around it
(``VmHWM``, reset through ``/proc/self/clear_refs`` before each call). The
difference between the two batch sizes gives the cost per image, the rest the
cost per call. It then checks the batch size it chose from those figures with one
more call at that size, and shrinks it if that call needed more. For a visitor's
own model it runs in the isolated child process that checks the model, under
that process's memory limit (:mod:`saliency_core.safety.isolation`); a model
whose single image needs more than :attr:`Limits.max_activation_bytes` is refused
there, before batch 2 is tried.

The registered models are ours, not a visitor's: :func:`measure_time` times them
in the server when they load and takes their memory per image from their layer
outputs (:mod:`saliency_core.batching`; ``bench/method_memory.py`` checks that
figure), so no child process is started for them.
"""

from __future__ import annotations

import ctypes
import os
import time

import numpy as np

from saliency_core.batching import GRADIENT_MEMORY_FACTOR
from saliency_core.methods.base import Target
from saliency_core.safety.budget import ModelCost
from saliency_core.safety.errors import is_out_of_memory
from saliency_core.safety.limits import MIB, Limits, format_bytes


class ModelTooCostlyError(ValueError):
    """One image needs more memory than the limit; the message is for users."""


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Hand memory that earlier calls freed back to the system (glibc's ``malloc_trim``),
    so the next call's rise above the resident size counts all that it allocates
    instead of reusing what an earlier call left behind."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _measure_call(call, images: np.ndarray, repeats: int = 1) -> tuple[float, int]:
    """``(seconds, bytes added at the peak)`` of ``call(images)``: the fastest of
    ``repeats`` runs, and the largest memory rise (0 where /proc is missing)."""
    best, rise = float("inf"), 0
    for _ in range(max(1, repeats)):
        _release_free_memory()
        base = _status_kb("VmRSS")
        can_reset = _reset_peak()
        start = time.perf_counter()
        call(images)
        best = min(best, time.perf_counter() - start)
        peak = _status_kb("VmHWM")
        if can_reset and base is not None and peak is not None:
            rise = max(rise, (peak - base) * 1024)
    return best, rise


def _linear(one: float, two: float) -> tuple[float, float]:
    """``(fixed, per_image)`` from a call of 1 and a call of 2 images."""
    per_image = max(two - one, 0.0)
    return max(one - per_image, 0.0), per_image


def measure_cost(classifier, limits: Limits, max_batch: int = 64) -> tuple[ModelCost, int]:
    """Measure ``classifier``'s calls and choose its batch size.

    Args:
        classifier: a :class:`~saliency_core.tf_adapter.KerasClassifier` (its
            ``gradients`` and ``logits`` are what methods call).
        limits: ``max_activation_bytes`` (refuse above it per image) and
            ``activation_budget_bytes`` (what one call may use).
        max_batch: the largest batch size chosen.

    Returns:
        ``(cost, batch_size)``.

    Raises:
        ModelTooCostlyError: one image needs more than ``limits.max_activation_bytes``.
    """
    height, width = classifier.input_size
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        return rng.uniform(0, 255, size=(n, height, width, 3)).astype(np.float32)

    target = Target(0)

    def gradient(batch: np.ndarray) -> None:
        classifier.gradients(batch, target)

    one, two = images(1), images(2)
    classifier.batch_size = max_batch  # each measured call is a single call
    limit = format_bytes(limits.max_activation_bytes)

    def too_costly(needed: str) -> ModelTooCostlyError:
        return ModelTooCostlyError(
            f"One image needs {needed} of memory in this model's gradient pass; the limit "
            f"is {limit}, to protect the server. Layers that build large internal matrices "
            "(attention over many positions) or blow the image up (large upsampling) "
            "cause this.")

    try:
        gradient(one)  # trace
        g1, m1 = _measure_call(gradient, one, repeats=2)
        if m1 > limits.max_activation_bytes:
            raise too_costly(f"about {format_bytes(m1)}")
        g2, m2 = _measure_call(gradient, two)
    except ModelTooCostlyError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise too_costly("more than the checking process may use") from exc
        raise
    if max(m1, m2 - m1) > limits.max_activation_bytes:
        raise too_costly(f"about {format_bytes(max(m1, m2 - m1))}")
    classifier.logits(one)  # trace
    f1, _ = _measure_call(classifier.logits, one, repeats=2)
    f2, _ = _measure_call(classifier.logits, two)
    image_bytes = max(m2 - m1, MIB)
    call_bytes = max(m1 - image_bytes, 0)
    gradient_fixed, gradient_image = _linear(g1, g2)
    forward_fixed, forward_image = _linear(f1, f2)
    cost = ModelCost(gradient_fixed, gradient_image, forward_fixed, forward_image,
                     int(image_bytes), int(call_bytes),
                     source="measured in the checking process")
    batch = cost.batch_for(limits.activation_budget_bytes, max_batch)
    if batch > 2:
        # Check the extrapolation at the size that will be used.
        try:
            gb, mb = _measure_call(gradient, images(batch))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            # The linear extrapolation was wrong: count the budget as what one of a
            # quarter as many images may use, and use that smaller batch.
            image_bytes = max(image_bytes, limits.activation_budget_bytes / batch)
            batch = max(1, batch // 4)
            return ModelCost(gradient_fixed, gradient_image, forward_fixed, forward_image,
                             int(image_bytes), int(call_bytes),
                             source="measured in the checking process"), batch
        if mb > 0:
            image_bytes = max(image_bytes, (mb - call_bytes) / batch)
        gradient_image = max(gradient_image, (gb - gradient_fixed) / batch)
        cost = ModelCost(gradient_fixed, gradient_image, forward_fixed, forward_image,
                         int(image_bytes), int(call_bytes),
                         source="measured in the checking process")
        batch = min(batch, cost.batch_for(limits.activation_budget_bytes, max_batch))
    return cost, batch


def measure_time(classifier, repeats: int = 3) -> ModelCost:
    """Time a registered (trusted) model's calls in this process; memory from its layers.

    The fastest of ``repeats`` runs is kept, so other work on the server inflates
    the figures less.
    """
    height, width = classifier.input_size
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, size=(1, height, width, 3)).astype(np.float32)
    two = np.concatenate([one, one[:, ::-1]])
    target = Target(0)
    saved, classifier.batch_size = classifier.batch_size, max(2, classifier.batch_size)
    try:
        classifier.gradients(one, target)
        g1, _ = _measure_call(lambda x: classifier.gradients(x, target), one, repeats)
        g2, _ = _measure_call(lambda x: classifier.gradients(x, target), two, repeats)
        classifier.logits(one)
        f1, _ = _measure_call(classifier.logits, one, repeats)
        f2, _ = _measure_call(classifier.logits, two, repeats)
    finally:
        classifier.batch_size = saved
    gradient_fixed, gradient_image = _linear(g1, g2)
    forward_fixed, forward_image = _linear(f1, f2)
    return ModelCost(gradient_fixed, gradient_image, forward_fixed, forward_image,
                     int(GRADIENT_MEMORY_FACTOR * classifier.activation_bytes), 0,
                     source=f"timed at load in process {os.getpid()}; memory from its layers")
