"""Plain-words verdicts: what a check found, the number it rests on, passes or fails.

A passed check is **necessary, not sufficient**: a map that fails one does not
explain the model (Adebayo et al. 2018, arXiv 1810.03292), but a map that
passes every check can still be wrong in ways no check here measures.
"""

from __future__ import annotations

from dataclasses import dataclass

SIMILAR_SPEARMAN = 0.5
"""At or above this Spearman correlation two maps count as "nearly the same ranking"."""

NECESSARY_NOT_SUFFICIENT = ("Passing is necessary, not sufficient: a map that fails does not "
                            "explain the model, but a map that passes can still mislead.")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check.

    Attributes:
        check: short name, e.g. ``"cascading randomisation"``.
        passed: whether the map passed.
        metric: what ``value`` is, e.g. ``"Spearman"``.
        value: the number the verdict rests on.
        text: one plain sentence ending in ``": passes"`` or ``": fails"``.
    """

    check: str
    passed: bool
    metric: str
    value: float
    text: str

    @property
    def word(self) -> str:
        """``"passes"`` or ``"fails"``."""
        return "passes" if self.passed else "fails"


def _ending(passed: bool) -> str:
    return "passes" if passed else "fails"


def judge_randomization(spearman_after: float, mode: str, block: str | None = None
                        ) -> Verdict:
    """Verdict of a model-randomisation check.

    Args:
        spearman_after: cascading: the Spearman similarity once every block is
            randomised; independent: the lowest similarity over single blocks.
        mode: ``"cascading"`` or ``"independent"``.
        block: independent mode: the block whose randomisation changed the map most.
    """
    passed = spearman_after < SIMILAR_SPEARMAN
    number = f"(Spearman {spearman_after:.2f})"
    if mode == "cascading":
        text = (f"the map changes when the model is randomised {number}: passes" if passed else
                f"the map stays nearly the same when the model is randomised {number}, so it "
                "does not depend on what the model learnt: fails")
    else:
        where = f" (most at {block})" if block else ""
        text = (f"randomising single blocks changes the map{where} {number}: passes" if passed
                else f"randomising any single block leaves the map nearly the same{where} "
                f"{number}: fails")
    return Verdict(f"{mode} randomisation", passed, "Spearman", spearman_after, text)


def judge_random_classes(mean_spearman: float) -> Verdict:
    """Verdict of the random-class check from the mean Spearman over other classes."""
    passed = mean_spearman < SIMILAR_SPEARMAN
    number = f"(mean Spearman {mean_spearman:.2f})"
    text = (f"the map differs from the maps of other classes {number}: passes" if passed else
            f"the map is nearly the same for other classes {number}, so it does not explain "
            "this class: fails")
    return Verdict("random classes", passed, "Spearman", mean_spearman, text)


def judge_edges(spearman: float) -> Verdict:
    """Verdict of the edge-detector control from the Spearman with a Sobel edge map."""
    passed = spearman < SIMILAR_SPEARMAN
    number = f"(Spearman {spearman:.2f})"
    text = (f"the map is not just an edge map of the image {number}: passes" if passed else
            f"the map looks much like an edge map of the image {number}, which needs no "
            "model: fails")
    return Verdict("edge detector", passed, "Spearman", spearman, text)


def judge_deletion(auc: float, random_auc: float) -> Verdict:
    """Deletion passes when removing the map's pixels first lowers the score faster."""
    passed = auc < random_auc
    text = (f"removing the map's top pixels first lowers the probability "
            f"{'faster' if passed else 'no faster'} than a random order "
            f"(AUC {auc:.3f} vs {random_auc:.3f}): {_ending(passed)}")
    return Verdict("deletion", passed, "AUC", auc, text)


def judge_insertion(auc: float, random_auc: float) -> Verdict:
    """Insertion passes when revealing the map's pixels first raises the score faster."""
    passed = auc > random_auc
    text = (f"revealing the map's top pixels first raises the probability "
            f"{'faster' if passed else 'no faster'} than a random order "
            f"(AUC {auc:.3f} vs {random_auc:.3f}): {_ending(passed)}")
    return Verdict("insertion", passed, "AUC", auc, text)
