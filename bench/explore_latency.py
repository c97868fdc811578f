"""Benchmark the Explore page's core steps and print a table.

Usage (from the repository root, in the project's virtual environment):

    python bench/explore_latency.py [--repeats 10]

Measures, for the default model (and MobileNetV2 when ../shared/models is present):
model build + weights (cold: a fresh cache, so EfficientNet-Lite0 converts its checkpoint; warm:
from the cache), the first prediction and map (which trace the graphs), warm predictions and maps
(median of --repeats), and the process's peak resident memory. Targets: an uploaded photo's
top-5 and map within 10 s of upload on a 2-core machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SALIENCY_STUDIO_OFFLINE"] = "1"
os.environ["SALIENCY_STUDIO_CACHE"] = tempfile.mkdtemp(prefix="saliency-bench-")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    rows: list[tuple[str, str, float]] = []
    (_, import_s) = timed(lambda: __import__("tensorflow"))
    rows.append(("import tensorflow", "-", import_s))

    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.methods import Target
    from saliency_core.pipeline import explain, load_classifier, predict
    from saliency_core.samples import read_sample

    image = load_image(read_sample("chelsea"))
    models = ["efficientnet_lite0"]
    shared = ROOT.parent / "shared" / "models" / "mobilenet_v2_1.0_224_dequant.weights.h5"
    if shared.is_file():
        os.environ["SALIENCY_WEIGHTS_MOBILENET_V2"] = str(shared)
        models.append("mobilenet_v2")
    for key in models:
        (clf, _), cold = timed(lambda key=key: load_classifier(key))
        rows.append(("load model (cold cache)", key, cold))
        _, warm = timed(lambda key=key: load_classifier(key))
        rows.append(("load model (warm cache)", key, warm))
        x, _ = fit_to_model(image.pixels, clf.input_size)
        preds, first_pred = timed(lambda clf=clf, x=x: predict(clf, x))
        rows.append(("first top-5 (traces)", key, first_pred))
        _, first_map = timed(lambda clf=clf, x=x, c=preds[0].index: explain(clf, x, Target(c)))
        rows.append(("first vanilla map (traces)", key, first_map))
        pred_times = [timed(lambda clf=clf, x=x: predict(clf, x))[1] for _ in range(args.repeats)]
        rows.append(("top-5, warm (median)", key, statistics.median(pred_times)))
        map_times = [timed(lambda clf=clf, x=x, c=preds[i % 5].index: explain(clf, x, Target(c)))[1]
                     for i in range(args.repeats)]
        rows.append(("vanilla map, warm (median, 5 classes)", key, statistics.median(map_times)))
        rows.append(("traces after all classes", key, float(clf.trace_count)))

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'model':<20} {'value':>10}")
    print("-" * (width + 33))
    for step, model, value in rows:
        unit = "" if step.startswith("traces") else " s"
        shown = f"{value:.0f}" if not unit else f"{value:.3f}{unit}"
        print(f"{step:<{width}}  {model:<20} {shown:>10}")
    print(f"{'peak RSS':<{width}}  {'-':<20} {peak_mb:>8.0f} MB")
    print(f"\n{os.cpu_count()} CPUs; {args.repeats} repeats; "
          f"image {image.pixels.shape[1]}x{image.pixels.shape[0]}")


if __name__ == "__main__":
    main()
