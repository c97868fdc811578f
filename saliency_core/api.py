"""Saliency Studio's Python API: the app's maps in a notebook or a script.

::

    import saliency_core as sc

    model = sc.load_model("efficientnet_lite0")        # the default model, offline
    image = sc.load_image("photo.jpg")                  # or sc.load_sample("chelsea")
    explanation = sc.explain(model, image, "smoothgrad", samples=10)
    sc.overlay_figure(explanation).show()

Every step is the one the app and the command line run, not a second copy:
models load as in :func:`saliency_core.audit.engine.open_model`, photos decode
in the same killable worker process as an upload
(:func:`saliency_core.imaging.load_image`), images are fitted by
:func:`saliency_core.imaging.fit_to_model`, maps come from
:func:`saliency_core.pipeline.explain` and are scaled by
:func:`saliency_core.pipeline.to_display_map`, the record is
:func:`saliency_core.audit.provenance.make_provenance` and the figures are
:mod:`saliency_core.plotting`'s. So a map computed here equals Explore's for the
same settings.

Shapes: photos are ``(H, W, 3)`` uint8 RGB; the model sees ``(h, w, 3)`` float32
in 0-255 (its own preprocessing runs inside the differentiated graph); a raw
attribution is ``(h, w, C)`` float32 (``C`` = 3, or 1 for Grad-CAM and occlusion)
and its display map ``(h, w)``.

Trust: a registered model, or a ``.keras`` file that passed the same checks as
an upload (an isolated child process, ``safe_mode``), is safe to load from
anywhere. A ``keras.Model`` object you pass is trusted as it is: you built it in
your own process, so nothing here can check it or needs to.

TensorFlow is imported on first use (``load_model``, ``explain``), so
``import saliency_core`` and :func:`load_image` stay quick.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from saliency_core.imaging import LoadedImage, fit_to_model
from saliency_core.imaging import load_image as _decode_safely
from saliency_core.methods import METHODS, Target

if TYPE_CHECKING:
    import keras
    import plotly.graph_objects as go

    from saliency_core.audit.outputs import ModelIdentity
    from saliency_core.methods.base import ProgressCallback
    from saliency_core.pipeline import Prediction
    from saliency_core.tf_adapter import KerasClassifier

ImageSource = LoadedImage | str | os.PathLike | bytes | np.ndarray
"""What :func:`explain` takes as an image: a :class:`LoadedImage`, or anything
:func:`load_image` reads."""

IMAGENET = "imagenet"
"""``labels="imagenet"``: the 1000 ImageNet-1k class names shipped with the package."""


@dataclass(frozen=True)
class _ModelInfo:
    identity: ModelIdentity
    display_name: str


_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""How provenance and captions name each model :func:`load_model` returned."""


# ------------------------------------------------------------------------- models


def load_model(key_or_path: str | os.PathLike | keras.Model, *,
               preprocessing: str | Callable | None = None,
               labels: str | os.PathLike | bytes | Sequence[str] | None = None
               ) -> KerasClassifier:
    """Load a classifier to explain.

    Args:
        key_or_path: one of three things.

            * A registered model's key (``"efficientnet_lite0"``, the default, works
              offline; ``"vgg16"``, ``"mobilenet_v2"``, ``"resnet50"``,
              ``"efficientnet_b0"``, ``"inception_v3"`` find or download their
              weights as in the app). It brings its own preprocessing and the
              ImageNet labels.
            * A path to a ``.keras`` classifier. It goes through the same safe loading
              as an upload on the Models page or the command line's ``--model``: the
              archive is inspected, loaded and measured in an isolated child process
              with memory and time limits, then loaded with ``safe_mode=True`` (no
              Python code in the file ever runs).
            * A ``keras.Model`` you built or loaded yourself (e.g.
              ``keras.applications.MobileNetV2()``). It is **trusted as it is**:
              it already lives in your process, so it is not checked the way a file
              from someone else is. It is never modified (a softmax head is read
              through a linear copy, so maps explain the pre-softmax score).

            A model takes ``(B, h, w, 3)`` images with a fixed ``h, w`` and gives
            ``(B, K)`` class scores.
        preprocessing: for a file or an in-memory model, how 0-255 RGB pixels become
            the model's input: ``"raw"`` (default: the model takes 0-255), ``"unit"``
            (x / 255), ``"tf"`` (x / 127.5 - 1), ``"lite"`` ((x - 127) / 128) or
            ``"caffe"`` (BGR minus the ImageNet mean). An in-memory model may also take
            a function of a ``(B, h, w, 3)`` tensor written with ``keras.ops``, so it
            runs inside the differentiated graph.
        labels: class names for a file or an in-memory model: a sequence of names, a
            labels file (a path, or its bytes: UTF-8, one name per line), or
            ``"imagenet"`` for the bundled ImageNet-1k names. Default ``class 0`` ...
            ``class K-1``.

    Returns:
        A :class:`~saliency_core.tf_adapter.KerasClassifier` (its ``input_size`` is
        ``(h, w)``, ``class_names`` has ``K`` names), ready for :func:`explain`.

    Raises:
        ValueError: an unknown key or a missing file, a file that is not a usable
            classifier (the message says why), labels that do not fit, or options a
            registered model does not take.
        TypeError: ``key_or_path`` is none of the three.
        saliency_core.models.registry.WeightsUnavailableError: a registered model's
            weights are neither on this machine nor downloadable.
    """
    if isinstance(key_or_path, str | os.PathLike):
        return _load_named(key_or_path, preprocessing, labels)
    import keras

    if not isinstance(key_or_path, keras.Model):
        raise TypeError("load_model() takes a registered model's key, a path to a .keras "
                        f"file or a keras.Model, not {type(key_or_path).__name__}")
    return _wrap_keras_model(key_or_path, preprocessing, labels)


def _load_named(key_or_path: str | os.PathLike, preprocessing, labels) -> KerasClassifier:
    from saliency_core.audit.engine import ModelChoice, file_choice, open_model
    from saliency_core.models.registry import MODELS, WeightsUnavailableError

    text = os.fspath(key_or_path)
    if isinstance(key_or_path, str) and text in MODELS:
        if preprocessing is not None or labels is not None:
            raise ValueError(f"{text} brings its own preprocessing and ImageNet labels; "
                             "preprocessing= and labels= are for files and keras.Model "
                             "objects")
        try:
            classifier, identity = open_model(ModelChoice(text))
        except ValueError as exc:  # ModelChoiceError: no weights here, none downloadable
            raise WeightsUnavailableError(str(exc)) from None
        return _remember(classifier, identity, MODELS[text].display_name)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"{text!r} is neither a registered model ({', '.join(MODELS)}) "
                         "nor a .keras file")
    if preprocessing is not None and not isinstance(preprocessing, str):
        raise TypeError("a .keras file takes a preprocessing key (raw, unit, tf, lite, "
                        "caffe); a function is for a keras.Model you pass yourself")
    classifier, identity = open_model(file_choice(path, _labels_bytes(labels), preprocessing))
    return _remember(classifier, identity, path.name)


def _labels_bytes(labels) -> bytes | None:
    """A labels argument as a labels file's bytes (one name per line)."""
    if labels is None or isinstance(labels, bytes):
        return labels
    if isinstance(labels, str) and labels == IMAGENET:
        from saliency_core.labels import load_imagenet_labels

        return "\n".join(load_imagenet_labels()).encode()
    if isinstance(labels, str | os.PathLike):
        return Path(labels).expanduser().read_bytes()
    names = [str(name) for name in labels]
    if any("\n" in name or not name.strip() for name in names):
        raise ValueError("class names must be non-empty and on one line each")
    return "\n".join(names).encode()


def _wrap_keras_model(model: keras.Model, preprocessing, labels) -> KerasClassifier:
    """An in-memory model, trusted: wrapped as it is, with its weights' SHA-256 for
    provenance (there is no file to hash)."""
    from saliency_core.audit.outputs import ModelIdentity
    from saliency_core.models.custom import parse_labels
    from saliency_core.models.preprocessing import get_preprocessor
    from saliency_core.tf_adapter import KerasClassifier, UnsupportedModelError

    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        raise UnsupportedModelError(
            "The model has no defined input and output: pass a functional or Sequential "
            "model built on a fixed input, e.g. keras.Input((224, 224, 3)).")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise UnsupportedModelError("The model must have one output of class scores "
                                    "(B, classes).")
    num_classes = int(model.outputs[0].shape[-1])
    names = parse_labels(_labels_bytes(labels), num_classes)
    if callable(preprocessing):
        function, key = preprocessing, getattr(preprocessing, "__name__", "custom function")
    else:
        key = preprocessing or "raw"
        function = get_preprocessor(key)
    classifier = KerasClassifier(model, function, names)
    identity = ModelIdentity("keras.Model", None, weights_sha256(model), key)
    return _remember(classifier, identity, model.name)


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 of a model's weights: every weight array's bytes, in ``model.weights``
    order (what provenance records for a model that has no file)."""
    import keras

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def _remember(classifier: KerasClassifier, identity: ModelIdentity,
              display_name: str) -> KerasClassifier:
    _MODELS[classifier] = _ModelInfo(identity, display_name)
    return classifier


def _model_info(classifier: KerasClassifier) -> _ModelInfo:
    """How a model is named; one built by hand (not by :func:`load_model`) is named by
    its Keras name and weights hash."""
    if classifier not in _MODELS:
        from saliency_core.audit.outputs import ModelIdentity

        identity = ModelIdentity("keras.Model", None, weights_sha256(classifier.model),
                                 getattr(classifier.preprocess, "__name__", "custom"))
        _remember(classifier, identity, classifier.model.name)
    return _MODELS[classifier]


# ------------------------------------------------------------------------- images


def load_image(source: str | os.PathLike | bytes | np.ndarray) -> LoadedImage:
    """Read a photo the way the app reads an upload.

    The file's structure is checked first, then it is decoded in a separate worker
    process with a memory and a time limit; it is turned upright from its EXIF
    orientation, transparency is flattened onto white, and its longer side is brought
    down to at most 1024 pixels.

    Args:
        source: a path to a JPEG, PNG, WebP, BMP, GIF or TIFF file (at most 50 MB),
            the file's bytes, or an ``(H, W, 3)`` uint8 RGB array (sent through the
            same path as a PNG of it, so it gives the same map as uploading that PNG).

    Returns:
        A :class:`~saliency_core.imaging.LoadedImage`: ``pixels`` ``(H, W, 3)`` uint8,
        ``digest`` (the SHA-256 of the file's bytes), ``name``, ``original_size``,
        ``notes`` on what was converted.

    Raises:
        saliency_core.imaging.ImageError: not an image this app reads, damaged, too
            large or too costly to decode (the message says which).
        OSError: the file cannot be read.
    """
    if isinstance(source, bytes):
        return _decode_safely(source)
    if isinstance(source, np.ndarray):
        from saliency_core.plotting import encode_png

        pixels = np.asarray(source)
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"an image array must be (H, W, 3) uint8 RGB, not "
                             f"{pixels.shape} {pixels.dtype}")
        return dataclasses.replace(_decode_safely(encode_png(pixels)), name="array.png")
    if isinstance(source, str | os.PathLike):
        from saliency_core.audit.uploads import read_image_file

        path = Path(source).expanduser()
        return dataclasses.replace(_decode_safely(read_image_file(path)), name=path.name)
    raise TypeError(f"load_image() takes a path, bytes or an (H, W, 3) uint8 array, not "
                    f"{type(source).__name__}")


def load_sample(key: str = "chelsea") -> LoadedImage:
    """One of the photos shipped with the package, read as :func:`load_image` reads a file.

    Args:
        key: ``"chelsea"`` (a tabby cat, the app's default), ``"coffee"``,
            ``"astronaut"`` or ``"rocket"`` (credits in NOTICE.md).

    Raises:
        KeyError: an unknown sample.
    """
    from saliency_core.samples import SAMPLES, read_sample

    data = read_sample(key)
    return dataclasses.replace(_decode_safely(data), name=SAMPLES[key][1])


# ------------------------------------------------------------------------ explain


@dataclass(frozen=True, eq=False)
class Explanation:
    """One map with everything needed to show, check and reproduce it.

    (Not :class:`saliency_core.pipeline.Explanation`, the app's internal pair of an
    attribution and its time.)

    Attributes:
        values: ``(h, w, C)`` float32, the raw attribution at the model's input
            resolution (``C`` = 3, or 1 for Grad-CAM and occlusion); the app's
            ``.npy`` download.
        saliency: ``(h, w)`` float32, the display map: channels reduced with
            ``reduction``, clipped at ``clip_percentile`` and scaled to ``[0, 1]``
            (``[-1, 1]`` when signed).
        view: ``(H', W', 3)`` uint8, the region of the photo the model saw (the
            centre crop, or the whole photo with ``fit="squash"``).
        model_input: ``(h, w, 3)`` float32 in 0-255, what the model got.
        logits: ``(K,)`` float32, the class scores before softmax.
        probabilities: ``(K,)`` float32, the softmax probabilities.
        top5: the five most probable classes (fewer for a smaller model), best first,
            each with ``index``, ``name`` and ``probability``.
        target: the explained class (``class_index``), the contrast class if any and
            the score kind (``"logit"`` or ``"probability"``).
        class_name, contrast_name: their names.
        score: the explained score's value at this image (``S_a`` or ``S_a - S_b``).
        method: the method's key; ``params``: every parameter with the value used.
        reduction, clip_percentile: how ``saliency`` was made from ``values``.
        info: method-specific facts (e.g. Integrated Gradients' completeness gap).
        seconds: the time the map took.
        model_name, image_name: for captions.
        provenance: the JSON-ready record that Explore, the Audit page and the
            command line write (model and weights SHA-256, preprocessing, input size,
            fit and crop box, image SHA-256, class, top-5, method with every
            parameter and seed, library versions, map statistics).
    """

    values: np.ndarray
    saliency: np.ndarray
    view: np.ndarray
    model_input: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray
    top5: list[Prediction]
    target: Target
    class_name: str
    contrast_name: str | None
    score: float
    method: str
    params: dict
    reduction: str
    clip_percentile: float | None
    info: dict
    seconds: float
    model_name: str
    image_name: str
    provenance: dict = field(repr=False)

    @property
    def signed(self) -> bool:
        """Whether the display map keeps its sign (``[-1, 1]``)."""
        return self.reduction == "signed"


def _class_index(value: int | str | None, names: tuple[str, ...], what: str) -> int | None:
    from saliency_core.labels import find_class, rank_classes, shorten_label

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer | str):
        raise TypeError(f"{what} is a class index or a class name, not {value!r}")
    if isinstance(value, str):
        index = find_class(value, names)
        if index is None:
            near = [f"{shorten_label(names[i])} ({i})" for i in rank_classes(value, names, 3)]
            hint = f"; close: {', '.join(near)}" if near else ""
            raise ValueError(f"{what}: no class is named {value!r}{hint}")
        return index
    if not 0 <= int(value) < len(names):
        raise ValueError(f"{what} {int(value)} is outside 0..{len(names) - 1}")
    return int(value)


def explain(model: KerasClassifier, image: ImageSource, method: str = "vanilla", *,
            target: int | str | None = None, contrast: int | str | None = None,
            score: str = "logit", fit: str = "crop", reduction: str | None = None,
            clip_percentile: float | None = 98.0, progress: ProgressCallback | None = None,
            **params: Any) -> Explanation:
    """Explain one image: the attribution of a class score to the pixels.

    The defaults are the app's: the top-1 class, the pre-softmax score (Simonyan et
    al. 2013, arXiv 1312.6034), the centre crop, max |w| over colour channels and
    clipping at the 98th percentile; a method's parameters default to the app's
    too. The same settings give the same map as Explore.

    Args:
        model: from :func:`load_model`.
        image: a :class:`~saliency_core.imaging.LoadedImage`, or what
            :func:`load_image` takes (a path, bytes, an ``(H, W, 3)`` uint8 array).
        method: a key of ``saliency_core.methods.METHODS`` (each with its paper), e.g.
            ``"vanilla"`` (the gradient), ``"smoothgrad"``, ``"integrated_gradients"``,
            ``"gradcam"``, ``"occlusion"``, ``"xrai"`` or ``"rise"``; the list is in
            docs/python-api.md.
        target: the class to explain, an index or a name (``"tabby"``); default the
            model's top-1 class for this image.
        contrast: a second class ``b``: explain ``S_target - S_b``, what makes the model
            prefer one over the other (the map is then signed).
        score: ``"logit"`` (the class score before softmax) or ``"probability"``.
        fit: ``"crop"`` (the largest centred region with the model's aspect ratio) or
            ``"squash"`` (the whole photo, stretched).
        reduction: how colour channels become one value per pixel: ``"max_abs"``,
            ``"mean_abs"``, ``"l2"`` or ``"signed"``; default as in the app (signed for a
            contrast and for occlusion).
        clip_percentile: values above this percentile show at full strength; ``None``
            or 100 for no clipping.
        progress: called as ``progress(done, total)`` while sampling methods run.
        **params: the method's parameters, e.g. ``samples=10, seed=0`` for SmoothGrad,
            ``steps=100`` for Integrated Gradients, ``layer="..."`` for Grad-CAM. Names
            are checked; unlike the app and the command line, no upper bounds apply:
            the work runs on your machine.

    Returns:
        An :class:`Explanation`.

    Raises:
        ValueError: an unknown method, parameter, class, fit, score or reduction.
        TypeError: ``model`` did not come from :func:`load_model`.
        saliency_core.imaging.ImageError: the image cannot be read.
    """
    from saliency_core.audit.batch import method_parameters
    from saliency_core.audit.provenance import make_provenance
    from saliency_core.labels import shorten_label
    from saliency_core.pipeline import display_reduction, to_display_map, top_k
    from saliency_core.pipeline import explain as run_method
    from saliency_core.postprocess import REDUCTIONS
    from saliency_core.tf_adapter import KerasClassifier, softmax

    if not isinstance(model, KerasClassifier):
        raise TypeError("explain() takes a model from saliency_core.load_model(...), not "
                        f"{type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    method_parameters(method, params)  # unknown names: a ValueError naming the known ones
    if score not in ("logit", "probability"):
        raise ValueError(f"score is 'logit' or 'probability', not {score!r}")
    if reduction is not None and reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
    clip = None if clip_percentile is None or clip_percentile >= 100 else float(clip_percentile)
    names = model.class_names
    class_index = _class_index(target, names, "target")
    contrast_index = _class_index(contrast, names, "contrast")
    if contrast_index is not None and contrast_index == class_index:
        raise ValueError("a class contrasted with itself gives a map of zeros; choose "
                         "another contrast class")

    loaded = image if isinstance(image, LoadedImage) else load_image(image)
    model_input, view = fit_to_model(loaded.pixels, model.input_size, fit)
    logits = model.logits(model_input[None])[0]
    probabilities = softmax(logits[None])[0]
    if class_index is None:
        class_index = top_k(probabilities, names, 1)[0].index
    chosen = Target(class_index, contrast_index, score)
    result = run_method(model, model_input, chosen, method, params, progress)
    values = result.attribution.values
    reduction = reduction or display_reduction(method, contrast_index is not None)
    info = _model_info(model)
    provenance = make_provenance(
        model_key=info.identity.key, model_file=info.identity.file,
        weights_sha256=info.identity.weights_sha256, preprocessing=info.identity.preprocessing,
        classifier=model, image_name=loaded.name or "image", image_sha256=loaded.digest,
        image_size=loaded.original_size, fit=fit, probabilities=probabilities, target=chosen,
        method=method, params=params, values=values, seconds=result.seconds,
        reduction=reduction, clip_percentile=clip,
        class_choice="top1" if target is None else "fixed", info=result.attribution.info,
        decoded_size=loaded.decoded_size,
        fitted_size=(loaded.pixels.shape[1], loaded.pixels.shape[0]))
    provenance["engine"] = {"name": "python-api"}
    return Explanation(
        values=values, saliency=to_display_map(values, reduction, clip), view=view,
        model_input=model_input, logits=logits, probabilities=probabilities,
        top5=top_k(probabilities, names, min(5, len(names))), target=chosen,
        class_name=shorten_label(names[class_index]),
        contrast_name=None if contrast_index is None else shorten_label(names[contrast_index]),
        score=float(result.attribution.score), method=method,
        params=dict(provenance["method"]["params"]), reduction=reduction,
        clip_percentile=clip, info=dict(result.attribution.info), seconds=result.seconds,
        model_name=info.display_name, image_name=loaded.name or "image",
        provenance=provenance)


# ------------------------------------------------------------------------ figures


def _legend(explanation: Explanation):
    from saliency_core.plotting import make_legend

    contrast = (None if explanation.contrast_name is None
                else (explanation.class_name, explanation.contrast_name))
    return make_legend(explanation.signed, contrast)


def overlay_figure(explanation: Explanation, *, colormap: str = "viridis",
                   opacity: float = 0.6, fade: bool = True, title: str | None = None
                   ) -> go.Figure:
    """Explore's overlay: the photo the model saw with the map on top, a titled colour bar,
    an opacity slider that works in the browser, and hover values.

    Args:
        explanation: from :func:`explain`.
        colormap: ``"viridis"`` (default), ``"cividis"`` (colour-blind safe),
            ``"inferno"``, ``"greys"`` or ``"jet"``; signed maps are always red-blue.
        opacity: the map's starting opacity, 0 to 1 (in steps of 0.1).
        fade: weak values fade so the photo shows through (the app's default).
        title: an optional title.

    Returns:
        A ``plotly.graph_objects.Figure`` whose axes count the model's input pixels
        ``(w, h)``; show it with ``.show()`` or save it with ``.write_html(...)``.
    """
    from saliency_core.plotting import make_overlay_figure
    from saliency_core.postprocess import reduce_channels

    return make_overlay_figure(explanation.view, explanation.saliency, colormap, opacity,
                               legend=_legend(explanation), title=title,
                               raw=reduce_channels(explanation.values, explanation.reduction),
                               fade=fade)


def overlay_png(explanation: Explanation, *, colormap: str = "viridis", opacity: float = 0.6,
                fade: bool = True, caption: str | None = None) -> bytes:
    """Explore's PNG download: the overlay with its colour bar and a caption line.

    Args:
        explanation: from :func:`explain`.
        colormap, opacity, fade: as in :func:`overlay_figure`.
        caption: the line under the image; default: model, method, class and file.

    Returns:
        PNG bytes, at the resolution of the region the model saw (``view``), plus the
        colour bar and the caption.
    """
    from saliency_core.plotting import render_overlay_png

    if caption is None:
        target = f"{explanation.class_name} (class {explanation.target.class_index})"
        if explanation.contrast_name is not None:
            target += (f" − {explanation.contrast_name} "
                       f"(class {explanation.target.contrast_index})")
        caption = (f"{explanation.model_name} · {METHODS[explanation.method].label} · "
                   f"{target} · {explanation.image_name}")
    return render_overlay_png(explanation.view, explanation.saliency, colormap, opacity,
                              _legend(explanation), caption, fade)
