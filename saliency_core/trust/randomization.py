"""Model-randomisation sanity checks (Adebayo et al. 2018, arXiv 1810.03292, sec. 4).

If a saliency map explains a model, it must change when the model's learnt
weights are replaced by random ones. The **cascading** check re-initialises the
model block by block, from the output down, and recomputes the map after each
step; the **independent** check randomises one block at a time, the others
keeping their trained weights. Each step's map is compared with the original
one (:mod:`saliency_core.trust.similarity`).

All of it runs on **one** copy of the model, made once: a :class:`ModelRandomizer`
clones the classifier's logit model, wraps the clone in its own
:class:`~saliency_core.tf_adapter.KerasClassifier` (so its traced function reads
the clone's variables) and assigns new values to those variables between steps.
A step therefore costs one map and no retrace, and the cached model the app
shows is never touched: the clone's trained values are restored from it.

Weights are drawn from each layer's own initialisers (``kernel_initializer``,
``depthwise_initializer``, ``gamma_initializer``…); only trainable variables
change, so batch-norm statistics stay as they are, as in the paper.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import keras
import numpy as np

from saliency_core.methods import Target, get_method
from saliency_core.methods.base import ProgressCallback, report
from saliency_core.models.efficientnet_lite import LITE0_STAGES
from saliency_core.tf_adapter import KerasClassifier
from saliency_core.trust.edges import compute_sobel_edges
from saliency_core.trust.similarity import compare_maps, compute_spearman, to_abs_map
from saliency_core.trust.verdicts import Verdict, judge_randomization

Mode = Literal["cascading", "independent"]
Explainer = Callable[[KerasClassifier, np.ndarray, Target], np.ndarray]
"""``explain(classifier, image (H, W, 3), target) -> attribution (H, W, C)``."""

GENERIC_GROUPS = 8
DRAWS = 3
"""Independent draws of the random weights by default (Adebayo et al. used one; a single
draw can be an outlier: on EfficientNet-Lite0 one seed sat 4-6 standard deviations
below eight others)."""
MAX_DRAWS = 10


@dataclass(frozen=True)
class Block:
    """A group of layers randomised together.

    Attributes:
        name: shown to users, e.g. ``"stage 6"`` or ``"classifier"``.
        layers: names of the layers (with weights) in the group.
    """

    name: str
    layers: tuple[str, ...]


def iter_weighted_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Leaf layers that hold weights, in graph order (nested models are walked into)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_weighted_layers(layer)
        elif layer.weights:
            yield layer


def _group_by(layers: list[keras.layers.Layer], label: Callable[[str], str]) -> list[Block]:
    groups: dict[str, list[str]] = {}
    for layer in layers:
        groups.setdefault(label(layer.name), []).append(layer.name)
    return [Block(name, tuple(names)) for name, names in groups.items()]


def _lite0_label(name: str) -> str:
    if name in ("conv_stem", "bn0"):
        return "stem"
    if name.startswith("blocks_"):
        index = int(name.split("_")[1])
        ends = np.cumsum([stage[0] for stage in LITE0_STAGES])
        return f"stage {int(np.searchsorted(ends, index, side='right')) + 1}"
    return "head"


def _vgg_label(name: str) -> str:
    if name.startswith("block") and "_" in name:
        return f"conv block {name[5:name.index('_')]}"
    return "classifier"


def define_blocks(model: keras.Model, model_key: str | None = None,
                  groups: int = GENERIC_GROUPS) -> list[Block]:
    """The blocks of ``model`` for the randomisation checks, from input to output.

    * EfficientNet-Lite0: the stem, its 7 MBConv stages and the head (conv + fc);
    * VGG16: its 5 conv blocks and the classifier (fc1, fc2, predictions);
    * anything else (e.g. an uploaded ``.keras`` model): the layers with weights,
      in graph order, split into about ``groups`` groups of similar size.

    Args:
        model: the model whose layers are grouped.
        model_key: the registry key, if it is a registered model.
        groups: how many groups the generic fallback makes.
    """
    layers = list(iter_weighted_layers(model))
    if not layers:
        raise ValueError("the model has no layers with weights to randomise")
    names = {layer.name for layer in layers}
    if model_key == "efficientnet_lite0" or {"conv_stem", "conv_head", "fc"} <= names:
        return _group_by(layers, _lite0_label)
    if model_key == "vgg16" or {"block1_conv1", "fc1", "fc2"} <= names:
        return _group_by(layers, _vgg_label)
    blocks = []
    for part in np.array_split(np.arange(len(layers)), min(groups, len(layers))):
        chosen = [layers[i].name for i in part]
        label = chosen[0] if len(chosen) == 1 else f"{chosen[0]} … {chosen[-1]}"
        blocks.append(Block(f"group {len(blocks) + 1} ({label})", tuple(chosen)))
    return blocks


def _initializer_for(layer: keras.layers.Layer, variable) -> keras.initializers.Initializer:
    leaf = variable.path.rsplit("/", 1)[-1]
    candidates = [f"{leaf}_initializer", f"{leaf.removesuffix('_kernel')}_initializer"]
    if leaf == "kernel":
        candidates.append("depthwise_initializer")
    for attr in candidates:
        found = getattr(layer, attr, None)
        if isinstance(found, keras.initializers.Initializer):
            return found
    return (keras.initializers.GlorotUniform() if len(variable.shape) >= 2
            else keras.initializers.Zeros())


def draw_initial_value(layer: keras.layers.Layer, variable, seed: int) -> np.ndarray:
    """A fresh value for ``variable`` from ``layer``'s own initialiser, seeded."""
    initializer = _initializer_for(layer, variable)
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = int(seed)
        initializer = type(initializer).from_config(config)
    value = initializer(tuple(variable.shape), dtype=variable.dtype)
    return keras.ops.convert_to_numpy(value)


class ModelRandomizer:
    """One copy of a classifier's model whose blocks can be re-initialised and restored.

    Built once per model (it holds a second copy of the weights). The copy's
    :attr:`classifier` traces its functions once; randomising and restoring only
    assign variables. Use :meth:`session` so concurrent users take turns and the
    copy always returns to the trained weights.

    Args:
        classifier: the cached classifier; its model is read, never modified.
        model_key: the registry key, to pick the block definition.
        seed: base seed of the initialisers.
    """

    def __init__(self, classifier: KerasClassifier, model_key: str | None = None,
                 seed: int = 0):
        source = classifier.logit_model
        self.copy_model = keras.models.clone_model(source)
        self.copy_model.set_weights([np.array(w) for w in source.get_weights()])
        self.classifier = KerasClassifier(self.copy_model, classifier.preprocess,
                                          classifier.class_names,
                                          batch_size=classifier.batch_size)
        self.blocks = define_blocks(self.copy_model, model_key)
        self.seed = seed
        self.model_key = model_key
        pairs = list(zip(self.copy_model.weights, source.weights, strict=True))
        if any(tuple(c.shape) != tuple(s.shape) for c, s in pairs):
            raise ValueError("the copy's weights do not line up with the model's")
        trained = {id(copy): original for copy, original in pairs}
        by_name = {layer.name: layer for layer in iter_weighted_layers(self.copy_model)}
        self._variables: dict[str, list[tuple[keras.layers.Layer, object, object]]] = {
            block.name: [(by_name[name], var, trained[id(var)])
                         for name in block.layers for var in by_name[name].trainable_weights]
            for block in self.blocks}
        self._changed: set[str] = set()
        self._lock = threading.Lock()

    def randomize(self, block: Block, seed: int | None = None) -> None:
        """Assign freshly initialised values to ``block``'s trainable variables."""
        base = self.seed if seed is None else seed
        for i, (layer, variable, _) in enumerate(self._variables[block.name]):
            variable.assign(draw_initial_value(layer, variable, base * 1009 + i))
        self._changed.add(block.name)

    def restore(self, block: Block | None = None) -> None:
        """Give ``block`` (or every changed block) its trained values back."""
        names = [block.name] if block is not None else list(self._changed)
        for name in names:
            for _, variable, original in self._variables[name]:
                variable.assign(original.value)
            self._changed.discard(name)

    def session(self) -> _Session:
        """A context that holds the copy for one sweep and restores it afterwards."""
        return _Session(self)


class _Session:
    def __init__(self, randomizer: ModelRandomizer):
        self.randomizer = randomizer

    def __enter__(self) -> ModelRandomizer:
        self.randomizer._lock.acquire()
        self.randomizer.restore()
        return self.randomizer

    def __exit__(self, *exc) -> None:
        try:
            self.randomizer.restore()
        finally:
            self.randomizer._lock.release()


def make_method_explainer(method: str, params: dict | None = None) -> Explainer:
    """An :data:`Explainer` running attribution ``method`` with ``params``."""
    instance = get_method(method, **(params or {}))

    def explain(classifier: KerasClassifier, image: np.ndarray, target: Target) -> np.ndarray:
        return instance.attribute(classifier, image, target).values

    return explain


def derive_seed(*parts: object, bits: int = 20) -> int:
    """A seed in ``[0, 2**bits)`` from the SHA-256 of ``parts`` (e.g. image digest, model,
    draw number): the same parts give the same seed on every machine and Python."""
    text = "|".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % (1 << bits)


def default_seed_text(image: np.ndarray, model_name: str) -> str:
    """What seeds a check when the caller names nothing: the image's bytes and the model."""
    digest = hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes())
    return f"{digest.hexdigest()}|{model_name}"


def to_signed_map(values: np.ndarray) -> np.ndarray:
    """The ``(H, W)`` signed map of an attribution ``(H, W, C)``: the sum over channels.

    Adebayo et al. 2018 report the rank correlation with and without the absolute
    value; the signed one also sees a map whose sign pattern flips.
    """
    values = np.asarray(values, dtype=np.float64)
    return values if values.ndim == 2 else values.sum(axis=-1)


@dataclass(frozen=True)
class RandomizationResult:
    """The maps and similarities of a randomisation check over several draws.

    Each draw re-initialises the blocks with its own seeds, derived from the image,
    the model and the draw number (:func:`derive_seed`), so a draw is repeatable
    and no single draw is taken for the truth.

    Attributes:
        mode: ``"cascading"`` or ``"independent"``.
        blocks: the block randomised at each step, output first (``S`` of them).
        maps: ``(S + 1, H, W)`` float32 absolute maps of the first draw; index 0 is
            the trained model's.
        spearman: ``(R, S)`` Spearman of |map| to the original, per draw and step.
        spearman_signed: ``(R, S)`` Spearman of the signed maps (sum over channels).
        ssim: ``(R, S)`` SSIM of the normalised |maps|.
        sobel_spearman: Spearman of the original |map| with the image's Sobel edges:
            what a map made without any model would score against it.
        seeds: ``(R,)`` the seed of each draw.
        verdict: the plain-words outcome.
        seconds: how long the check took.
        retraces: traces the copy's functions made during the sweeps (0 once warm).
    """

    mode: Mode
    blocks: tuple[str, ...]
    maps: np.ndarray
    spearman: np.ndarray
    spearman_signed: np.ndarray
    ssim: np.ndarray
    sobel_spearman: float
    seeds: tuple[int, ...]
    verdict: Verdict
    seconds: float
    retraces: int

    @property
    def draws(self) -> int:
        """How many independent draws ``R``."""
        return int(self.spearman.shape[0])

    def step_labels(self) -> list[str]:
        """What is random at each step: cumulative (cascading) or one block (independent)."""
        if self.mode == "independent":
            return list(self.blocks)
        return [f"… + {b}" if i else f"{b}" for i, b in enumerate(self.blocks)]


def run_randomization(randomizer: ModelRandomizer, explain: Explainer, image: np.ndarray,
                      target: Target, mode: Mode = "cascading", draws: int = DRAWS,
                      seed_text: str | None = None,
                      progress: ProgressCallback | None = None) -> RandomizationResult:
    """Randomise blocks from the output down, ``draws`` times, and compare each step's map
    with the original.

    Args:
        randomizer: the model copy (see :class:`ModelRandomizer`).
        explain: makes an attribution ``(H, W, C)`` for ``(classifier, image, target)``.
        image: ``(H, W, 3)`` float 0-255 at the model's input size.
        target: the class to explain.
        mode: ``"cascading"`` keeps earlier steps' blocks random; ``"independent"``
            restores each block before randomising the next.
        draws: independent draws ``R`` (1 to :data:`MAX_DRAWS`), each with its own seeds.
        seed_text: what the seeds derive from, e.g. ``"<image sha256>|<model key>"``;
            by default the image's bytes and the model's name.
        progress: called with the fraction done.

    Returns:
        The first draw's maps, every draw's Spearman (absolute and signed) and SSIM,
        the Sobel baseline and the verdict.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', not {mode!r}")
    if not 1 <= int(draws) <= MAX_DRAWS:
        raise ValueError(f"draws must be between 1 and {MAX_DRAWS}, not {draws}")
    draws = int(draws)
    start = time.perf_counter()
    order = list(reversed(randomizer.blocks))
    if seed_text is None:
        seed_text = default_seed_text(image, randomizer.model_key or randomizer.copy_model.name)
    seeds = tuple(derive_seed(seed_text, "draw", d) for d in range(draws))
    total = 1 + draws * len(order)
    spearman = np.zeros((draws, len(order)))
    signed = np.zeros((draws, len(order)))
    ssim = np.zeros((draws, len(order)))
    with randomizer.session() as copy:
        original = explain(copy.classifier, image, target)
        warm_traces = copy.classifier.trace_count
        original_signed = to_signed_map(original)
        maps = [to_abs_map(original)]
        report(progress, 1 / total)
        for d, seed in enumerate(seeds):
            copy.restore()
            for step, block in enumerate(order):
                if mode == "independent" and step:
                    copy.restore(order[step - 1])
                copy.randomize(block, seed=derive_seed(seed, block.name))
                values = explain(copy.classifier, image, target)
                similarity = compare_maps(original, values)
                spearman[d, step] = similarity.spearman
                ssim[d, step] = similarity.ssim
                signed[d, step] = compute_spearman(original_signed, to_signed_map(values))
                if d == 0:
                    maps.append(to_abs_map(values))
                report(progress, (2 + d * len(order) + step) / total)
        retraces = copy.classifier.trace_count - warm_traces
    sobel = compute_spearman(maps[0], compute_sobel_edges(image))
    verdict = judge_randomization(spearman, mode, [b.name for b in order])
    return RandomizationResult(mode, tuple(b.name for b in order),
                               np.stack(maps).astype(np.float32), spearman, signed, ssim,
                               sobel, seeds, verdict, time.perf_counter() - start, retraces)
