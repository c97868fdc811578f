"""The model passes each trust check makes, for the work budget.

A check repeats a method's map (randomisation, random classes) or scores many
perturbed images (deletion and insertion), so its cost is a multiple of a map's
:class:`~saliency_core.methods.base.Work` plus forward passes. The page checks
these counts against the model's measured cost *before* a check runs
(:mod:`saliency_core.safety.budget`), so an own model with a slow pass, or a
sampling method with many samples, is refused with its estimate instead of
holding a server slot for minutes. Counts may overcount, never undercount.
"""

from __future__ import annotations

from saliency_core.methods.base import Work
from saliency_core.trust.controls import RANDOM_CLASSES
from saliency_core.trust.faithfulness import RANDOM_ORDERS, STEPS


def count_randomization_work(map_work: Work, blocks: int, draws: int) -> Work:
    """The original map, then one map per block and draw
    (:func:`~saliency_core.trust.randomization.run_randomization`)."""
    return map_work * (1 + int(draws) * int(blocks))


def count_random_class_work(map_work: Work, count: int = RANDOM_CLASSES) -> Work:
    """One map per random class (:func:`~saliency_core.trust.controls.check_random_classes`;
    the target's map is the one already shown)."""
    return map_work * int(count)


def count_scoring_work(map_orders: int, random_orders: int, steps: int = STEPS) -> Work:
    """Forward passes that score deletion and insertion curves: the original and the
    blurred image, ``2 steps`` images per map order and ``steps`` per random order (an
    upper bound of :func:`~saliency_core.trust.faithfulness.count_images`, which is
    exact when ``steps`` divides the pixels evenly)."""
    return Work(forward=2 + 2 * steps * int(map_orders) + steps * int(random_orders))


def count_faithfulness_work(random_orders: int = RANDOM_ORDERS, steps: int = STEPS) -> Work:
    """The map's order and ``random_orders`` random ones
    (:func:`~saliency_core.trust.faithfulness.run_faithfulness`; the map is given)."""
    return count_scoring_work(1, random_orders, steps)


def count_comparison_work(map_works: dict[str, Work], random_known: bool,
                          random_orders: int = RANDOM_ORDERS, steps: int = STEPS
                          ) -> dict[str, Work]:
    """Each part of :func:`~saliency_core.trust.faithfulness.compare_methods`: the random
    orders (nothing when they are reused) and, per method, its map and its two curves."""
    parts = {"random orders": Work() if random_known
             else count_scoring_work(0, random_orders, steps)}
    for key, work in map_works.items():
        parts[key] = work + count_scoring_work(1, 0, steps)
    return parts
