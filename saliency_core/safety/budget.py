"""The work budget: what a map or check will cost on this server, known before it runs.

A job's cost is the model passes it makes (:class:`~saliency_core.methods.base.Work`,
declared by each method) times what one pass of *this* model costs on *this*
server (:class:`ModelCost`): its time per image and its memory per image. The
cost is measured, never read off the model's declaration: for a visitor's own
model in the isolated child process that checks it
(:func:`saliency_core.models.cost.measure_cost`, a forward and a backward pass at
batch 1 and at batch 2), for the registered models when the server loads them.

:func:`check_work` refuses a job above :attr:`Limits.max_job_seconds` or
:attr:`Limits.job_memory_bytes` before anything runs, and :func:`advise` says
what to change: "Samples at most 18", "Stride at least 8". The admission queue
(:mod:`saliency_core.safety.jobs`) then runs what passed, within the same limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from saliency_core.methods.base import Param, SaliencyMethod, Work
from saliency_core.safety.jobs import Estimate
from saliency_core.safety.limits import Limits, format_bytes


class OverBudgetError(Exception):
    """A job would cost more than the budget; the message says how much and what to change."""


@dataclass(frozen=True)
class ModelCost:
    """What one model call costs on this server, as measured.

    A call of ``b`` images takes ``fixed + b * per_image`` seconds and adds
    ``call_bytes + b * image_bytes`` of memory at its peak.

    Attributes:
        gradient_fixed_seconds, gradient_image_seconds: a forward and a backward pass
            to the input (``layer`` passes are costed the same).
        forward_fixed_seconds, forward_image_seconds: a forward pass only.
        image_bytes: memory a gradient call adds per image (a forward call adds less).
        call_bytes: memory a call adds whatever its size.
        source: how it was obtained, for the logs and the Models page.
    """

    gradient_fixed_seconds: float
    gradient_image_seconds: float
    forward_fixed_seconds: float
    forward_image_seconds: float
    image_bytes: int
    call_bytes: int = 0
    source: str = "measured"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelCost:
        """A cost from :meth:`to_dict`'s output (e.g. JSON from the checking child)."""
        fields = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        cost = cls(**fields)
        numbers = [getattr(cost, name) for name in cls.__dataclass_fields__ if name != "source"]
        if not all(isinstance(n, int | float) and math.isfinite(n) and n >= 0 for n in numbers):
            raise ValueError(f"not a model cost: {values!r}")
        return cost

    def pass_seconds(self, kind: str = "gradient") -> float:
        """Seconds for one image alone (a call of one)."""
        if kind == "forward":
            return self.forward_fixed_seconds + self.forward_image_seconds
        return self.gradient_fixed_seconds + self.gradient_image_seconds

    def seconds(self, work: Work, batch: int) -> float:
        """Expected seconds for ``work`` sent in calls of at most ``batch`` images."""
        batch = max(1, int(batch))
        gradient = work.gradient + work.layer

        def calls(images: int) -> int:
            return -(-images // batch) if images > 0 else 0

        return (calls(gradient) * self.gradient_fixed_seconds
                + gradient * self.gradient_image_seconds
                + calls(work.forward) * self.forward_fixed_seconds
                + work.forward * self.forward_image_seconds)

    def peak_bytes(self, work: Work, batch: int) -> int:
        """Memory the largest call of ``work`` adds (a forward image counted as a gradient one)."""
        largest = min(max(1, int(batch)), max(work.gradient + work.layer, work.forward))
        return int(self.call_bytes + largest * self.image_bytes) if work.images else 0

    def batch_for(self, memory_bytes: int, maximum: int = 64) -> int:
        """The most images per call whose memory fits ``memory_bytes`` (at least 1)."""
        room = memory_bytes - self.call_bytes
        return int(max(1, min(maximum, room // max(1, self.image_bytes))))


def format_seconds(seconds: float) -> str:
    """``"0.4 s"``, ``"45 s"``, ``"4 min"``, ``"2.5 h"``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _describe_passes(work: Work, cost: ModelCost) -> str:
    parts = []
    gradient = work.gradient + work.layer
    if gradient:
        parts.append(f"{gradient:,} gradient pass{'es' if gradient != 1 else ''} at about "
                     f"{1000 * cost.pass_seconds('gradient'):.0f} ms each")
    if work.forward:
        parts.append(f"{work.forward:,} forward pass{'es' if work.forward != 1 else ''} at "
                     f"about {1000 * cost.pass_seconds('forward'):.0f} ms each")
    return " and ".join(parts)


def estimate_work(work: Work, cost: ModelCost, batch: int) -> Estimate:
    """The :class:`~saliency_core.safety.jobs.Estimate` of ``work`` for the queue."""
    return Estimate(seconds=cost.seconds(work, batch), peak_bytes=cost.peak_bytes(work, batch))


def check_work(label: str, work: Work, cost: ModelCost, batch: int, limits: Limits,
               advice: list[str] | None = None) -> Estimate:
    """The estimate of ``work``, or :class:`OverBudgetError` if it is above the budget.

    Args:
        label: what is computed, for the message (``"SmoothGrad"``).
        work: the passes it makes.
        cost: the model's measured cost.
        batch: images per call.
        limits: the limits in force (``max_job_seconds``, ``job_memory_bytes``).
        advice: what to change, added to the message when it is refused.
    """
    estimate = estimate_work(work, cost, batch)
    problems = []
    if estimate.seconds > limits.max_job_seconds:
        problems.append(
            f"{label} would take about {format_seconds(estimate.seconds)} on this server "
            f"({_describe_passes(work, cost)}); the limit is "
            f"{format_seconds(limits.max_job_seconds)} per map or check.")
    if estimate.peak_bytes > limits.job_memory_bytes:
        problems.append(
            f"{label} would need about {format_bytes(estimate.peak_bytes)} of memory at once; "
            f"the limit is {format_bytes(limits.job_memory_bytes)}.")
    if problems:
        hint = (" To fit, change one setting: " + "; or ".join(advice) + "."
                if advice else "")
        raise OverBudgetError(" ".join(problems) + hint)
    return estimate


def _candidates(param: Param) -> list:
    if param.options:
        return list(param.options)
    if param.minimum is None or param.maximum is None or not param.step:
        return []
    kind = int if isinstance(param.default, int) and not isinstance(param.default, bool) \
        else float
    count = int(round((param.maximum - param.minimum) / param.step))
    if count > 2000:
        return []
    return [kind(round(param.minimum + i * param.step, 10)) for i in range(count + 1)]


def advise(method: type[SaliencyMethod], params: Mapping[str, Any],
           input_size: tuple[int, int], cost: ModelCost, batch: int, limits: Limits
           ) -> list[str]:
    """For each parameter, the nearest allowed value that brings ``method`` within budget.

    Returns:
        Phrases such as ``"Samples at most 18"``, ``"Stride (pixels) at least 8"`` or
        ``"Target completeness gap: Off…"``; empty when no single change fits.
    """
    def fits(values: Mapping[str, Any]) -> bool:
        try:
            work = method(**values).work(input_size)
        except (TypeError, ValueError):
            return False
        estimate = estimate_work(work, cost, batch)
        return (estimate.seconds <= limits.max_job_seconds
                and estimate.peak_bytes <= limits.job_memory_bytes)

    hints = []
    for param in method.params:
        if param.name not in params:
            continue
        options = _candidates(param)
        current = params[param.name]
        if current not in options:
            continue
        here = options.index(current)
        fitting = [i for i, value in enumerate(options)
                   if fits({**params, param.name: value})]
        if not fitting:
            continue
        best = min(fitting, key=lambda i: (abs(i - here), i))
        value = options[best]
        label = param.label
        if param.options:
            hints.append(f"{label}: {param.labels.get(value, value)}")
        elif best < here:
            hints.append(f"{label} at most {value:g}")
        else:
            hints.append(f"{label} at least {value:g}")
    return hints


def check_method(method: type[SaliencyMethod], params: Mapping[str, Any],
                 input_size: tuple[int, int], cost: ModelCost, batch: int, limits: Limits,
                 label: str | None = None, repeats: int = 1) -> Estimate:
    """:func:`check_work` for ``repeats`` maps of ``method`` with ``params``, with advice.

    Raises:
        OverBudgetError: above the budget; the message names the settings that would fit.
    """
    work = method(**params).work(input_size) * repeats
    try:
        return check_work(label or method.label, work, cost, batch, limits)
    except OverBudgetError:
        advice = advise(method, params, input_size, cost, batch, limits) if repeats == 1 \
            else []
        return check_work(label or method.label, work, cost, batch, limits, advice)
