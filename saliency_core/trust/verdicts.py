"""Plain-words verdicts: what a check compared, the numbers and their spread, the rule, and
whether the map passes, fails or the check is undecided.

Checks built on random draws (randomised weights, random classes, random pixel
orders) use several draws, and every verdict says how many and how far they
spread. A check is **undecided** when the draws fall on both sides of its
threshold: one more lucky or unlucky draw would flip it, so the page says so
instead of picking a side. Each verdict carries its rule in plain words.

A passed check is **necessary, not sufficient**: a map that fails one does not
explain the model (Adebayo et al. 2018, arXiv 1810.03292), but a map that
passes every check can still be wrong in ways no check here measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

SIMILAR_SPEARMAN = 0.5
"""At or above this Spearman correlation two maps count as "nearly the same ranking"."""

UNCHANGED_SPEARMAN = 0.9
"""At or above this, a map counts as "almost unchanged": the cascading check fails a map
that stays this close to the original once only the top block is random (Adebayo et
al. 2018 found Guided Backpropagation unchanged by randomising the top layers)."""

BEAT_SHARE = 0.95
"""Deletion and insertion pass when the map beats at least this share of random orders."""

NECESSARY_NOT_SUFFICIENT = ("Passing is necessary, not sufficient: a map that fails does not "
                            "explain the model, but a map that passes can still mislead.")

BARELY_DEPENDS = "this map looks convincing, but it barely depends on the model"

Outcome = Literal["passes", "fails", "undecided"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check.

    Attributes:
        check: short name, e.g. ``"cascading randomisation"``.
        outcome: ``"passes"``, ``"fails"`` or ``"undecided"``.
        metric: what ``value`` is, e.g. ``"Spearman"``.
        value: the number the verdict rests on (a mean over draws, or a count).
        text: one plain sentence ending in ``": passes"``, ``": fails"`` or
            ``": undecided"``.
        rule: the rule that decided it, in plain words.
        spread: ``(lowest, highest)`` over the draws, if the check has draws.
    """

    check: str
    outcome: Outcome
    metric: str
    value: float
    text: str
    rule: str = ""
    spread: tuple[float, float] | None = None

    @property
    def passed(self) -> bool:
        """Whether the map passed (an undecided check has not)."""
        return self.outcome == "passes"

    @property
    def undecided(self) -> bool:
        """Whether the draws fell on both sides of the threshold."""
        return self.outcome == "undecided"

    @property
    def word(self) -> str:
        """``"passes"``, ``"fails"`` or ``"undecided"``."""
        return self.outcome


def describe_draws(values: Sequence[float], noun: str = "draws") -> str:
    """``"0.05 ± 0.08 over 5 draws, from −0.04 to 0.16"``: mean, standard deviation, range
    (draws that agree to two decimals are said so instead).

    One value is written alone. The standard deviation is the draws' own
    (``ddof = 1``), the usual estimate of how far one more draw may fall.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 1:
        return f"{v[0]:.2f} (1 {noun.rstrip('s')})"
    if f"{v.min():.2f}" == f"{v.max():.2f}":
        return f"{v.mean():.2f} over {v.size} {noun}, all equal to two decimals"
    return (f"{v.mean():.2f} ± {v.std(ddof=1):.2f} over {v.size} {noun}, "
            f"from {v.min():.2f} to {v.max():.2f}")


def _side(values: np.ndarray, threshold: float) -> str:
    """``"below"`` if every value is below ``threshold``, ``"above"`` if every one is at
    or above it, ``"both"`` when the spread crosses it."""
    if np.all(values < threshold):
        return "below"
    if np.all(values >= threshold):
        return "above"
    return "both"


def _spread(values: np.ndarray) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))


def _block_word(block: str) -> str:
    return block if block in ("head", "classifier", "stem") else f"block “{block}”"


def judge_randomization(spearman: np.ndarray, mode: str, blocks: Sequence[str]) -> Verdict:
    """Verdict of a model-randomisation check over several draws.

    Args:
        spearman: ``(R, S)`` Spearman of |map| to the original, per draw and step.
        mode: ``"cascading"`` or ``"independent"``.
        blocks: the block randomised at each step, output first (``S`` names).

    Cascading rule: fails when the map stays almost unchanged (Spearman at or above
    :data:`UNCHANGED_SPEARMAN` in every draw) once only the top block is random, or
    nearly the same (at or above :data:`SIMILAR_SPEARMAN` in every draw) once every
    block is; passes when every draw ends below :data:`SIMILAR_SPEARMAN`; undecided
    otherwise. Independent rule: each block counts as changing the map when every
    draw with it randomised alone is below :data:`SIMILAR_SPEARMAN`; passes when
    every block does, fails when fewer than half do, undecided otherwise.
    """
    values = np.atleast_2d(np.asarray(spearman, dtype=np.float64))
    draws, steps = values.shape
    noun = "draws" if draws > 1 else "draw"
    if mode == "cascading":
        return _judge_cascading(values, blocks, noun)
    if mode != "independent":
        raise ValueError(f"mode must be 'cascading' or 'independent', not {mode!r}")
    sides = [_side(values[:, s], SIMILAR_SPEARMAN) for s in range(steps)]
    changed = sum(side == "below" for side in sides)
    kept = [blocks[s] for s in range(steps) if sides[s] != "below"]
    mean = values.mean(axis=0)
    rule = (f"Rule: a block changes the map when every draw with that block randomised alone "
            f"gives a Spearman below {SIMILAR_SPEARMAN}. Passes when all {steps} blocks do; "
            "fails when fewer than half do; undecided otherwise.")
    counted = (f"randomising one block at a time changes the map for {changed} of {steps} "
               f"blocks ({draws} {noun} each; mean Spearman per block from "
               f"{mean.min():.2f} to {mean.max():.2f})")
    named = f"{', '.join(kept[:4])}{', …' if len(kept) > 4 else ''}"
    if changed == steps:
        outcome, text = "passes", f"{counted}: passes"
    elif 2 * changed < steps:
        outcome = "fails"
        text = (f"{counted}; randomising {named} leaves it nearly the same, so the map does "
                "not depend on what most blocks learnt: fails")
    else:
        outcome = "undecided"
        text = f"{counted}; not for {named}: undecided"
    return Verdict("independent randomisation", outcome, "blocks changed", float(changed),
                   text, rule, _spread(values))


def _judge_cascading(values: np.ndarray, blocks: Sequence[str], noun: str) -> Verdict:
    draws, steps = values.shape
    first, last = values[:, 0], values[:, -1]
    rule = (f"Rule: fails when the map stays almost unchanged (Spearman {UNCHANGED_SPEARMAN} "
            f"or more in every draw) once only the top block is random, or nearly the same "
            f"({SIMILAR_SPEARMAN} or more in every draw) once all {steps} blocks are; passes "
            f"when every draw ends below {SIMILAR_SPEARMAN}; undecided otherwise.")
    if _side(first, UNCHANGED_SPEARMAN) == "above":
        unchanged = 0
        while unchanged < steps and np.all(values[:, unchanged] >= UNCHANGED_SPEARMAN):
            unchanged += 1
        until = ("even once every block is random" if unchanged == steps else
                 f"until {unchanged + 1} of {steps} blocks are random")
        text = (f"the map stays almost the same when the model's top ({_block_word(blocks[0])}) "
                f"is randomised (Spearman {describe_draws(first, noun)}), {until}: "
                f"{BARELY_DEPENDS}: fails")
        return Verdict("cascading randomisation", "fails", "Spearman", float(first.mean()),
                       text, rule, _spread(first))
    where = f"once all {steps} blocks are random"
    number = f"Spearman {describe_draws(last, noun)}"
    side = _side(last, SIMILAR_SPEARMAN)
    if side == "below":
        outcome = "passes"
        text = (f"the map changes when the model is randomised ({number} {where}, every "
                f"draw below {SIMILAR_SPEARMAN}): passes")
    elif side == "above":
        outcome = "fails"
        text = (f"the map stays nearly the same when the model is randomised ({number} "
                f"{where}), so it does not depend on what the model learnt: fails")
    else:
        outcome = "undecided"
        text = (f"{where}, the draws fall on both sides of {SIMILAR_SPEARMAN} ({number}): "
                "undecided; more draws may settle it")
    return Verdict("cascading randomisation", outcome, "Spearman", float(last.mean()), text,
                   rule, _spread(last))


def judge_random_classes(spearman: Sequence[float]) -> Verdict:
    """Verdict of the random-class check from the Spearman of each other class's map.

    Rule: passes when every other class's map differs (Spearman below
    :data:`SIMILAR_SPEARMAN`), fails when every one is nearly the same, undecided
    when they fall on both sides.
    """
    values = np.asarray(spearman, dtype=np.float64).ravel()
    n = values.size
    number = f"Spearman {describe_draws(values, 'classes')}"
    rule = (f"Rule: passes when the map of every one of the {n} random classes differs "
            f"(Spearman below {SIMILAR_SPEARMAN}); fails when all are nearly the same; "
            "undecided when some are and some are not.")
    side = _side(values, SIMILAR_SPEARMAN)
    if side == "below":
        outcome = "passes"
        text = f"the map differs from the maps of {n} random other classes ({number}): passes"
    elif side == "above":
        outcome = "fails"
        text = (f"the map is nearly the same for {n} random other classes ({number}), so it "
                "does not explain this class: fails")
    else:
        similar = int(np.sum(values >= SIMILAR_SPEARMAN))
        outcome = "undecided"
        text = (f"the map is nearly the same for {similar} of {n} random other classes and "
                f"differs for the rest ({number}): undecided")
    return Verdict("random classes", outcome, "Spearman", float(values.mean()), text, rule,
                   _spread(values))


def judge_edges(spearman: float) -> Verdict:
    """Verdict of the edge-detector control from the Spearman with a Sobel edge map.

    No random draw is involved (the edge map is fixed), so it is never undecided.
    """
    passed = spearman < SIMILAR_SPEARMAN
    number = f"(Spearman {spearman:.2f})"
    text = (f"the map is not just an edge map of the image {number}: passes" if passed else
            f"the map looks much like an edge map of the image {number}, which needs no "
            "model: fails")
    rule = f"Rule: passes when the Spearman with the Sobel edge map is below {SIMILAR_SPEARMAN}."
    return Verdict("edge detector", "passes" if passed else "fails", "Spearman", spearman, text,
                   rule)


def _judge_order(kind: str, auc: float, random_aucs: np.ndarray) -> Verdict:
    lower_is_better = kind == "deletion"
    random_aucs = np.asarray(random_aucs, dtype=np.float64).ravel()
    n = random_aucs.size
    beaten = int(np.sum(auc < random_aucs) if lower_is_better else np.sum(auc > random_aucs))
    needed = int(np.ceil(BEAT_SHARE * n))
    verb = ("removing the map's top pixels first lowers the probability faster"
            if lower_is_better else
            "revealing the map's top pixels first raises the probability faster")
    rule = (f"Rule: passes when the map's order beats at least {needed} of the {n} random "
            f"orders ({BEAT_SHARE:.0%}); fails when it beats half of them or fewer, no better "
            "than a typical random order; undecided between.")
    numbers = (f"AUC {auc:.3f} against {random_aucs.mean():.3f} ± "
               f"{random_aucs.std(ddof=1) if n > 1 else 0.0:.3f} for the random orders")
    if beaten >= needed:
        outcome = "passes"
    elif 2 * beaten <= n:
        outcome = "fails"
    else:
        outcome = "undecided"
    text = f"{verb} than {beaten} of {n} random orders ({numbers}): {outcome}"
    return Verdict(kind, outcome, "random orders beaten", float(beaten), text, rule,
                   _spread(random_aucs))


def judge_deletion(auc: float, random_aucs: Sequence[float]) -> Verdict:
    """Deletion: does removing the map's top pixels first lower the score faster than
    random orders? Counts the random orders with a larger AUC (see :data:`BEAT_SHARE`)."""
    return _judge_order("deletion", auc, np.asarray(random_aucs))


def judge_insertion(auc: float, random_aucs: Sequence[float]) -> Verdict:
    """Insertion: does revealing the map's top pixels first raise the score faster than
    random orders? Counts the random orders with a smaller AUC."""
    return _judge_order("insertion", auc, np.asarray(random_aucs))
