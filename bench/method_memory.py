"""Peak memory and time of each attribution method, per model; prints a table.

Usage (from the repository root, in the project's virtual environment):

    python bench/method_memory.py [--models vgg16,efficientnet_lite0] [--samples 50]

Each (model, method) runs in a fresh subprocess so its peak resident memory
(``ru_maxrss``) is its own. Models are built with random weights (the weights do
not change memory or speed), so no download is needed. Target: VGG16 with 50
SmoothGrad samples well under 4 GB, thanks to the per-model batch size bound.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from saliency_core.methods import Target, get_method
from saliency_core.models.preprocessing import get_preprocessor
from saliency_core.models.registry import get_spec
from saliency_core.tf_adapter import KerasClassifier
key, method, samples = sys.argv[2], sys.argv[3], int(sys.argv[4])
spec = get_spec(key)
clf = KerasClassifier(spec.build(), get_preprocessor(spec.preprocessing), spec.class_names,
                      batch_size=spec.batch_size)
image = np.random.default_rng(0).uniform(0, 255, (*spec.input_size, 3)).astype(np.float32)
params = {"smoothgrad": {"samples": samples}, "integrated_gradients": {"steps": samples},
          "occlusion": {"patch": 32, "stride": 16}}.get(method, {})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
get_method(method, **params).attribute(clf, image, Target(1))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "model_mb": before,
                  "batch": clf.batch_size}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,efficientnet_lite0")
    parser.add_argument("--methods", default="vanilla,smoothgrad,integrated_gradients,"
                                             "gradcam,occlusion")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    print(f"{'model':<20} {'method':<22} {'batch':>5} {'time':>9} {'peak RSS':>10} "
          f"{'after build':>12}")
    for key in args.models.split(","):
        for method in args.methods.split(","):
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), key, method,
                                  str(args.samples)], capture_output=True, text=True,
                                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            if out.returncode != 0:
                print(f"{key:<20} {method:<22} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{key:<20} {method:<22} {row['batch']:>5} {row['seconds']:>7.2f} s "
                  f"{row['peak_mb']:>7.0f} MB {row['model_mb']:>9.0f} MB")
    print(f"\n{os.cpu_count()} CPUs; SmoothGrad samples / IG steps = {args.samples}")


if __name__ == "__main__":
    main()
