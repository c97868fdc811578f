"""Benchmark every method against the raw TensorFlow floor and the peer libraries.

Usage (from the repository root, in a virtual environment with the app's and the
peers' requirements, see ``bench/requirements.txt``):

    python bench/run.py [--quick] [--models efficientnet_lite0,mobilenet_v2,vgg16]
                        [--repeats 5] [--no-write]

In one process, on the same photo (the "chelsea" sample) and its top class, for
each model it times (the fastest of several runs after a warm-up, since the machine
may be shared):

* the floor, raw TensorFlow on the same graph (the model's preprocessing and its
  pre-softmax head, traced once): forward; forward + backward; one batch of n;
* this project's methods: vanilla, Gradient x Input, SmoothGrad (n = 20, 50),
  Integrated Gradients (20 and 50 steps, uniform and adaptive grids), Grad-CAM,
  occlusion (32-pixel patch, stride 16);
* the same methods in Xplique, tf-keras-vis and PAIR ``saliency`` where they have
  them; a peer that is not installed is skipped with a note.

Every figure is a ratio to its floor measured in the same run; the floors are
measured again at the end of each model and their drift reported, because the
machine may be shared. A profile of one vanilla map on the default model (graph
call, conversions, post-processing, figure building, serialisation) follows.
The Markdown output, with the machine's description, replaces the generated part
of ``docs/benchmarks.md`` (text outside the markers is kept).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SALIENCY_STUDIO_OFFLINE"] = "1"
_SHARED_MOBILENET = ROOT.parent / "shared" / "models" / "mobilenet_v2_1.0_224_dequant.weights.h5"
if _SHARED_MOBILENET.is_file():
    os.environ.setdefault("SALIENCY_WEIGHTS_MOBILENET_V2", str(_SHARED_MOBILENET))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench/run.py: start -->", "<!-- bench/run.py: end -->"
PEERS = {"xplique": "Xplique", "tf_keras_vis": "tf-keras-vis", "saliency": "PAIR saliency"}
PEER_DISTS = {"xplique": "xplique", "tf_keras_vis": "tf-keras-vis", "saliency": "saliency"}
OCCLUSION = {"patch": 32, "stride": 16}
# n (SmoothGrad samples, IG steps) per model; VGG16 is 10 to 20 times slower per image, so it
# runs n = 10 only (as in issue #12's first measurement); --sizes overrides.
SIZES = {"vgg16": [10]}


def time_best(fn: Callable[[], object], repeats: int, budget: float) -> float:
    """Fastest seconds of ``fn`` over its runs after one warm-up call (at most ``repeats``,
    stopping at 2 past ``budget`` seconds). On a shared machine other processes only ever
    add time, so the fastest run is the least disturbed one; medians swung by 2x here."""
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (len(times) < 2 or spent < budget):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return min(times)


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_model(key: str):
    """The registered model with its real weights, or random weights where they are absent."""
    from saliency_core.models.preprocessing import get_preprocessor
    from saliency_core.models.registry import WeightsUnavailableError, get_spec
    from saliency_core.pipeline import load_classifier
    from saliency_core.tf_adapter import KerasClassifier

    try:
        return load_classifier(key, allow_download=False)[0], "real"
    except WeightsUnavailableError:
        spec = get_spec(key)
        keras_model = spec.build()
        return KerasClassifier(keras_model, get_preprocessor(spec.preprocessing),
                               spec.class_names, batch_size=spec.batch_size), "random"


class Floor:
    """Raw TensorFlow on the classifier's own graph: preprocessing, logit model, one trace."""

    def __init__(self, clf):
        spec = tf.TensorSpec((None, *clf.input_size, 3), tf.float32)

        def forward(x):
            return clf.logit_model(clf.preprocess(x), training=False)

        def backward(x, c):
            with tf.GradientTape() as tape:
                tape.watch(x)
                score = tf.gather(forward(x), c, axis=1)
            return tape.gradient(score, x)

        self._forward = tf.function(forward, input_signature=[spec])
        self._backward = tf.function(backward,
                                     input_signature=[spec, tf.TensorSpec((), tf.int32)])

    def forward(self, images: np.ndarray, chunk: int = 32) -> np.ndarray:
        """Logits of ``images`` ``(B, H, W, 3)``, ``chunk`` at a time (numpy in, numpy out)."""
        return np.concatenate([self._forward(tf.constant(images[i:i + chunk])).numpy()
                               for i in range(0, len(images), chunk)])

    def backward(self, images: np.ndarray, class_index: int) -> np.ndarray:
        """Input gradients ``(B, H, W, 3)`` of one class score, in one batch."""
        return self._backward(tf.constant(images), tf.constant(class_index)).numpy()


def occlusion_count(size: tuple[int, int]) -> int:
    """How many occluded images the benchmark's occlusion settings evaluate."""
    from saliency_core.methods.occlusion import _positions

    return (len(_positions(size[0], OCCLUSION["patch"], OCCLUSION["stride"]))
            * len(_positions(size[1], OCCLUSION["patch"], OCCLUSION["stride"])))


def measure_floors(floor: Floor, x: np.ndarray, c: int, sizes: list[int], occluded: int,
                   repeats: int, budget: float) -> dict[str, float]:
    """Median seconds of each floor: ``fwd``, ``fwd+bwd``, ``batch n``, ``forward n``."""
    one = x[None]
    out = {"forward": time_best(lambda: floor.forward(one), repeats, budget),
           "forward + backward": time_best(lambda: floor.backward(one, c), repeats, budget)}
    for n in sizes:
        batch = np.repeat(one, n, axis=0)
        out[f"batch of {n}"] = time_best(lambda b=batch: floor.backward(b, c), repeats, budget)
    occ = np.repeat(one, occluded, axis=0)
    out[f"forward of {occluded}"] = time_best(lambda: floor.forward(occ), repeats, budget)
    return out


def project_cases(sizes: list[int], occluded: int) -> list[tuple[str, str, str, dict]]:
    """``(row label, floor name, method key, params)`` for this project's methods."""
    cases = [("vanilla", "forward + backward", "vanilla", {}),
             ("Gradient × Input", "forward + backward", "gradient_x_input", {})]
    cases += [(f"SmoothGrad, n = {n}", f"batch of {n}", "smoothgrad", {"samples": n})
              for n in sizes]
    for n in sizes:
        cases += [(f"IG, {n} steps, {grid}", f"batch of {n}", "integrated_gradients",
                   {"steps": n, "grid": grid}) for grid in ("uniform", "adaptive")]
    cases.append((f"IG, target gap 2% (from {sizes[0]} uniform steps)", f"batch of {sizes[0]}",
                  "integrated_gradients", {"steps": sizes[0], "grid": "uniform",
                                           "target_gap": "2"}))
    cases += [("Grad-CAM", "forward + backward", "gradcam", {}),
              (f"occlusion ({occluded} patches)", f"forward of {occluded}", "occlusion",
               dict(OCCLUSION))]
    return cases


def peer_runners(peer: str, clf, x: np.ndarray, c: int, sizes: list[int]) -> dict:
    """Row label -> a zero-argument function running the peer's version of that method.

    Gradient methods get a Keras model from 0-255 pixels to the same pre-softmax
    scores (the project's preprocessing as a Lambda layer before its logit model);
    Grad-CAM gets the logit model itself with preprocessed input, since the peers
    look the convolutional layer up among the model's own layers.
    """
    import keras

    inputs = keras.Input((*clf.input_size, 3))
    pixels_model = keras.Model(inputs, clf.logit_model(keras.layers.Lambda(clf.preprocess)(inputs)))
    batch = x[None].astype(np.float32)
    pre = np.asarray(clf.preprocess(tf.constant(batch)))
    layer = clf.default_cam_layer()
    sigma = 0.15
    runners: dict[str, Callable] = {}
    if peer == "xplique":
        from xplique.attributions import (
            GradCAM,
            GradientInput,
            IntegratedGradients,
            Occlusion,
            Saliency,
            SmoothGrad,
        )

        onehot = tf.one_hot([c], clf.num_classes)
        runners["vanilla"] = Saliency(pixels_model, batch_size=1).explain
        runners["Gradient × Input"] = GradientInput(pixels_model, batch_size=1).explain
        for n in sizes:
            runners[f"SmoothGrad, n = {n}"] = SmoothGrad(
                pixels_model, batch_size=n, nb_samples=n, noise=sigma * 255.0).explain
            runners[f"IG, {n} steps, uniform"] = IntegratedGradients(
                pixels_model, batch_size=n, steps=n, baseline_value=0.0).explain
        runners["Grad-CAM"] = (GradCAM(clf.logit_model, batch_size=1, conv_layer=layer).explain,
                               pre)
        runners["occlusion"] = Occlusion(
            pixels_model, batch_size=32, patch_size=OCCLUSION["patch"],
            patch_stride=OCCLUSION["stride"], occlusion_value=127.5).explain
        return {k: _bind(v, batch, onehot) for k, v in runners.items()}
    if peer == "tf_keras_vis":
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.utils.scores import CategoricalScore

        score = CategoricalScore([c])
        saliency = Saliency(pixels_model, clone=False)
        runners["vanilla"] = lambda: saliency(score, batch, keepdims=True, normalize_map=False)
        for n in sizes:
            runners[f"SmoothGrad, n = {n}"] = (
                lambda n=n: saliency(score, batch, smooth_samples=n, smooth_noise=sigma,
                                     keepdims=True, normalize_map=False))
        gradcam = Gradcam(clf.logit_model, clone=False)
        runners["Grad-CAM"] = lambda: gradcam(score, pre, penultimate_layer=layer)
        return runners
    if peer == "saliency":
        import saliency.core as pair

        capture = keras.Model(clf.logit_model.inputs,
                              [clf.logit_model.get_layer(layer).output,
                               clf.logit_model.outputs[0]])

        def call_model(images, call_model_args=None, expected_keys=None):
            # PAIR's README pattern: an eager GradientTape around the model call.
            images = tf.convert_to_tensor(images, tf.float32)
            if pair.base.CONVOLUTION_LAYER_VALUES in expected_keys:
                with tf.GradientTape() as tape:
                    conv, logits = capture(images)
                    score = logits[:, c]
                return {pair.base.CONVOLUTION_LAYER_VALUES: conv.numpy(),
                        pair.base.CONVOLUTION_OUTPUT_GRADIENTS:
                            tape.gradient(score, conv).numpy()}
            with tf.GradientTape() as tape:
                tape.watch(images)
                score = pixels_model(images)[:, c]
            return {pair.base.INPUT_OUTPUT_GRADIENTS: tape.gradient(score, images).numpy()}

        gradient, ig = pair.GradientSaliency(), pair.IntegratedGradients()
        runners["vanilla"] = lambda: gradient.GetMask(x, call_model)
        for n in sizes:
            runners[f"SmoothGrad, n = {n}"] = (
                lambda n=n: gradient.GetSmoothedMask(x, call_model, stdev_spread=sigma,
                                                     nsamples=n, magnitude=False))
            runners[f"IG, {n} steps, uniform"] = (
                lambda n=n: ig.GetMask(x, call_model, x_baseline=np.zeros_like(x), x_steps=n,
                                       batch_size=n))
        runners["Grad-CAM"] = lambda: pair.GradCam().GetMask(pre[0], call_model)
        return runners
    raise ValueError(peer)


def _bind(explain, batch, onehot):
    if isinstance(explain, tuple):
        explain, batch = explain
    return lambda: explain(batch, onehot)


def available_peers() -> tuple[list[str], list[str]]:
    """``(importable peers, notes for the missing ones)``."""
    found, notes = [], []
    for module, name in PEERS.items():
        try:
            __import__(module)
            found.append(module)
        except Exception as exc:  # noqa: BLE001 - any import failure means "skip this peer"
            notes.append(f"{name} skipped: not importable ({type(exc).__name__}: {exc}).")
    return found, notes


def describe_machine(load: str) -> list[str]:
    """CPU, cores, memory, versions and load, as Markdown bullet lines."""
    cpu = "unknown"
    meminfo = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, value = line.split(":", 1)
            meminfo[name] = int(value.split()[0]) / 1024 / 1024
    except OSError:
        pass
    versions = []
    for dist in ("tensorflow", "keras", "numpy", *PEER_DISTS.values()):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} not installed")
    return [f"- CPU: {cpu}, {os.cpu_count()} cores; RAM {meminfo.get('MemTotal', 0):.1f} GB "
            f"({meminfo.get('MemAvailable', 0):.1f} GB available at the start)",
            f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
            f"- {', '.join(versions)}",
            f"- Load average (1, 5, 15 min) at the start: {load}"]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def profile_vanilla(clf, x: np.ndarray, c: int, repeats: int) -> list[str]:
    """Where one vanilla map's time goes on the Explore page, as Markdown table lines."""
    from saliency_core.methods import Target
    from saliency_core.pipeline import explain
    from saliency_core.plotting import make_legend, make_overlay_figure
    from saliency_core.postprocess import normalize_map, reduce_channels

    batch = x[None].astype(np.float32)
    fn, target = clf._gradient_fn, Target(c)
    args = (tf.fill([1], tf.constant(c)), tf.fill([1], tf.constant(-1)), tf.constant(False))
    tensor = tf.constant(batch)
    grads = fn(tensor, *args)[0]  # (gradients, scores, logits, classes)
    values = explain(clf, x, target).attribution.values
    raw = reduce_channels(values, "max_abs")
    saliency = normalize_map(raw, 99.5)
    view = np.clip(x, 0, 255).astype(np.uint8)
    fig = make_overlay_figure(view, saliency, "viridis", 0.5, legend=make_legend(False), raw=raw)
    steps = [
        ("numpy → tensor (tf.constant)", lambda: tf.constant(batch)),
        ("graph call (traced forward + backward)", lambda: fn(tensor, *args)),
        ("tensor → numpy (.numpy())", lambda: grads.numpy()),
        ("whole adapter call (explain)", lambda: explain(clf, x, target)),
        ("post-processing (channels, normalise)",
         lambda: normalize_map(reduce_channels(values, "max_abs"), 99.5)),
        ("figure building (overlay figure)",
         lambda: make_overlay_figure(view, saliency, "viridis", 0.5, legend=make_legend(False),
                                     raw=raw)),
        ("serialisation to the browser (figure JSON)", lambda: fig.to_json()),
    ]
    rows = [(name, time_best(step, repeats * 2, 10.0)) for name, step in steps]
    size = len(fig.to_json()) / 1024
    lines = ["| step | fastest ms |", "|---|---:|"]
    lines += [f"| {name} | {seconds * 1000:.1f} |" for name, seconds in rows]
    lines.append(f"\nThe figure's JSON is {size:.0f} KB.")
    return lines


def main() -> None:  # noqa: C901 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 models, n = 20 only, 3 repeats: a fast check")
    parser.add_argument("--models", default=None,
                        help="comma-separated model keys (default: the default model, "
                             "mobilenet_v2, vgg16)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per timing after which it stops at 3 repeats")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {DOC.name}")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated n for every model (default: 20,50; VGG16 10)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="comma-separated peer modules to include")
    args = parser.parse_args()
    from saliency_core.imaging import fit_to_model, load_image
    from saliency_core.methods import Target, get_method
    from saliency_core.models.registry import DEFAULT_MODEL_KEY
    from saliency_core.samples import read_sample

    quick = args.quick
    models = (args.models or (f"{DEFAULT_MODEL_KEY},mobilenet_v2" if quick
                              else f"{DEFAULT_MODEL_KEY},mobilenet_v2,vgg16")).split(",")
    repeats = args.repeats or (3 if quick else 7)
    budget = args.budget or (4.0 if quick else 15.0)
    default_sizes = ([int(n) for n in args.sizes.split(",")] if args.sizes
                     else [20] if quick else [20, 50])
    load_start = loadavg()
    machine = describe_machine(load_start)
    peers, notes = available_peers()
    peers = [p for p in peers if p in args.peers.split(",")]
    notes.append("PAIR saliency's occlusion slides a window with stride 1, one image per call "
                 "(about 40,000 forward passes at 224 x 224): not run.")
    photo = load_image(read_sample("chelsea"))
    out: list[str] = []
    drift_lines: list[str] = []
    peaks: list[str] = []
    profile: list[str] = []
    for key in models:
        sizes = default_sizes if args.sizes else SIZES.get(key, default_sizes)
        clf, weights = load_model(key)
        x, _ = fit_to_model(photo.pixels, clf.input_size)
        x = x.astype(np.float32)
        c = int(np.argmax(clf.logits(x[None])[0]))
        occluded = occlusion_count(clf.input_size)
        floor = Floor(clf)
        print(f"\n## {key} ({weights} weights), class {c}, adapter batch {clf.batch_size}",
              flush=True)
        floors = measure_floors(floor, x, c, sizes, occluded, repeats, budget)
        for name, seconds in floors.items():
            print(f"  floor {name}: {seconds * 1000:.1f} ms", flush=True)
        results: dict[str, dict[str, float]] = {}
        floor_of: dict[str, str] = {}
        for label, floor_name, method, params in project_cases(sizes, occluded):
            if "target_gap" in params and weights != "real":
                continue  # random weights: the gap says nothing, and may need 400 steps
            short = label.split(" (")[0]
            floor_of[short] = floor_name

            def run(method=method, params=params, clf=clf, x=x, c=c):
                return get_method(method, **params).attribute(clf, x, Target(c))

            seconds = time_best(run, repeats, budget)
            results.setdefault(short, {})["project"] = seconds
            if "target_gap" in params:
                results[short]["steps"] = run().info["steps used"]
            print(f"  project {short}: {seconds * 1000:.1f} ms "
                  f"({seconds / floors[floor_name]:.2f}x)", flush=True)
        for peer in peers:
            try:
                runners = peer_runners(peer, clf, x, c, sizes)
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported
                notes.append(f"{PEERS[peer]} on {key} failed to set up: {exc}")
                continue
            for short, fn in runners.items():
                try:
                    seconds = time_best(fn, repeats, budget)
                except Exception as exc:  # noqa: BLE001
                    notes.append(f"{PEERS[peer]} {short} on {key} failed: "
                                 f"{type(exc).__name__}: {str(exc)[:120]}")
                    continue
                results.setdefault(short, {})[peer] = seconds
                print(f"  {PEERS[peer]} {short}: {seconds * 1000:.1f} ms "
                      f"({seconds / floors[floor_of[short]]:.2f}x)", flush=True)
        again = measure_floors(floor, x, c, sizes, occluded, max(3, repeats // 2), budget)
        drift = ", ".join(f"{name} {floors[name] * 1000:.0f} → {again[name] * 1000:.0f} ms "
                          f"({(again[name] / floors[name] - 1) * 100:+.0f}%)" for name in floors)
        drift_lines.append(f"- {key}: {drift}")
        floors = {name: min(floors[name], again[name]) for name in floors}  # least disturbed
        peaks.append(f"{key} {peak_mb():.0f} MB")
        out.append(f"\n### {key} ({weights} weights; adapter batch bound "
                   f"{clf.batch_size} images)\n")
        out.append("| " + " | ".join(["method", "floor", "floor ms", "this project",
                                      *(PEERS[p] for p in peers)]) + " |")
        out.append("|---|---|---:|---:|" + "---:|" * len(peers))
        for short, row in results.items():
            base = floors[floor_of[short]]
            cells = []
            for who in ("project", *peers):
                if who not in row:
                    cells.append("—")
                    continue
                cell = f"{row[who] / base:.2f}×"
                if who == "project" and "steps" in row:
                    cell += f" ({row['steps']} steps)"
                cells.append(cell)
            out.append(f"| {short} | {floor_of[short]} | {base * 1000:.1f} | "
                       + " | ".join(cells) + " |")
        if key == DEFAULT_MODEL_KEY:
            profile = profile_vanilla(clf, x, c, repeats)
        body = compose(repeats, budget, machine, peaks, out, drift_lines, notes, profile)
        if not args.no_write:
            write_doc(body)  # after every model, so a stopped run keeps what it measured
    print("\n" + body)
    if not args.no_write:
        print(f"\nwrote {DOC.relative_to(ROOT)}")


def compose(repeats: int, budget: float, machine: list[str], peaks: list[str], out: list[str],
            drift_lines: list[str], notes: list[str], profile: list[str]) -> str:
    """The Markdown report of everything measured so far."""
    from saliency_core.models.registry import DEFAULT_MODEL_KEY

    text = ["Ratios are method time / floor time, both the fastest of up to "
            f"{repeats} runs (2 past {budget:.0f} s per timing) after a warm-up, in the same "
            "process: on this shared machine medians swung by 2× between neighbouring "
            "timings, while other processes can only add time, never remove it. "
            "The floor is raw TensorFlow on the same traced graph (the model's preprocessing "
            "and pre-softmax head), numpy in and numpy out. IG's floor is one batch of n path "
            "points (this project's trapezoid rule evaluates n + 1). Occlusion's floor is "
            "the forward passes of all occluded images, 32 at a time. Each floor is the faster of "
            "its two measurements (start and end of the model's timings).", "",
            "**Machine**", "", *machine,
            f"- Load average at the end: {loadavg()}",
            f"- Peak resident memory after each model: {', '.join(peaks)}", "",
            *out, "", "**Floor drift** (start → end of each model's measurements)", "",
            *drift_lines, "", "**Notes**", "", *[f"- {n}" for n in notes]]
    if profile:
        text += ["", f"### Profile: one vanilla map on {DEFAULT_MODEL_KEY}", "", *profile]
    return "\n".join(text)


def write_doc(body: str) -> None:
    """Replace the generated part of ``docs/benchmarks.md``, keeping the text around it."""
    old = DOC.read_text() if DOC.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in old or END not in old:
        old = old.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = old.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{START}\n{body}\n{END}{tail}")


if __name__ == "__main__":
    main()
