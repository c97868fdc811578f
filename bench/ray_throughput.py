"""Images per second of ``python -m saliency_core explain``: local engine against Ray.

Default model (EfficientNet-Lite0), vanilla gradient, batch size 16, generated
640×480 JPEGs (see ``audit_throughput.py``). Every run is the whole command in
its own process. Two figures per engine:

* wall time for all images, start-up included (importing TensorFlow, loading the
  model; for Ray also starting a local Ray and its actors, each of which imports
  TensorFlow and loads its own copy of the model);
* images per second once running: the outputs' modification times, from the end
  of the first batch to the last image (the command writes each image's files as
  its result arrives).

Prints a Markdown table and the machine's load average, which matters on a
shared machine.

    python bench/ray_throughput.py [--images 96] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_throughput import ROOT, child_env, make_images  # noqa: E402

BATCH = 16


def run(folder: Path, out: Path, engine: list[str], env: dict) -> tuple[float, float]:
    """``(wall seconds, images per second after the first batch)`` of one command."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saliency_core", "explain", str(folder), "--out",
                    str(out), "--batch-size", str(BATCH), *engine], cwd=ROOT, env=env,
                   capture_output=True, check=True)
    wall = time.perf_counter() - start
    written = sorted(path.stat().st_mtime for path in out.glob("*.npy"))
    steady = (len(written) - BATCH) / max(written[-1] - written[BATCH - 1], 1e-9)
    return wall, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96, help="images per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="Ray actor pool sizes to measure")
    args = parser.parse_args()
    if args.images <= BATCH:
        parser.error(f"--images must be more than {BATCH}")
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bray") as tmp:
        tmp_path = Path(tmp)
        env = dict(child_env(), RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(tmp_path))
        make_images(tmp_path / "images", args.images, seed=1)
        make_images(tmp_path / "warm", BATCH + 1, seed=2)
        run(tmp_path / "warm", tmp_path / "warm-out", [], env)  # weights cache, disk cache
        engines = [("local", "-", [])] + [
            ("ray", str(n), ["--engine", "ray", "--workers", str(n)]) for n in args.workers]
        for name, workers, engine in engines:
            wall, steady = run(tmp_path / "images", tmp_path / f"out-{name}{workers}",
                               engine, env)
            rows.append((name, workers, wall, steady))
    load_after = os.getloadavg()
    print(f"| engine | actors | {args.images} images, whole command | images/s once running |")
    print("| --- | --- | --- | --- |")
    for name, workers, wall, steady in rows:
        print(f"| {name} | {workers} | {wall:.1f} s | {steady:.1f} |")
    print()
    print(f"vanilla gradient, EfficientNet-Lite0, --batch-size {BATCH}, {os.cpu_count()} CPUs; "
          f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after.")


if __name__ == "__main__":
    main()
