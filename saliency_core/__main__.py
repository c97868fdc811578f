"""Command line: ``python -m saliency_core explain PATH... --out DIR`` and ``... app``.

Installed with pip, the same commands are ``saliency-studio explain`` and
``saliency-studio app``.

``explain`` runs the same core as the app over image files and folders and
writes, per image, the overlay PNG, the raw ``.npy`` map and a provenance JSON,
plus ``summary.csv``. See ``python -m saliency_core explain --help``.

``app`` serves the Streamlit app (:mod:`saliency_core.serve`).

For ``explain``, arguments, inputs and the output folder are checked before TensorFlow is
imported (``--help`` and a wrong argument answer at once); TensorFlow is then
imported once, with its start-up notes held back
(:mod:`saliency_core.quiet_tensorflow`), while the photo-decoding worker starts.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

EPILOG = """\
outputs, for each image STEM:
  DIR/STEM.png    the overlay, at the resolution of the region the model saw
  DIR/STEM.npy    the raw attribution at the model's input resolution (float32,
                  (H, W, 3), or (H, W, 1) for Grad-CAM and occlusion)
  DIR/STEM.json   the provenance: model and weights SHA-256, preprocessing, input
                  size, fit and crop box, image SHA-256, class and probability,
                  top-5, method with every parameter and seed, score kind, library
                  versions, time taken, map statistics including the border share
  DIR/summary.csv one row per image; skipped files are listed with their reason
DIR must not be, hold or lie inside an input; if it already holds files, they are
left alone and the run writes to a new sub-folder DIR/run-YYYYMMDD-HHMMSS.

exit status: 0 when at least one image was explained, 1 when none could be,
2 for a wrong argument.

examples:
  {prog} explain photos/ --out audit/ --method smoothgrad \\
      --param samples=10 --batch-size 16
  {prog} explain /data/photos --out /data/audit --engine ray \\
      --address auto --gpus-per-worker 1 --batch-size 64
"""

APP_EPILOG = """\
Any other option is passed to Streamlit and wins over the app's own settings, e.g.
--server.headless false, or --server.maxUploadSize 200 (in MB).

examples:
  {prog} app                     # http://localhost:8501
  {prog} app --port 8600 --address 127.0.0.1
"""

DEFAULT_PROG = "python -m saliency_core"


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (exit 2), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class UsageError(ValueError):
    """A wrong argument, reported in one line with exit status 2."""


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``app`` command's own options (the rest go to Streamlit)."""
    parser.add_argument("--port", type=int, default=None, metavar="N",
                        help="the port to serve on (default 8501, or the next free one)")
    parser.add_argument("--address", default=None, metavar="HOST",
                        help="the address to listen on, e.g. 127.0.0.1 for this machine only "
                             "(default: every interface, as `streamlit run`)")


def build_app_parser(prog: str = DEFAULT_PROG) -> argparse.ArgumentParser:
    """The ``app`` command's parser on its own: parsing it imports nothing heavy."""
    parser = _OneLineParser(prog=f"{prog} app", description=APP_DESCRIPTION,
                            epilog=APP_EPILOG.format(prog=prog), allow_abbrev=False,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_app_arguments(parser)
    return parser


APP_DESCRIPTION = ("Serve the Streamlit app (the same as `streamlit run app.py` in the "
                   "repository), offline on its default model.")


def build_parser(prog: str = DEFAULT_PROG) -> argparse.ArgumentParser:
    """The command line's argument parser (``explain`` and ``app``)."""
    from saliency_core.imaging import FIT_MODES
    from saliency_core.methods import METHODS
    from saliency_core.models.preprocessing import PREPROCESSING_LABELS
    from saliency_core.models.registry import DEFAULT_MODEL_KEY, MODELS

    root = _OneLineParser(prog=prog, description="Saliency Studio's command line.")
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                   parser_class=_OneLineParser)
    app = commands.add_parser("app", help="serve the web app", description=APP_DESCRIPTION,
                              epilog=APP_EPILOG.format(prog=prog), allow_abbrev=False,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_app_arguments(app)
    parser = commands.add_parser(
        "explain", help="explain many images and write maps with their provenance",
        description="Explain every image in PATH... with one model and method; write an "
                    "overlay PNG, the raw .npy map and a provenance JSON per image, and "
                    "summary.csv. Broken images are reported on stderr, listed in the "
                    "summary and skipped.",
        epilog=EPILOG.format(prog=prog), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="an image file, or a folder searched recursively for .jpg, "
                             ".jpeg, .png, .webp, .bmp, .gif, .tif and .tiff files")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder, created if needed; it must not be, hold or lie "
                             "inside an input. Nothing is ever overwritten: if DIR already "
                             "holds files, the run writes to a new sub-folder "
                             "DIR/run-YYYYMMDD-HHMMSS and says so")
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
                        help="crop: the largest centred region with the model's aspect ratio "
                             "(a square for a square input), resized (default); squash: the "
                             "whole image stretched to the model's input")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N",
                        help="images read and explained at once (default 16); vanilla and "
                             "gradient_x_input compute a whole batch in one model call")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a method parameter, repeatable, e.g. --param samples=10 "
                             "--param seed=3 (SmoothGrad); unknown names are refused")
    scale = parser.add_argument_group(
        "engine", "local (default) runs the batches one after another in this process; ray\n"
                  "runs the same per-batch function in a pool of Ray Data actors, locally or\n"
                  "on a cluster (needs: pip install -r requirements-scale.txt)")
    scale.add_argument("--engine", default="local", choices=("local", "ray"),
                       help="local (default; fastest on one small machine) or ray")
    scale.add_argument("--address", default=None, metavar="ADDR",
                       help="with --engine ray: an existing Ray cluster (auto, HOST:6379 or "
                            "ray://HOST:10001); default: start a local Ray for this run")
    scale.add_argument("--workers", type=int, default=None, metavar="N",
                       help="with --engine ray: actors, each holding the model (default: "
                            "one per 2 CPUs of the cluster, or one per --gpus-per-worker "
                            "share of its GPUs)")
    scale.add_argument("--cpus-per-worker", type=float, default=0.5, metavar="C",
                       help="with --engine ray: CPUs each actor reserves (default 0.5, so "
                            "that Ray Data's own tasks always find a CPU)")
    scale.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                       help="with --engine ray: GPUs each actor reserves (default 0)")
    return root


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def collect_images(paths: Sequence[str]
                   ) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """``(images, skipped)``: ``(name, path)`` of every image, files as given and folders
    searched recursively, and ``(name, reason)`` of every link in a folder that is not
    followed.

    In folders only files with an image suffix count, hidden files and folders
    are left out, and names are relative to the folder; order is sorted. A link
    to a file is followed; a link that loops, leads nowhere or leads to a folder
    is listed in ``skipped`` with its reason (a folder link could loop back or
    leave the folder given).

    Raises:
        UsageError: a path does not exist.
    """
    found: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                problem = unfollowed_link(file) if file.is_symlink() else None
                if problem is not None:
                    skipped.append((relative.as_posix(), problem))
                elif file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((relative.as_posix(), file))
        elif path.is_file():
            found.append((path.name, path))
        else:
            raise UsageError(f"{raw} is neither a file nor a folder")
    return found, skipped


def unfollowed_link(link: Path) -> str | None:
    """Why the walk does not follow the symbolic link ``link``; ``None`` for a link to a file."""
    try:
        mode = link.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link that loops back on itself"
        return f"a symbolic link to nothing ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "a link to a folder, not followed (give the folder itself to include it)"
    return None


def parse_params(method: str, items: Sequence[str]) -> dict:
    """``NAME=VALUE`` strings to typed method parameters, within the app's ranges.

    The names and ranges come from the method's parameter table (its ``Param``
    definitions, see :mod:`saliency_core.methods.params`): the same bounds as the
    app's sliders and shared links.

    Raises:
        UsageError: bad syntax, an unknown name, or a value outside its range (the
            message names the allowed values).
    """
    from saliency_core.methods import METHODS, get_method
    from saliency_core.methods.params import ParamValueError, method_params, parse_param

    table = method_params(METHODS[method])
    params: dict = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param {item!r} is not NAME=VALUE")
        if name not in table:
            raise UsageError(f"{method} has no parameter {name!r}; its parameters: "
                             f"{', '.join(table) or 'none'}")
        try:
            params[name] = parse_param(table[name], raw)
        except ParamValueError as exc:
            raise UsageError(f"--param {exc}") from None
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
    from saliency_core.labels import find_class, rank_classes, shorten_label

    if text is None:
        return None
    text = text.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(class_names):
            raise UsageError(f"--class {index} is outside 0..{len(class_names) - 1}")
        return index
    index = find_class(text, class_names)
    if index is not None:
        return index
    near = [f"{shorten_label(class_names[i])} ({i})" for i in rank_classes(text, class_names, 3)]
    hint = f"; close: {', '.join(near)}" if near else ""
    raise UsageError(f"--class: no class is named {text!r}{hint}")


def load_model(args: argparse.Namespace):
    """``(classifier, ModelIdentity, ModelChoice)`` for ``--model``.

    Raises:
        UsageError: a wrong model argument or a model that cannot be used.
    """
    from saliency_core.audit.engine import ModelChoice, ModelChoiceError, file_choice, open_model
    from saliency_core.models.registry import MODELS

    model = args.model
    if model in MODELS:
        if args.preprocess is not None:
            raise UsageError(f"--preprocess is for .keras files; {model} uses its own "
                             "preprocessing")
        if args.labels is not None:
            raise UsageError(f"--labels is for .keras files; {model} has ImageNet labels")
        choice = ModelChoice(model)
    else:
        path = Path(model)
        if not path.is_file():
            raise UsageError(f"--model {model!r} is neither a registered model "
                             f"({', '.join(MODELS)}) nor a .keras file")
        labels = None
        if args.labels is not None:
            try:
                labels = Path(args.labels).read_bytes()
            except OSError as exc:
                raise UsageError(f"--labels {args.labels}: {exc.strerror or exc}") from None
        try:
            choice = file_choice(path, labels, args.preprocess)
        except ModelChoiceError as exc:
            raise UsageError(f"--model {exc}") from None
    try:
        classifier, identity = open_model(choice)
    except ModelChoiceError as exc:
        prefix = "" if choice.data is None else "--model "
        raise UsageError(f"{prefix}{exc}") from None
    return classifier, identity, choice


def check_engine_options(args: argparse.Namespace) -> None:
    """Refuse Ray options without ``--engine ray`` and impossible pool sizes.

    Raises:
        UsageError: a wrong combination or value.
    """
    if args.engine != "ray":
        given = [option for option, value in (
            ("--address", args.address), ("--workers", args.workers),
            ("--cpus-per-worker", args.cpus_per_worker != 0.5 or None),
            ("--gpus-per-worker", args.gpus_per_worker or None)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} need --engine ray")
        return
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not args.cpus_per_worker > 0:
        raise UsageError("--cpus-per-worker must be more than 0")
    if args.gpus_per_worker < 0:
        raise UsageError("--gpus-per-worker cannot be negative")


def run_explain(args: argparse.Namespace) -> int:
    """The ``explain`` command; returns the exit status."""
    from saliency_core.audit.destination import DestinationError, plan_destination

    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    check_engine_options(args)
    images, links = collect_images(args.paths)
    params = parse_params(args.method, args.param)
    try:
        destination = plan_destination(args.out, args.paths, [path for _, path in images])
    except DestinationError as exc:
        raise UsageError(str(exc)) from None
    if not images:
        for name, reason in links:
            print(f"skipped {name}: {reason}", file=sys.stderr)
        print("nothing to do: no image files were found", file=sys.stderr)
        return 1
    if args.engine == "local":
        from saliency_core.safety.decoding import decode_pool

        decode_pool().warm()  # the worker process starts while TensorFlow is imported
    from saliency_core.quiet_tensorflow import import_tensorflow

    import_tensorflow()
    from saliency_core.audit.engine import EngineError

    with contextlib.ExitStack() as stack:
        try:
            folder = run_engine(args, images, params, destination, stack, links)
        except EngineError as exc:
            print(f"{getattr(args, 'prog', DEFAULT_PROG)} explain: error: {exc}",
                  file=sys.stderr)
            return 1
    print(f"explained {folder.processed} of {len(images) + len(links)} images "
          f"({folder.skipped} skipped); "
          f"results in {folder.out}", file=sys.stderr)
    return 0 if folder.processed else 1


def run_engine(args: argparse.Namespace, images: list[tuple[str, Path]], params: dict,
               destination, stack: contextlib.ExitStack,
               skipped: Sequence[tuple[str, str]] = ()):
    """Explain ``images`` with the chosen engine, writing to ``destination``; the finished
    folder. ``skipped`` ``(name, reason)`` are listed first, as skipped files are.

    Ray, if chosen, is started (or joined) on ``stack`` before the model is loaded; the
    output folder is made only once the model and class are known to be usable.

    Raises:
        UsageError: a wrong argument.
        saliency_core.audit.engine.EngineError: the engine cannot go on.
    """
    from saliency_core.audit.batch import AuditSettings, ImageFailure
    from saliency_core.audit.destination import DestinationError
    from saliency_core.audit.engine import FileOutcome, OutputFolder, iter_local, plan_files
    from saliency_core.audit.outputs import summary_row

    session = workers = None
    if args.engine == "ray":
        from saliency_core.audit.ray_engine import RayOptions, RaySession, RayUnavailableError

        try:
            session = stack.enter_context(RaySession(RayOptions(
                args.address, args.workers, args.cpus_per_worker, args.gpus_per_worker)))
        except RayUnavailableError as exc:
            raise UsageError(str(exc)) from None
        workers = session.size_pool(math.ceil(len(images) / args.batch_size))
    classifier, identity, choice = load_model(args)
    class_index = resolve_class(args.class_, classifier.class_names)
    if params.get("layer") is not None:  # the CAM methods
        if params["layer"] not in classifier.spatial_layer_names():
            raise UsageError(f"--param layer: {params['layer']!r} is not a convolutional "
                             "layer of this model")
    settings = AuditSettings(method=args.method, params=tuple(sorted(params.items())),
                             class_index=class_index, fit=args.fit,
                             batch_size=args.batch_size)
    try:
        out = destination.create()
    except DestinationError as exc:
        raise UsageError(str(exc)) from None
    if destination.fresh:
        print(f"--out {args.out} already holds files, which are left as they are; this "
              f"run writes to its new sub-folder {out}", file=sys.stderr)
    files = plan_files(images)
    if session is not None:
        del classifier  # the actors load their own copies
        outcomes = session.iter_outcomes(choice, identity, settings, files, workers)
    else:
        outcomes = iter_local(classifier, identity, settings, files)
    # closing: a stopped run (a file that appeared meanwhile, Ctrl-C) ends the engine's
    # threads or actors at once, not when the generator is collected
    with OutputFolder(out, len(files) + len(skipped)) as folder, contextlib.closing(outcomes):
        for name, reason in skipped:
            folder.write(FileOutcome(summary_row(ImageFailure(name, reason)), {}))
        for outcome in outcomes:
            folder.write(outcome)
    return folder


def check_streamlit_options(options: Sequence[str]) -> None:
    """Refuse what is neither an option of ``app`` nor a Streamlit option.

    Streamlit's options are ``--section.name VALUE`` or ``--section.name=VALUE``;
    Streamlit itself checks the names and values.

    Raises:
        UsageError: a stray argument or an unknown option.
    """
    expect_value = False
    for item in options:
        if item.startswith("--") and "." in item.split("=", 1)[0]:
            expect_value = "=" not in item
        elif item.startswith("-"):
            raise UsageError(f"unknown option {item} (Streamlit's own options look like "
                             "--server.address 127.0.0.1)")
        elif expect_value:
            expect_value = False
        else:
            raise UsageError(f"unexpected argument {item!r}")


def run_app_command(argv: Sequence[str], prog: str = DEFAULT_PROG) -> int:
    """The ``app`` command: serve the Streamlit app; returns the exit status (on POSIX the
    server replaces this process, so it returns only on an error)."""
    from saliency_core import serve

    args, options = build_app_parser(prog).parse_known_args(argv)
    try:
        check_streamlit_options(options)
        if args.port is not None and not 0 < args.port < 65536:
            raise UsageError(f"--port {args.port} is not a port number (1 to 65535)")
        command = serve.streamlit_command(args.port, args.address, options)
    except (UsageError, serve.AppFilesMissingError) as exc:
        print(f"{prog} app: error: {exc}", file=sys.stderr)
        return 2
    missing = serve.missing_live_packages()
    if missing:
        print(f"{prog} app: note: the Live page's camera stream needs the optional WebRTC "
              f"packages (missing: {', '.join(missing)}): {serve.LIVE_INSTALL}. Every other "
              "page works without them.", file=sys.stderr)
    return serve.run_app(command)


def main(argv: Sequence[str] | None = None, prog: str = DEFAULT_PROG) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["app"]:
        return run_app_command(argv[1:], prog)
    args = build_parser(prog).parse_args(argv)
    args.prog = prog
    try:
        return run_explain(args)
    except UsageError as exc:
        print(f"{prog} explain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console_main() -> int:
    """The ``saliency-studio`` command that ``pip install`` creates."""
    return main(prog="saliency-studio")


if __name__ == "__main__":
    sys.exit(main())
