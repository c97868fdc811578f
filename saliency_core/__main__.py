"""Command line: ``python -m saliency_core explain PATH... --out DIR``.

Runs the same core as the app over image files and folders and writes, per
image, the overlay PNG, the raw ``.npy`` map and a provenance JSON, plus
``summary.csv``. See ``python -m saliency_core explain --help``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EPILOG = """\
outputs, for each image STEM:
  DIR/STEM.png    the overlay, at the resolution of the region the model saw
  DIR/STEM.npy    the raw attribution at the model's input resolution (float32,
                  (H, W, 3), or (H, W, 1) for Grad-CAM and occlusion)
  DIR/STEM.json   the provenance: model and weights SHA-256, preprocessing, input
                  size, fit, image SHA-256, class and probability, top-5, method
                  with every parameter and seed, score kind, library versions,
                  time taken, map statistics including the border share
  DIR/summary.csv one row per image; skipped files are listed with their reason

exit status: 0 when at least one image was explained, 1 when none could be,
2 for a wrong argument.

example:
  python -m saliency_core explain photos/ --out audit/ --method smoothgrad \\
      --param samples=10 --batch-size 16
"""


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (exit 2), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class UsageError(ValueError):
    """A wrong argument, reported in one line with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The ``explain`` command's argument parser."""
    from saliency_core.imaging import FIT_MODES
    from saliency_core.methods import METHODS
    from saliency_core.models.preprocessing import PREPROCESSING_LABELS
    from saliency_core.models.registry import DEFAULT_MODEL_KEY, MODELS

    root = _OneLineParser(prog="python -m saliency_core",
                          description="Saliency Studio's command line.")
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                   parser_class=_OneLineParser)
    parser = commands.add_parser(
        "explain", help="explain many images and write maps with their provenance",
        description="Explain every image in PATH... with one model and method; write an "
                    "overlay PNG, the raw .npy map and a provenance JSON per image, and "
                    "summary.csv. Broken images are reported on stderr, listed in the "
                    "summary and skipped.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="an image file, or a folder searched recursively for .jpg, "
                             ".jpeg, .png, .webp, .bmp, .gif, .tif and .tiff files")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created if needed; files in it are overwritten)")
    parser.add_argument("--model", default=DEFAULT_MODEL_KEY, metavar="KEY_OR_FILE.keras",
                        help=f"a registered model ({', '.join(MODELS)}; default "
                             f"{DEFAULT_MODEL_KEY}) or a Keras .keras classifier, loaded "
                             "through the same safe path as an upload")
    parser.add_argument("--method", default="vanilla", choices=list(METHODS), metavar="KEY",
                        help=f"attribution method: {', '.join(METHODS)} (default vanilla)")
    parser.add_argument("--class", dest="class_", default=None, metavar="INDEX_OR_NAME",
                        help="explain this class for every image (an index, or a class name "
                             "such as 'tabby'); default: each image's own top-1 class")
    parser.add_argument("--labels", default=None, metavar="FILE",
                        help="class names for a .keras model, UTF-8, one per line")
    parser.add_argument("--preprocess", default=None, choices=list(PREPROCESSING_LABELS),
                        metavar="KEY",
                        help="input scaling of a .keras model: " + "; ".join(
                            f"{k} = {v}" for k, v in PREPROCESSING_LABELS.items())
                        + " (default raw: the model gets RGB pixels in 0-255). Registered "
                          "models always use their own")
    parser.add_argument("--fit", default="crop", choices=list(FIT_MODES),
                        help="crop: the largest centred square (default); squash: the whole "
                             "image resized")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N",
                        help="images read and explained at once (default 16); vanilla and "
                             "gradient_x_input compute a whole batch in one model call")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a method parameter, repeatable, e.g. --param samples=10 "
                             "--param seed=3 (SmoothGrad); unknown names are refused")
    return root


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def collect_images(paths: Sequence[str]) -> list[tuple[str, Path]]:
    """``(name, path)`` of every image: files as given, folders searched recursively.

    In folders only files with an image suffix count, hidden files and folders
    are left out, and names are relative to the folder; order is sorted.

    Raises:
        UsageError: a path does not exist.
    """
    found: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(path)
                if (file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
                        and not any(part.startswith(".") for part in relative.parts)):
                    found.append((relative.as_posix(), file))
        elif path.is_file():
            found.append((path.name, path))
        else:
            raise UsageError(f"{raw} is neither a file nor a folder")
    return found


def parse_params(method: str, items: Sequence[str]) -> dict:
    """``NAME=VALUE`` strings to typed method parameters (typed by each default).

    Raises:
        UsageError: bad syntax, an unknown name or a value of the wrong type.
    """
    from saliency_core.audit.batch import method_parameters
    from saliency_core.methods import get_method

    defaults = method_parameters(method)
    params: dict = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name:
            raise UsageError(f"--param {item!r} is not NAME=VALUE")
        if name not in defaults:
            raise UsageError(f"{method} has no parameter {name!r}; its parameters: "
                             f"{', '.join(defaults) or 'none'}")
        default = defaults[name]
        try:
            if isinstance(default, bool):
                value = {"1": True, "true": True, "0": False, "false": False}[raw.lower()]
            elif isinstance(default, int):
                value = int(raw)
            elif isinstance(default, float):
                value = float(raw)
            else:
                value = raw
        except (KeyError, ValueError):
            raise UsageError(f"--param {name}: {raw!r} is not a "
                             f"{type(default).__name__}") from None
        params[name] = value
    try:
        get_method(method, **params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--param: {exc}") from None
    return params


def resolve_class(text: str | None, class_names: Sequence[str]) -> int | None:
    """A class index from ``--class``: an index, or a name (any synonym, any case).

    Raises:
        UsageError: out of range, or no class has that name.
    """
    from saliency_core.labels import rank_classes, shorten_label

    if text is None:
        return None
    text = text.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(class_names):
            raise UsageError(f"--class {index} is outside 0..{len(class_names) - 1}")
        return index
    wanted = " ".join(text.lower().split())
    for index, name in enumerate(class_names):
        if wanted == name.lower() or wanted in (s.strip() for s in name.lower().split(",")):
            return index
    near = [f"{shorten_label(class_names[i])} ({i})" for i in rank_classes(text, class_names, 3)]
    hint = f"; close: {', '.join(near)}" if near else ""
    raise UsageError(f"--class: no class is named {text!r}{hint}")


def load_model(args: argparse.Namespace):
    """``(classifier, ModelIdentity)`` for ``--model``.

    Raises:
        UsageError: a wrong model argument or a model that cannot be used.
    """
    from saliency_core.audit.outputs import ModelIdentity
    from saliency_core.audit.provenance import registered_weights_sha256
    from saliency_core.models.custom import CustomModelError, load_custom_model, make_classifier
    from saliency_core.models.preprocessing import get_preprocessor
    from saliency_core.models.registry import (
        MODELS,
        WeightsUnavailableError,
        is_offline_forced,
    )
    from saliency_core.pipeline import load_classifier
    from saliency_core.safety.limits import format_bytes, load_limits

    model = args.model
    if model in MODELS:
        if args.preprocess is not None:
            raise UsageError(f"--preprocess is for .keras files; {model} uses its own "
                             "preprocessing")
        if args.labels is not None:
            raise UsageError(f"--labels is for .keras files; {model} has ImageNet labels")
        try:
            classifier, _source = load_classifier(model, allow_download=not is_offline_forced())
        except WeightsUnavailableError as exc:
            raise UsageError(" ".join(str(exc).split())) from None
        return classifier, ModelIdentity(model, None, registered_weights_sha256(model),
                                         MODELS[model].preprocessing)
    path = Path(model)
    if not path.is_file():
        raise UsageError(f"--model {model!r} is neither a registered model "
                         f"({', '.join(MODELS)}) nor a .keras file")
    limit = load_limits().max_model_bytes
    if path.stat().st_size > limit:
        raise UsageError(f"--model {path.name} is larger than the limit of "
                         f"{format_bytes(limit)}")
    labels = None
    if args.labels is not None:
        try:
            labels = Path(args.labels).read_bytes()
        except OSError as exc:
            raise UsageError(f"--labels {args.labels}: {exc.strerror or exc}") from None
    preprocessing = args.preprocess or "raw"
    data = path.read_bytes()
    try:
        custom = load_custom_model(data, labels)
        classifier = make_classifier(custom, get_preprocessor(preprocessing))
    except (CustomModelError, ValueError) as exc:
        raise UsageError(f"--model {path.name}: {' '.join(str(exc).split())}") from None
    return classifier, ModelIdentity("file", path.name, custom.digest, preprocessing)


def _reader(path: Path, limit: int):
    def read() -> bytes:
        from saliency_core.imaging import ImageError

        size = path.stat().st_size
        if size > limit:
            raise ImageError(f"The file is {size / 2**20:.0f} MB; images may be at most "
                             f"{limit / 2**20:.0f} MB.")
        return path.read_bytes()
    return read


def run_explain(args: argparse.Namespace) -> int:
    """The ``explain`` command; returns the exit status."""
    from saliency_core.audit.batch import AuditSettings, ImageFailure, iter_audit
    from saliency_core.audit.outputs import StemNamer, SummaryWriter, result_files, summary_row
    from saliency_core.audit.progress import ProgressBar
    from saliency_core.audit.uploads import MAX_FILE_BYTES

    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    images = collect_images(args.paths)
    params = parse_params(args.method, args.param)
    if not images:
        print("nothing to do: no image files were found", file=sys.stderr)
        return 1
    classifier, identity = load_model(args)
    class_index = resolve_class(args.class_, classifier.class_names)
    if args.method in ("gradcam", "gradcam_plus_plus") and "layer" in params:
        if params["layer"] not in classifier.spatial_layer_names():
            raise UsageError(f"--param layer: {params['layer']!r} is not a convolutional "
                             "layer of this model")
    settings = AuditSettings(method=args.method, params=tuple(sorted(params.items())),
                             class_index=class_index, fit=args.fit,
                             batch_size=args.batch_size)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: {exc.strerror or exc}") from None
    bar = ProgressBar(len(images))
    stems, processed, skipped = StemNamer(), 0, 0
    sources = [(name, _reader(path, MAX_FILE_BYTES)) for name, path in images]
    with (out / "summary.csv").open("w", newline="", encoding="utf-8") as handle:
        summary = SummaryWriter(handle)
        for item in iter_audit(classifier, sources, settings):
            if isinstance(item, ImageFailure):
                skipped += 1
                bar.message(f"skipped {item.name}: {item.reason}")
                summary.write(summary_row(item))
            else:
                stem = stems(item.name)
                _record, files = result_files(item, stem, classifier, settings, identity)
                for file_name, data in files.items():
                    (out / file_name).write_bytes(data)
                summary.write(summary_row(item, stem))
                processed += 1
            bar.advance()
    bar.close()
    print(f"explained {processed} of {len(images)} images ({skipped} skipped); results in "
          f"{out}", file=sys.stderr)
    return 0 if processed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        return run_explain(args)
    except UsageError as exc:
        print(f"python -m saliency_core explain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
