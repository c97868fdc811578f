"""The audit command against its floor: start-up, marginal time per image, and where it goes.

Usage (from the repository root, in the project's virtual environment):

    python bench/audit_throughput.py [--images 112] [--batch-size 16] [--rss-images 0]

Everything runs in fresh processes, as a user runs ``python -m saliency_core explain``,
on generated photos (640×480 JPEGs of smooth random colour fields, so nothing needs
downloading), with the default model (EfficientNet-Lite0), the vanilla gradient and
each image's top-1 class. In one run it measures:

* **the floor per image**: Pillow decoding and fitting the same photos (in-process, no
  worker), plus the default model's traced forward + backward pass on them at the batch
  size, raw TensorFlow on the app's own graph (its preprocessing and pre-softmax head):
  the same work as the command and nothing else, per image, wall and CPU time; the
  faster of several passes, measured before and after the command's runs (the faster
  counts: other processes only add time);
* **the marginal time per image**: one run of the command on ``--images`` photos,
  timing when each image's outputs are written; from the end of the first batch to the
  end of the last, per image (start-up and tracing excluded);
* **the start-up**: the wall time of the command on one photo with a warm cache (the
  converted model already there), the fastest of 3, next to its own floor: starting
  Python and importing TensorFlow and Keras, the fastest of 3;
* **a profile**: each step of one image, timed alone in one process (decoding in the
  worker, fitting, the model call, the forward pass the command no longer makes,
  the display map, the border share, the overlay, the PNG, the ``.npy``, the provenance
  JSON, writing the files), the fastest of several.

The machine's load average is printed at the start and the end; on a shared machine
compare the ratios, each measured in the same run as its floor.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------- in child processes


def _fastest(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def child_marginal(folder: str, out: str, batch: str) -> dict:
    """Run the command, noting when each image's outputs were written."""
    from saliency_core.quiet_tensorflow import import_tensorflow

    import_tensorflow()
    from saliency_core.__main__ import main as explain
    from saliency_core.audit import engine

    stamps: list[float] = []
    cpu: list[float] = []
    write = engine.OutputFolder.write

    def timed_write(self, outcome):
        write(self, outcome)
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())  # this process, all threads (not the decoder's)

    engine.OutputFolder.write = timed_write
    code = explain(["explain", folder, "--out", out, "--batch-size", batch])
    return {"code": code, "stamps": stamps, "cpu": cpu}


def child_floor(folder: str, batch: str, repeats: str) -> dict:
    """The floor of the command's work on the photos in ``folder``, per image, wall and CPU.

    Pillow decodes and fits every photo in this process (no worker), then raw TensorFlow
    runs forward + backward on them in batches of ``batch`` (the app's graph: its
    preprocessing and pre-softmax head, traced once): the same images and batches as
    the command, nothing else. The faster of ``repeats`` passes; the forward pass alone
    too, for reference.
    """
    from saliency_core.quiet_tensorflow import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    from saliency_core.imaging import fit_to_model
    from saliency_core.pipeline import load_classifier

    paths, size = sorted(Path(folder).glob("*.jpg")), int(batch)
    clf, _ = load_classifier("efficientnet_lite0", allow_download=False)
    spec = tf.TensorSpec((None, *clf.input_size, 3), tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec((None,), tf.int32)])
    def backward(x, c):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = clf.logit_model(clf.preprocess(x), training=False)
            score = tf.reduce_sum(logits * tf.one_hot(c, clf.num_classes), axis=-1)
        return tape.gradient(score, x)

    @tf.function(input_signature=[spec])
    def forward(x):
        return clf.logit_model(clf.preprocess(x), training=False)

    def decode_and_fit() -> np.ndarray:
        fitted = []
        for path in paths:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            fitted.append(fit_to_model(pixels, clf.input_size, "crop")[0])
        return np.stack(fitted).astype(np.float32)

    def model(fn) -> None:
        for start in range(0, len(inputs), size):
            chunk = tf.constant(inputs[start:start + size])
            fn(chunk)

    inputs = decode_and_fit()
    model(lambda x: backward(x, tf.zeros(len(x), tf.int32)).numpy())
    model(lambda x: forward(x).numpy())
    best: dict[str, float] = {}
    for _ in range(int(repeats)):
        for key, step in (("decode_fit", decode_and_fit),
                          ("fwd_bwd", lambda: model(
                              lambda x: backward(x, tf.zeros(len(x), tf.int32)).numpy())),
                          ("fwd", lambda: model(lambda x: forward(x).numpy()))):
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if wall < best.get(key, float("inf")):
                best[key], best[key + "_cpu"] = wall, cpu
    return {key: value / len(paths) for key, value in best.items()}


def child_profile(folder: str, batch: str, repeats: str) -> list:
    """``[(step, seconds per image)]``, each step of the command timed alone."""
    from saliency_core.quiet_tensorflow import import_tensorflow

    import_tensorflow()
    from saliency_core.audit.batch import (
        AuditSettings,
        attribute_fitted,
        finish_result,
        fit_images,
    )
    from saliency_core.audit.border import border_share
    from saliency_core.audit.destination import write_new_file
    from saliency_core.audit.engine import read_image_file
    from saliency_core.audit.outputs import ModelIdentity, result_files
    from saliency_core.audit.provenance import npy_bytes
    from saliency_core.imaging import load_image
    from saliency_core.pipeline import load_classifier, to_display_map
    from saliency_core.plotting import blend_overlay, encode_png

    paths = sorted(Path(folder).glob("*.jpg"))[:int(batch)]
    clf, _ = load_classifier("efficientnet_lite0", allow_download=False)
    settings = AuditSettings(batch_size=int(batch))
    identity = ModelIdentity("efficientnet_lite0", None, "0" * 64, "lite")
    images = [(p.name, load_image(read_image_file(p))) for p in paths]
    fitted = fit_images(images, clf.input_size, "crop")
    raws = attribute_fitted(clf, fitted, settings)
    result = finish_result(fitted[0], raws[0], clf.class_names, settings)
    files = result_files(result, "img", clf, settings, identity)[1]
    inputs = np.stack([f.model_input for f in fitted])
    out = Path(tempfile.mkdtemp())
    written = iter(range(10**9))

    def outputs():
        done = finish_result(fitted[0], raws[0], clf.class_names, settings)
        return result_files(done, "img", clf, settings, identity)

    def write_all():
        n = next(written)
        for name, data in files.items():
            write_new_file(out / f"{n}-{name}", data)

    def overlay():  # as the command draws it: its colours, opacity and fading
        return blend_overlay(result.view, result.saliency, settings.colormap,
                             settings.opacity, settings.reduction == "signed", settings.fade)

    def pillow_png(**options):
        buffer = io.BytesIO()
        Image.fromarray(overlay()).save(buffer, format="PNG", **options)
        return buffer.getvalue()

    each = len(paths)
    steps = [
        ("read the file, decode it in the worker",
         lambda: [load_image(read_image_file(p)) for p in paths], each),
        ("fit to the model (crop, resize)",
         lambda: fit_images(images, clf.input_size, "crop"), each),
        ("model: forward + backward, top-5 from it (batch)",
         lambda: attribute_fitted(clf, fitted, settings), each),
        ("the forward pass no longer made (batch)", lambda: clf.probabilities(inputs), each),
        ("display map (channels, clip, normalise)", lambda: to_display_map(result.values), 1),
        ("border share", lambda: border_share(result.saliency), 1),
        ("overlay colours and blend", overlay, 1),
        ("overlay PNG, the command's own writer (with the blend)",
         lambda: encode_png(overlay(), fast=True), 1),
        ("overlay PNG, Pillow at zlib's fast settings, as before (with the blend)",
         lambda: pillow_png(compress_level=1, compress_type=zlib.Z_RLE), 1),
        ("overlay PNG, Pillow's defaults (with the blend)", lambda: pillow_png(), 1),
        (".npy bytes", lambda: npy_bytes(result.values), 1),
        ("all outputs: display map, PNG, .npy, provenance JSON", outputs, 1),
        ("write the three files", write_all, 1),
    ]
    return [(name, _fastest(fn, int(repeats)) / count) for name, fn, count in steps]


CHILDREN = {"marginal": child_marginal, "floor": child_floor, "profile": child_profile}


# ------------------------------------------------------------------------- the parent


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` 640×480 JPEGs of smooth random colour fields."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC).save(
            folder / f"img{i:04d}.jpg", quality=90)


def child_env() -> dict:
    return dict(os.environ, SALIENCY_STUDIO_OFFLINE="1", PYTHONPATH=str(ROOT))


def run_child(name: str, *args) -> dict | list:
    done = subprocess.run([sys.executable, __file__, "--child", name, *map(str, args)],
                          cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, check=True)
    return time.perf_counter() - start


def start_up(folder: Path, tmp: Path, runs: int = 3) -> tuple[float, float]:
    """``(the command on one photo, Python with TensorFlow and Keras imported)``, fastest
    wall times of ``runs`` each, interleaved."""
    command, floor = [], []
    wall_time([sys.executable, "-m", "saliency_core", "explain", str(folder), "--out",
               str(tmp / "warm")])  # the cache (and the OS's file cache) is warm after this
    for i in range(runs):
        command.append(wall_time([sys.executable, "-m", "saliency_core", "explain",
                                  str(folder), "--out", str(tmp / f"one{i}")]))
        floor.append(wall_time([sys.executable, "-c", "import tensorflow, keras"]))
    return min(command), min(floor)


def marginal(folder: Path, out: Path, batch: int) -> tuple[float, float, int]:
    """``(seconds and CPU seconds per image from the end of the first batch to the end,
    images timed)``."""
    result = run_child("marginal", folder, out, batch)
    stamps, cpu = result["stamps"], result["cpu"]
    first = min(batch, len(stamps)) - 1
    timed = len(stamps) - 1 - first
    return (stamps[-1] - stamps[first]) / timed, (cpu[-1] - cpu[first]) / timed, timed


def peak_rss_mb(folder: Path, out: Path, batch: int) -> tuple[float, float]:
    """``(peak RSS in MB, wall seconds)`` of one whole command process on ``folder``."""
    seconds = wall_time([sys.executable, "-m", "saliency_core", "explain", str(folder),
                         "--out", str(out), "--batch-size", str(batch)])
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        print(json.dumps(CHILDREN[sys.argv[2]](*sys.argv[3:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=112,
                        help="photos of the timed run (default 112: 7 batches of 16)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each floor timing")
    parser.add_argument("--rss-images", type=int, default=0,
                        help="also measure the peak memory of a run on this many photos")
    args = parser.parse_args()
    start_load = load()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_images(tmp / "timed", args.images, seed=1)
        make_images(tmp / "one", 1, seed=2)
        rss = None
        if args.rss_images:  # first, so that RUSAGE_CHILDREN's maximum is this run's
            make_images(tmp / "all", args.rss_images)
            rss = peak_rss_mb(tmp / "all", tmp / "out-all", args.batch_size)
        floor_before = run_child("floor", tmp / "timed", args.batch_size, args.repeats)
        print(f"floor before: {json.dumps(floor_before)}", flush=True)
        per_image, cpu_per_image, timed = marginal(tmp / "timed", tmp / "out",
                                                   args.batch_size)
        print(f"marginal: {per_image * 1000:.1f} ms per image over {timed}", flush=True)
        startup, startup_floor = start_up(tmp / "one", tmp)
        print(f"start-up: {startup:.2f} s, import floor {startup_floor:.2f} s", flush=True)
        profile = run_child("profile", tmp / "timed", args.batch_size, args.repeats)
        floor_after = run_child("floor", tmp / "timed", args.batch_size, args.repeats)
    floors = {key: min(floor_before[key], floor_after[key]) for key in floor_before}
    floor = floors["decode_fit"] + floors["fwd_bwd"]
    floor_cpu = floors["decode_fit_cpu"] + floors["fwd_bwd_cpu"]
    print()
    print(f"`python -m saliency_core explain`, EfficientNet-Lite0, vanilla gradient, top-1 "
          f"class, batch {args.batch_size}, 640x480 JPEGs, {os.cpu_count()} CPUs")
    print(f"Load average (1, 5, 15 min) at the start: {start_load}; at the end: {load()}")
    print()
    print("| figure | this run | floor | × floor |")
    print("|---|---:|---:|---:|")
    print(f"| marginal time per image ({timed} images after the first batch) | "
          f"{per_image * 1000:.1f} ms | {floor * 1000:.1f} ms | {per_image / floor:.2f} |")
    print(f"| CPU time per image, same images (the command's process; the floor's) | "
          f"{cpu_per_image * 1000:.1f} ms | {floor_cpu * 1000:.1f} ms | "
          f"{cpu_per_image / floor_cpu:.2f} |")
    print(f"| start-up: the command on one photo, warm cache | {startup:.1f} s | "
          f"{startup_floor:.1f} s | {startup / startup_floor:.2f} |")
    print()
    print(f"Floor per image: decode and fit {floors['decode_fit'] * 1000:.1f} ms (before "
          f"{floor_before['decode_fit'] * 1000:.1f}, after {floor_after['decode_fit'] * 1000:.1f})"
          f" + forward and backward at batch {args.batch_size} {floors['fwd_bwd'] * 1000:.1f} ms"
          f" (before {floor_before['fwd_bwd'] * 1000:.1f}, after "
          f"{floor_after['fwd_bwd'] * 1000:.1f}); a forward pass alone "
          f"{floors['fwd'] * 1000:.1f} ms. The start-up's floor is Python importing "
          "TensorFlow and Keras.")
    print()
    print("| step of one image, timed alone | ms |")
    print("|---|---:|")
    for name, seconds in profile:
        print(f"| {name} | {seconds * 1000:.1f} |")
    if rss is not None:
        print()
        print(f"{args.rss_images} images, batch {args.batch_size}, whole process: peak RSS "
              f"{rss[0]:.0f} MB, {rss[1]:.0f} s wall time (incl. start-up).")


if __name__ == "__main__":
    main()
