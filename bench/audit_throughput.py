"""Images per second of ``python -m saliency_core explain`` and its peak memory for 500 images.

Default model (EfficientNet-Lite0), vanilla gradient, batch size 1 against 16.
Images are generated (smooth random colour fields, 640×480 JPEG), so nothing
needs downloading. Each measurement runs in its own process; throughput is
timed after a warm-up run (TensorFlow import, model load and tracing excluded),
peak RSS is the whole process's. Prints a Markdown table.

    python bench/audit_throughput.py [--images 500] [--timed 96]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time
from saliency_core.__main__ import main
folder, warm, out, batch = sys.argv[1:5]
main(["explain", warm, "--out", out + "-warm", "--batch-size", batch])
start = time.perf_counter()
code = main(["explain", folder, "--out", out, "--batch-size", batch])
seconds = time.perf_counter() - start
print(json.dumps({"code": code, "seconds": seconds}))
"""


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` 640×480 JPEGs of smooth random colour fields."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC).save(
            folder / f"img{i:04d}.jpg", quality=90)


def child_env() -> dict:
    return dict(os.environ, SALIENCY_STUDIO_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=str(ROOT))


def throughput(folder: Path, warm: Path, out: Path, batch: int, count: int) -> float:
    """Images per second of the CLI on ``folder`` after a warm-up run."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(warm), str(out),
                           str(batch)], cwd=ROOT, env=child_env(), capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return count / result["seconds"]


def peak_rss_mb(folder: Path, out: Path, batch: int) -> tuple[float, float]:
    """``(peak RSS in MB, wall seconds)`` of one whole CLI process on ``folder``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saliency_core", "explain", str(folder), "--out",
                    str(out), "--batch-size", str(batch)], cwd=ROOT, env=child_env(),
                   capture_output=True, check=True)
    seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="images for the RSS run")
    parser.add_argument("--timed", type=int, default=96, help="images per throughput run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        make_images(tmp_path / "all", args.images)
        make_images(tmp_path / "timed", args.timed, seed=1)
        make_images(tmp_path / "warm", 16, seed=2)
        # first, so that RUSAGE_CHILDREN's maximum is this process's
        rss, seconds = peak_rss_mb(tmp_path / "all", tmp_path / "out-all", 16)
        rates = {batch: throughput(tmp_path / "timed", tmp_path / "warm",
                                   tmp_path / f"out{batch}", batch, args.timed)
                 for batch in (1, 16)}
    print(f"| batch size | images/s (vanilla, EfficientNet-Lite0, {args.timed} images) |")
    print("| --- | --- |")
    for batch, rate in rates.items():
        print(f"| {batch} | {rate:.1f} |")
    print()
    print(f"{args.images} images, batch 16, whole process: peak RSS {rss:.0f} MB, "
          f"{seconds:.0f} s wall time (incl. start-up).")


if __name__ == "__main__":
    main()
