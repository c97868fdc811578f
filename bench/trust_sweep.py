"""Time the cascading randomisation sweep (Adebayo et al. 2018, arXiv 1810.03292).

Vanilla gradient, the default model (EfficientNet-Lite0), the cat sample, its top-1
class, the default number of random draws. Prints the one-off cost of the model copy,
the sweep's time and the retraces it caused. Target on the 2-core CI-sized machine:
under 60 s. Run from the repository root: ``python bench/trust_sweep.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    """Load the default model, build the randomiser once, time the sweep."""
    start = time.perf_counter()
    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.methods import Target
    from saliency_core.pipeline import load_classifier, predict
    from saliency_core.samples import read_sample
    from saliency_core.trust import ModelRandomizer, make_method_explainer, run_randomization

    classifier, _ = load_classifier("efficientnet_lite0")
    model_input, _ = fit_to_model(load_image(read_sample("chelsea")).pixels,
                                  classifier.input_size, "crop")
    top = predict(classifier, model_input)[0]
    print(f"import + load model: {time.perf_counter() - start:.2f} s "
          f"(top-1: {top.name}, {top.probability:.2f})")

    start = time.perf_counter()
    randomizer = ModelRandomizer(classifier, "efficientnet_lite0")
    print(f"model copy (once per model): {time.perf_counter() - start:.2f} s, "
          f"{len(randomizer.blocks)} blocks: {', '.join(b.name for b in randomizer.blocks)}")

    explain = make_method_explainer("vanilla")
    for run in ("first (traces the copy's graph)", "second (warm)"):
        start = time.perf_counter()
        result = run_randomization(randomizer, explain, model_input, Target(top.index),
                                   "cascading")
        print(f"cascading sweep, {run}: {time.perf_counter() - start:.2f} s, "
              f"retraces during the steps: {result.retraces}")
    print(f"Spearman per step, mean of {result.draws} draws: "
          + " ".join(f"{v:.2f}" for v in result.spearman.mean(axis=0)))
    print(f"verdict: {result.verdict.text}")


if __name__ == "__main__":
    main()
