"""Integrated Gradients: completeness gap and time of each step placement; prints a table.

Usage (from the repository root, in the project's virtual environment):

    python bench/ig_grid.py [--models efficientnet_lite0,mobilenet_v2] [--steps 20,50]

For every bundled sample photo and each model (real weights; MobileNetV2's from
../shared/models when present), runs IG from a black baseline to the top class with
the uniform and the adaptive grid, and with a 2% target gap (uniform grid, steps
added until the gap is met). It prints each gap and time and, per model, on how
many photos each grid has the smaller gap: the evidence for the default grid.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SALIENCY_STUDIO_OFFLINE"] = "1"
_SHARED = ROOT.parent / "shared" / "models" / "mobilenet_v2_1.0_224_dequant.weights.h5"
if _SHARED.is_file():
    os.environ.setdefault("SALIENCY_WEIGHTS_MOBILENET_V2", str(_SHARED))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet_lite0,mobilenet_v2")
    parser.add_argument("--steps", default="20,50")
    args = parser.parse_args()
    import numpy as np

    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.methods import IntegratedGradients, Target
    from saliency_core.pipeline import load_classifier
    from saliency_core.samples import SAMPLES, read_sample

    print(f"{'model':<19} {'photo':<10} {'steps':>5} {'uniform gap':>12} {'time':>7} "
          f"{'adaptive gap':>13} {'time':>7} {'2% target gap':>14} {'steps':>6} {'time':>7}")
    for key in args.models.split(","):
        clf = load_classifier(key, allow_download=False)[0]
        wins = {"uniform": 0, "adaptive": 0}
        for name in SAMPLES:
            x, _ = fit_to_model(load_image(read_sample(name)).pixels, clf.input_size)
            target = Target(int(np.argmax(clf.logits(x[None])[0])))
            for steps in (int(s) for s in args.steps.split(",")):
                row = {}
                for label, kwargs in (("uniform", {"grid": "uniform"}),
                                      ("adaptive", {"grid": "adaptive"}),
                                      ("target", {"grid": "uniform", "target_gap": "2"})):
                    start = time.perf_counter()
                    info = IntegratedGradients(steps=steps, **kwargs).attribute(
                        clf, x, target).info
                    row[label] = (info["completeness gap"], time.perf_counter() - start,
                                  info["steps used"])
                wins["uniform" if row["uniform"][0] <= row["adaptive"][0] else "adaptive"] += 1
                print(f"{key:<19} {name:<10} {steps:>5} {row['uniform'][0]:>11.1%} "
                      f"{row['uniform'][1]:>6.2f}s {row['adaptive'][0]:>12.1%} "
                      f"{row['adaptive'][1]:>6.2f}s {row['target'][0]:>13.1%} "
                      f"{row['target'][2]:>6} {row['target'][1]:>6.2f}s", flush=True)
        print(f"{key}: smaller gap with uniform {wins['uniform']}, with adaptive "
              f"{wins['adaptive']} (photo x steps)", flush=True)


if __name__ == "__main__":
    main()
