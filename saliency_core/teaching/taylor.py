"""Test the first-order Taylor approximation behind the gradient map, live.

Simonyan et al. 2013 (arXiv 1312.6034, sec. 3.1) write the class score near an
image ``I0`` as ``S_c(I) ~ w^T I + b`` with ``w = dS_c/dI`` at ``I0``, and read
``|w|`` as which pixels need to change least to change the score most. Both
claims can be checked on a real model:

* nudge ``k`` pixels by ``eps`` grey levels along ``sign(w)`` (all three colour
  channels of each pixel), so the predicted change is
  ``w . dI = eps * sum |w|`` over the nudged values;
* score the nudged images and compare with the actual change ``S_c(I0 + dI) - S_c(I0)``;
* do it for the ``k`` most salient pixels, ``k`` random ones and the ``k`` least
  salient: if the map ranks pixels by their effect, the most salient move the
  score most.

Pixels stay in ``[0, 255]``: a nudge that would leave that range is cut there,
and the prediction uses the nudge actually applied. Every nudged image of a
test goes through the model in one batched call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saliency_core.methods.base import GradientModel, Target

NOISE_RELATIVE = 1e-4
"""Score changes below this fraction of ``max(1, |S_c|)`` count as float32 rounding."""

SELECTIONS: dict[str, str] = {
    "most": "most salient",
    "random": "random",
    "least": "least salient",
}
"""The pixel selections compared, in the order they are drawn."""


@dataclass(frozen=True)
class TaylorCurve:
    """Predicted and actual score changes of one pixel selection.

    Attributes:
        selection: a key of :data:`SELECTIONS`.
        predicted: ``(E,)`` the linear prediction ``w . dI`` per ``eps``.
        actual: ``(E,)`` ``S_c(I0 + dI) - S_c(I0)`` per ``eps``.
        spread: ``(E,)`` the standard deviation of ``actual`` over the random
            draws (zeros for a fixed selection).
    """

    selection: str
    predicted: np.ndarray
    actual: np.ndarray
    spread: np.ndarray

    def relative_error(self) -> np.ndarray:
        """``|actual - predicted| / |predicted|`` per ``eps`` (inf where nothing is predicted)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            error = np.abs(self.actual - self.predicted) / np.abs(self.predicted)
        return np.where(np.abs(self.predicted) > 0, error, np.inf)


@dataclass(frozen=True)
class TaylorTest:
    """The result of :func:`run_taylor_test`.

    Attributes:
        k: pixels nudged per image.
        epsilons: ``(E,)`` nudge sizes in grey levels (0-255 scale), ascending.
        base_score: ``S_c(I0)``.
        curves: selection key -> :class:`TaylorCurve`.
        pixels: selection key -> ``(k,)`` flat indices of the nudged pixels
            (for ``"random"``, the first draw).
        tolerance: the relative error up to which the approximation "holds".
        images_scored: how many images went through the model (one batch).
    """

    k: int
    epsilons: np.ndarray
    base_score: float
    curves: dict[str, TaylorCurve]
    pixels: dict[str, np.ndarray]
    tolerance: float
    images_scored: int

    @property
    def noise_floor(self) -> float:
        """The smallest score change that is more than float32 rounding.

        A model computes in float32 (about 7 significant digits), and rounding in
        its many layers moves the score by roughly ``1e-6 * |S_c|`` even when the
        image does not change; changes below ``NOISE_RELATIVE * max(1, |S_c|)``
        are left out of every verdict.
        """
        return NOISE_RELATIVE * max(1.0, abs(self.base_score))

    def measurable(self, selection: str = "most") -> np.ndarray:
        """``(E,)`` bool: the predicted change is above :attr:`noise_floor`."""
        return np.abs(self.curves[selection].predicted) >= self.noise_floor

    def holds_up_to(self, selection: str = "most") -> float | None:
        """The largest ``eps`` up to which every measurable prediction is within the tolerance.

        Returns:
            That ``eps``, or None if no prediction is measurable or the first
            measurable one already misses.
        """
        measurable = self.measurable(selection)
        if not measurable.any():
            return None
        good = self.curves[selection].relative_error() <= self.tolerance
        first = int(np.flatnonzero(measurable)[0])
        bad = np.flatnonzero(~good & measurable)
        if len(bad) and bad[0] == first:
            return None
        last = len(good) - 1 if len(bad) == 0 else int(bad[0]) - 1
        return float(self.epsilons[last])

    def breaks_at(self, selection: str = "most") -> float | None:
        """The smallest ``eps`` whose measurable prediction misses by more than the
        tolerance, or None."""
        bad = np.flatnonzero((self.curves[selection].relative_error() > self.tolerance)
                             & self.measurable(selection))
        return float(self.epsilons[bad[0]]) if len(bad) else None


def make_epsilons(low: float, high: float) -> np.ndarray:
    """Nudge sizes from ``low`` to ``high``: both ends and the round 1-2-5 values between.

    E.g. ``(0.01, 10)`` gives 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10: evenly
    spread on a log axis, and easy to read out in class.
    """
    if not 0 < low < high:
        raise ValueError("need 0 < low < high")
    values = {float(low), float(high)}
    for exponent in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1):
        for mantissa in (1, 2, 5):
            value = float(f"{mantissa}e{exponent}")
            if low < value < high:
                values.add(value)
    return np.array(sorted(values), dtype=np.float64)


def select_pixels(saliency: np.ndarray, k: int, how: str,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Pick ``k`` pixels of a map ``(H, W)`` as flat indices.

    Args:
        saliency: ``(H, W)`` map, e.g. ``max_c |w_c|``.
        k: how many, ``1 <= k <= H * W``.
        how: ``"most"`` (largest values), ``"least"`` (smallest) or ``"random"``.
        rng: the generator for ``"random"``.

    Returns:
        ``(k,)`` int64 flat indices into ``(H, W)``, distinct.
    """
    flat = np.asarray(saliency, dtype=np.float64).reshape(-1)
    if not 1 <= k <= flat.size:
        raise ValueError(f"k must be between 1 and {flat.size}, not {k}")
    if how == "most":
        return np.argsort(-flat, kind="stable")[:k].astype(np.int64)
    if how == "least":
        return np.argsort(flat, kind="stable")[:k].astype(np.int64)
    if how == "random":
        rng = rng if rng is not None else np.random.default_rng(0)
        return np.sort(rng.choice(flat.size, size=k, replace=False)).astype(np.int64)
    raise ValueError(f"unknown selection {how!r}; known: {', '.join(SELECTIONS)}")


def nudge_pixels(image: np.ndarray, gradient: np.ndarray, pixels: np.ndarray,
                 epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Move the chosen pixels by ``epsilon`` along ``sign(gradient)``, kept in ``[0, 255]``.

    Args:
        image: ``(H, W, 3)`` 0-255.
        gradient: ``(H, W, 3)`` ``w = dS_c/dI``.
        pixels: flat indices into ``(H, W)``; all channels of each are nudged.
        epsilon: grey levels.

    Returns:
        ``(nudged, delta)``, both ``(H, W, 3)`` float32; ``delta = nudged - image``
        is the nudge actually applied.
    """
    base = np.asarray(image, dtype=np.float32)
    height, width, channels = base.shape
    step = np.zeros((height * width, channels), np.float32)
    step[pixels] = epsilon * np.sign(np.asarray(gradient, np.float32).reshape(-1, channels)[pixels])
    nudged = np.clip(base + step.reshape(base.shape), 0.0, 255.0)
    return nudged, nudged - base


def run_taylor_test(model: GradientModel, image: np.ndarray, gradient: np.ndarray,
                    saliency: np.ndarray, target: Target, k: int, epsilons: np.ndarray,
                    random_draws: int = 3, seed: int = 0,
                    tolerance: float = 0.10) -> TaylorTest:
    """Compare ``w . dI`` with the actual score change for three pixel selections.

    Args:
        model: scores images ``(B, H, W, 3)`` for ``target``.
        image: ``(H, W, 3)`` 0-255, the image ``I0`` the gradient was taken at.
        gradient: ``(H, W, 3)`` ``w = dS_c/dI`` at ``I0`` for ``target``.
        saliency: ``(H, W)`` the map that ranks pixels (``max_c |w_c|``).
        target: the class score ``S_c``.
        k: pixels nudged per image.
        epsilons: ``(E,)`` positive nudge sizes in grey levels, ascending.
        random_draws: how many random selections to average.
        seed: seeds the random selections.
        tolerance: relative error up to which the prediction counts as holding.

    Returns:
        The :class:`TaylorTest`; ``1 + E * (2 + random_draws)`` images were scored
        in one call.
    """
    epsilons = np.asarray(epsilons, dtype=np.float64)
    if epsilons.ndim != 1 or len(epsilons) == 0 or np.any(epsilons <= 0) \
            or np.any(np.diff(epsilons) <= 0):
        raise ValueError("epsilons must be positive and ascending")
    if random_draws < 1:
        raise ValueError("need at least one random draw")
    base = np.asarray(image, dtype=np.float32)
    grad = np.asarray(gradient, dtype=np.float32)
    if grad.shape != base.shape or np.shape(saliency) != base.shape[:2]:
        raise ValueError("image (H, W, 3), gradient (H, W, 3) and map (H, W) must match")
    rng = np.random.default_rng(seed)
    draws = {"most": [select_pixels(saliency, k, "most")],
             "random": [select_pixels(saliency, k, "random", rng) for _ in range(random_draws)],
             "least": [select_pixels(saliency, k, "least")]}
    batch = [base]
    predicted: dict[str, list[list[float]]] = {key: [] for key in draws}
    for key, selections in draws.items():
        for pixels in selections:
            row = []
            for epsilon in epsilons:
                nudged, delta = nudge_pixels(base, grad, pixels, float(epsilon))
                batch.append(nudged)
                row.append(float(np.sum(grad.astype(np.float64) * delta)))
            predicted[key].append(row)
    scores = np.asarray(model.scores(np.stack(batch), target), dtype=np.float64)
    base_score = float(scores[0])
    changes = scores[1:] - base_score
    curves, start = {}, 0
    for key in draws:  # the order the batch was built in
        n = len(draws[key])
        actual = changes[start:start + n * len(epsilons)].reshape(n, len(epsilons))
        start += n * len(epsilons)
        curves[key] = TaylorCurve(key, np.mean(predicted[key], axis=0), actual.mean(axis=0),
                                  actual.std(axis=0))
    return TaylorTest(k=k, epsilons=epsilons, base_score=base_score, curves=curves,
                      pixels={key: draws[key][0] for key in SELECTIONS},
                      tolerance=tolerance, images_scored=len(batch))
