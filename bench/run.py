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
  occlusion (32-pixel patch, stride 16), and the methods the peers have: XRAI,
  Blur IG and Guided IG (n steps), Score-CAM and LayerCAM (the last convolutional
  layer), RISE (1000 masks);
* the same methods in Xplique, tf-keras-vis and PAIR ``saliency`` where they have
  them; a peer that is not installed is skipped with a note;
* on the default model, how closely the new methods' maps agree with the peers'
  (Pearson r and the largest difference; for RISE, random on both sides, r against
  Xplique beside r between two of our own seeds).

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
RISE_MASKS = 1000  # the paper uses 4000-8000; 1000 keeps a timing under a minute
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

    def gradients(self, images: np.ndarray, class_index: int, bound: int) -> np.ndarray:
        """Input gradients of ``images``, in nearly equal batches of at most ``bound``."""
        from saliency_core.batching import split_evenly

        return np.concatenate([self.backward(images[a:b], class_index)
                               for a, b in split_evenly(len(images), bound)])


def occlusion_count(size: tuple[int, int]) -> int:
    """How many occluded images the benchmark's occlusion settings evaluate."""
    from saliency_core.methods.occlusion import _positions

    return (len(_positions(size[0], OCCLUSION["patch"], OCCLUSION["stride"]))
            * len(_positions(size[1], OCCLUSION["patch"], OCCLUSION["stride"])))


def measure_floors(floor: Floor, x: np.ndarray, c: int, sizes: list[int], occluded: int,
                   repeats: int, budget: float, forwards: tuple[int, ...] = (),
                   bound: int = 16) -> dict[str, float]:
    """Fastest seconds of each floor: ``forward``, ``forward + backward``, ``batch of n``,
    ``forward of N`` (occlusion's and ``forwards``: Score-CAM's channels, RISE's masks,
    32 at a time), ``gradients of 2n - 1`` (XRAI's, in batches of ``bound``) and
    ``n single gradients`` (Guided IG's steps: n times forward + backward, derived)."""
    one = x[None]
    out = {"forward": time_best(lambda: floor.forward(one), repeats, budget),
           "forward + backward": time_best(lambda: floor.backward(one, c), repeats, budget)}
    for n in sizes:
        batch = np.repeat(one, n, axis=0)
        out[f"batch of {n}"] = time_best(lambda b=batch: floor.backward(b, c), repeats, budget)
        many = np.repeat(one, 2 * n - 1, axis=0)
        out[f"gradients of {2 * n - 1}"] = time_best(
            lambda b=many: floor.gradients(b, c, bound), repeats, budget)
        out[f"{n} single gradients"] = n * out["forward + backward"]
    for count in sorted({occluded, *forwards}):
        images = np.repeat(one, count, axis=0)
        out[f"forward of {count}"] = time_best(lambda b=images: floor.forward(b), repeats,
                                               budget)
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


def peer_method_cases(sizes: list[int], channels: int) -> list[tuple[str, str, str, dict]]:
    """The rows of the methods the peers have (XRAI, Blur IG, Guided IG, Score-CAM,
    LayerCAM, RISE), as :func:`project_cases`."""
    cases = []
    for n in sizes:
        cases += [(f"XRAI, {n} steps per baseline", f"gradients of {2 * n - 1}", "xrai",
                   {"steps": n}),
                  (f"Blur IG, {n} steps", f"batch of {n}", "blur_ig", {"steps": n}),
                  (f"Guided IG, {n} steps", f"{n} single gradients", "guided_ig", {"steps": n})]
    cases += [(f"Score-CAM ({channels} channels)", f"forward of {channels}", "scorecam", {}),
              ("LayerCAM", "forward + backward", "layercam", {}),
              (f"RISE, {RISE_MASKS} masks", f"forward of {RISE_MASKS}", "rise",
               {"masks": RISE_MASKS})]
    return cases


def flat_pixels_model(clf):
    """A Keras model from 0-255 pixels to the pre-softmax scores, with copies of the
    classifier's layers (same weights) in one flat graph and the preprocessing as a Lambda
    layer first, so tf-keras-vis finds the convolutional layer by name (it reads
    ``layer.output``, so the copies must be called here first) and masks the raw pixels
    as this project does. Keras's ``_run_through_graph`` replays the logit model's
    layers on a new input; bench-only."""
    import keras

    pairs = []

    def fresh(layer):
        copy = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, copy))
        return copy

    inputs = keras.Input((*clf.input_size, 3))
    preprocessed = keras.layers.Lambda(clf.preprocess)(inputs)
    outputs = clf.logit_model._run_through_graph(preprocessed, operation_fn=fresh)
    model = keras.Model(inputs, outputs)
    for old, new in pairs:
        new.set_weights(old.get_weights())
    return model


def numpy_quantile_shim(module) -> None:
    """PAIR's Guided IG calls ``np.quantile(..., interpolation=...)``, which NumPy 2.4
    removed; give its module a NumPy whose quantile takes that name (same algorithm)."""
    import types

    try:
        np.quantile(np.zeros(2), 0.5, interpolation="lower")
        return
    except TypeError:
        pass

    def quantile(values, q, interpolation="linear", **kwargs):
        return np.quantile(values, q, method=interpolation, **kwargs)

    names = {name: getattr(np, name) for name in dir(np) if not name.startswith("__")}
    module.np = types.SimpleNamespace(**{**names, "quantile": quantile})


def peer_runners(peer: str, clf, x: np.ndarray, c: int, sizes: list[int],
                 rise_masks: int = RISE_MASKS, scorecam_channels: str = "all") -> dict:
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
        from xplique.attributions import Rise

        runners[f"RISE, {rise_masks} masks"] = Rise(
            pixels_model, batch_size=32, nb_samples=rise_masks, grid_size=7,
            preservation_probability=0.5).explain
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
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.scorecam import Scorecam

        flat, inner = flat_pixels_model(clf), layer.split("/")[-1]
        scorecam, layercam = Scorecam(flat, clone=False), Layercam(flat, clone=False)
        most = None if scorecam_channels == "all" else int(scorecam_channels)  # Faster Score-CAM
        runners["Score-CAM"] = lambda: scorecam(score, batch, penultimate_layer=inner,
                                                seek_penultimate_conv_layer=False,
                                                batch_size=32, max_N=most)
        runners["LayerCAM"] = lambda: layercam(score, batch, penultimate_layer=inner,
                                               seek_penultimate_conv_layer=False)
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
        numpy_quantile_shim(pair.guided_ig)
        for n in sizes:
            runners[f"XRAI, {n} steps per baseline"] = (
                lambda n=n: pair.XRAI().GetMask(x, call_model, batch_size=n,
                                                extra_parameters=pair.XRAIParameters(steps=n)))
            runners[f"Blur IG, {n} steps"] = (
                lambda n=n: pair.BlurIG().GetMask(x, call_model, steps=n, batch_size=n))
            runners[f"Guided IG, {n} steps"] = (
                lambda n=n: pair.GuidedIG().GetMask(x, call_model, x_steps=n,
                                                    x_baseline=np.zeros_like(x)))
        return runners
    raise ValueError(peer)


def _bind(explain, batch, onehot):
    if isinstance(explain, tuple):
        explain, batch = explain
    return lambda: explain(batch, onehot)


def compare_maps(ours: np.ndarray, theirs: np.ndarray) -> str:
    """Pearson r and the largest difference as a share of the peer's largest value."""
    ours = np.asarray(ours, np.float64).ravel()
    theirs = np.asarray(theirs, np.float64).ravel()
    r = np.corrcoef(ours, theirs)[0, 1]
    difference = np.abs(ours - theirs).max() / np.abs(theirs).max()
    return f"r = {r:.4f}, largest difference {difference:.1e} of the peer's largest value"


def agreement_lines(peers: list[str], clf, x: np.ndarray, c: int, n: int,
                    rise_masks: int, scorecam_channels: str = "all") -> list[str]:
    """How closely the new methods agree with the peers on this photo, as Markdown bullets."""
    from saliency_core.imaging import resize_map
    from saliency_core.methods import Target, get_method
    from saliency_core.methods.layercam import layercam_map

    target, lines = Target(c), []

    def ours(key, **params):
        return get_method(key, **params).attribute(clf, x, target)

    if "saliency" in peers:
        import saliency.core as pair

        numpy_quantile_shim(pair.guided_ig)

        def same_callback(images, call_model_args=None, expected_keys=None):
            # the model callback both sides share: this project's adapter's gradients
            grads, _ = clf.gradients(np.asarray(images, np.float32), target)
            return {pair.base.INPUT_OUTPUT_GRADIENTS: grads}

        theirs = {
            "xrai": pair.XRAI().GetMask(x, same_callback, batch_size=n,
                                        extra_parameters=pair.XRAIParameters(steps=n)),
            # a float64 image: PAIR blurs in the image's dtype, and float32 rounding, divided
            # by the 0.01 step of its finite difference, is what remains (the next line)
            "blur_ig": pair.BlurIG().GetMask(x.astype(np.float64), same_callback, steps=n,
                                             batch_size=n),
            "guided_ig": pair.GuidedIG().GetMask(x, same_callback, x_steps=n,
                                                 x_baseline=np.zeros_like(x))}
        for key, label in (("xrai", f"XRAI, {n} steps per baseline"),
                           ("blur_ig", f"Blur IG, {n} steps"),
                           ("guided_ig", f"Guided IG, {n} steps")):
            result = ours(key, steps=n)
            mine = result.values
            if key == "xrai":  # our map starts at 0: add back the lowest gain
                mine = mine[..., 0] + result.info["lowest region gain (subtracted)"]
            lines.append(f"- {label} against PAIR saliency: {compare_maps(mine, theirs[key])}")
            if key == "blur_ig":
                rounded = pair.BlurIG().GetMask(x, same_callback, steps=n, batch_size=n)
                lines.append(f"- the same with PAIR blurring the float32 image (its float32 "
                             f"rounding over a 0.01 sigma step): {compare_maps(mine, rounded)}")
        lines.append("- With PAIR's own callback (an eager GradientTape) instead of the shared "
                     "one, gradients differ in the last float32 bits and Guided IG's adaptive "
                     "path can amplify that (it picks features by a quantile of |gradient|).")
    if "tf_keras_vis" in peers:
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.scores import CategoricalScore

        flat, layer = flat_pixels_model(clf), clf.default_cam_layer()
        inner, batch = layer.split("/")[-1], x[None].astype(np.float32)
        common = {"penultimate_layer": inner, "seek_penultimate_conv_layer": False,
                  "expand_cam": False, "normalize_cam": False}
        theirs = Layercam(flat)(CategoricalScore([c]), batch, **common)[0]
        acts, grads, _ = clf.layer_gradients(batch, target, layer)
        lines.append("- LayerCAM against tf-keras-vis (at the layer's resolution): "
                     + compare_maps(layercam_map(acts[0], grads[0]), theirs))
        most = None if scorecam_channels == "all" else int(scorecam_channels)
        theirs = Scorecam(flat)(CategoricalScore([c]), batch, batch_size=32, max_N=most,
                                **common)[0]
        lines.append(f"- Score-CAM ({scorecam_channels} channels) against tf-keras-vis (theirs "
                     "upsampled as ours): "
                     + compare_maps(ours("scorecam", channels=scorecam_channels).values[..., 0],
                                    resize_map(np.asarray(theirs, np.float32), x.shape[:2])))
    if "xplique" in peers:
        theirs = peer_runners("xplique", clf, x, c, [n], rise_masks)[f"RISE, {rise_masks} masks"]()
        mine = ours("rise", masks=rise_masks).values[..., 0]
        other_seed = ours("rise", masks=rise_masks, seed=1).values[..., 0]
        r_peer = np.corrcoef(mine.ravel(), np.asarray(theirs).ravel())[0, 1]
        r_seed = np.corrcoef(mine.ravel(), other_seed.ravel())[0, 1]
        lines.append(f"- RISE, {rise_masks} masks, against Xplique: r = {r_peer:.3f}; between "
                     f"two of our seeds r = {r_seed:.3f} (both random; Xplique's masks share "
                     "one crop offset per batch and it divides each pixel by its own mask "
                     "sum, ours is eq. 6 with the scores centred on their mean)")
    return lines


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
    parser.add_argument("--rise-masks", type=int, default=RISE_MASKS,
                        help=f"RISE's masks (default {RISE_MASKS})")
    parser.add_argument("--scorecam-channels", default="all",
                        choices=["all", "512", "256", "128", "64"],
                        help="Score-CAM's channels (default all: one forward pass each)")
    parser.add_argument("--rows", choices=["all", "new"], default="all",
                        help="'new': only the methods the peers have (XRAI, Blur IG, Guided "
                             "IG, Score-CAM, LayerCAM, RISE) and vanilla")
    parser.add_argument("--no-agreement", action="store_true",
                        help="skip the agreement of the new methods with the peers' maps")
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
    agreement: list[str] = []
    for key in models:
        sizes = default_sizes if args.sizes else SIZES.get(key, default_sizes)
        clf, weights = load_model(key)
        x, _ = fit_to_model(photo.pixels, clf.input_size)
        x = x.astype(np.float32)
        c = int(np.argmax(clf.logits(x[None])[0]))
        occluded = occlusion_count(clf.input_size)
        channels = int(clf.layer_activations(x[None]).shape[-1])
        if args.scorecam_channels != "all":
            channels = min(channels, int(args.scorecam_channels))
        forwards = (channels, args.rise_masks)
        floor = Floor(clf)
        print(f"\n## {key} ({weights} weights), class {c}, adapter batch {clf.batch_size}",
              flush=True)
        floors = measure_floors(floor, x, c, sizes, occluded, repeats, budget, forwards,
                                clf.batch_size)
        for name, seconds in floors.items():
            print(f"  floor {name}: {seconds * 1000:.1f} ms", flush=True)
        results: dict[str, dict[str, float]] = {}
        floor_of: dict[str, str] = {}
        old_cases = project_cases(sizes, occluded)
        if args.rows == "new":
            old_cases = old_cases[:1]  # vanilla, as a reference row
        cases = old_cases + [
            (label.replace(f"{RISE_MASKS} masks", f"{args.rise_masks} masks"),
             floor_name.replace(f"forward of {RISE_MASKS}", f"forward of {args.rise_masks}"),
             method, {**params, "masks": args.rise_masks} if method == "rise" else
             {**params, "channels": args.scorecam_channels} if method == "scorecam" else params)
            for label, floor_name, method, params in peer_method_cases(sizes, channels)]
        for label, floor_name, method, params in cases:
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
                runners = peer_runners(peer, clf, x, c, sizes, args.rise_masks,
                                       args.scorecam_channels)
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported
                notes.append(f"{PEERS[peer]} on {key} failed to set up: {exc}")
                continue
            for short, fn in runners.items():
                if short not in floor_of:
                    continue  # a row this run does not have (--rows new)
                try:
                    seconds = time_best(fn, repeats, budget)
                except Exception as exc:  # noqa: BLE001
                    notes.append(f"{PEERS[peer]} {short} on {key} failed: "
                                 f"{type(exc).__name__}: {str(exc)[:120]}")
                    continue
                results.setdefault(short, {})[peer] = seconds
                print(f"  {PEERS[peer]} {short}: {seconds * 1000:.1f} ms "
                      f"({seconds / floors[floor_of[short]]:.2f}x)", flush=True)
        again = measure_floors(floor, x, c, sizes, occluded, max(3, repeats // 2), budget,
                               forwards, clf.batch_size)
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
            if not args.no_agreement:
                try:
                    agreement = agreement_lines(peers, clf, x, c, sizes[0], args.rise_masks,
                                                args.scorecam_channels)
                except Exception as exc:  # noqa: BLE001 - reported, the timings stand
                    agreement = [f"- the agreement check failed: {type(exc).__name__}: {exc}"]
        body = compose(repeats, budget, machine, peaks, out, drift_lines, notes, profile,
                       agreement)
        if not args.no_write:
            write_doc(body)  # after every model, so a stopped run keeps what it measured
    print("\n" + body)
    if not args.no_write:
        print(f"\nwrote {DOC.relative_to(ROOT)}")


def compose(repeats: int, budget: float, machine: list[str], peaks: list[str], out: list[str],
            drift_lines: list[str], notes: list[str], profile: list[str],
            agreement: list[str] = ()) -> str:
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
            "its two measurements (start and end of the model's timings). XRAI's floor is "
            "its 2n - 1 path points' gradients in the adapter's batches; Guided IG's path is "
            "adaptive (each step needs the last one's gradient), so its floor is n single "
            "gradients (n times forward + backward); Score-CAM's and RISE's are the forward "
            "passes of all masked images, 32 at a time.", "",
            "**Machine**", "", *machine,
            f"- Load average at the end: {loadavg()}",
            f"- Peak resident memory after each model: {', '.join(peaks)}", "",
            *out, "", "**Floor drift** (start → end of each model's measurements)", "",
            *drift_lines, "", "**Notes**", "", *[f"- {n}" for n in notes]]
    if agreement:
        text += ["", f"**Agreement with the peers** ({DEFAULT_MODEL_KEY}, the same photo and "
                 "class, the same parameters)", "", *agreement]
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
