"""Images per second of ``python -m saliency_core explain``: local engine against Ray.

Default model (EfficientNet-Lite0), vanilla gradient, batch size 16, generated
640×480 JPEGs (see ``audit_throughput.py``). Every run is the whole command in
its own process, start-up included: importing TensorFlow and loading the model,
and for Ray also starting a local Ray and its actors (each imports TensorFlow
and loads its own copy of the model). Each engine runs on a small and a large
folder: the large run's images per wall-clock second, and the rate once started,
(large - small) / (its time - the small run's time). Prints a Markdown table and
the machine's load average, which matters on a shared machine.

    python bench/ray_throughput.py [--small 32] [--large 128] [--workers 1 2]
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


def wall_seconds(folder: Path, out: Path, engine: list[str], env: dict) -> float:
    """Wall time of one whole command on ``folder``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saliency_core", "explain", str(folder), "--out",
                    str(out), "--batch-size", str(BATCH), *engine], cwd=ROOT, env=env,
                   capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=32, help="images in the small run")
    parser.add_argument("--large", type=int, default=128, help="images in the large run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="Ray actor pool sizes to measure")
    args = parser.parse_args()
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bray") as tmp:
        tmp_path = Path(tmp)
        env = dict(child_env(), RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(tmp_path))
        make_images(tmp_path / "small", args.small, seed=1)
        make_images(tmp_path / "large", args.large, seed=2)
        wall_seconds(tmp_path / "small", tmp_path / "warm", [], env)  # caches, disk
        engines = [("local", "-", [])] + [
            ("ray", str(n), ["--engine", "ray", "--workers", str(n)]) for n in args.workers]
        for name, workers, engine in engines:
            small = wall_seconds(tmp_path / "small", tmp_path / f"s-{name}{workers}", engine,
                                 env)
            large = wall_seconds(tmp_path / "large", tmp_path / f"l-{name}{workers}", engine,
                                 env)
            rows.append((name, workers, small, large))
    load_after = os.getloadavg()
    print(f"| engine | actors | {args.small} images | {args.large} images | images/s "
          f"({args.large}, whole command) | images/s once started |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, workers, small, large in rows:
        started = (args.large - args.small) / max(large - small, 1e-9)
        print(f"| {name} | {workers} | {small:.1f} s | {large:.1f} s | "
              f"{args.large / large:.1f} | {started:.1f} |")
    print()
    print(f"vanilla gradient, EfficientNet-Lite0, --batch-size {BATCH}, {os.cpu_count()} CPUs; "
          f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after.")


if __name__ == "__main__":
    main()
