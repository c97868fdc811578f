"""``saliency-studio app``: serve the Streamlit app from wherever the package is.

The app's files keep their place in the repository (``app.py``, ``pages/`` and
``.streamlit/config.toml`` beside ``saliency_core/``). A wheel carries them as
package data, under ``saliency_core/_app/`` (see ``pyproject.toml``), so that
installing adds no top-level ``pages`` or ``app`` module to site-packages.
Either way the command is ``python -m streamlit run <that app.py>``, exactly the
README's ``streamlit run app.py``: Streamlit puts the script's folder first on
``sys.path`` (so ``import pages`` finds the app's own package and nothing else),
reads the ``.streamlit/config.toml`` beside the script (upload limits, XSRF
protection, no usage statistics, the theme) and finds the ``st.App`` in it.

The core never imports Streamlit, and this module does not either: it only
starts it, replacing this process on POSIX so that signals and the exit status
are Streamlit's own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

LIVE_PACKAGES = ("streamlit_webrtc", "aiortc", "av")
"""What the Live page needs beyond the core (the ``[live]`` extra)."""

LIVE_INSTALL = 'pip install "saliency-studio[live]"'


class AppFilesMissingError(FileNotFoundError):
    """Neither an installed copy of the app nor a repository checkout was found."""


def app_script() -> Path:
    """The app's ``app.py``: the installed copy, or the repository's in a checkout.

    Raises:
        AppFilesMissingError: neither is there.
    """
    package = Path(__file__).resolve().parent
    for script in (package / "_app" / "app.py", package.parent / "app.py"):
        if script.is_file() and (script.parent / "pages" / "router.py").is_file():
            return script
    raise AppFilesMissingError(
        "The app's files (app.py and pages/) are not installed with this copy of "
        "saliency_core; install the package with pip (pip install saliency-studio, or "
        "pip install . in a clone of the repository).")


def streamlit_command(port: int | None = None, address: str | None = None,
                      options: Sequence[str] = ()) -> list[str]:
    """The command that serves the app: ``python -P -m streamlit run <app.py> [flags]``.

    ``-P`` keeps the working directory off ``sys.path``: a folder that happens to hold
    a ``saliency_core`` or ``pages`` (a clone of the repository) cannot replace the
    installed ones. Streamlit then puts the script's own folder first.

    Args:
        port: ``--server.port``; default Streamlit's (8501, or the next free one).
        address: ``--server.address``; default Streamlit's (all interfaces).
        options: further Streamlit options, e.g. ``["--server.headless", "true"]``;
            they come last, so they win over ``port`` and ``address``.
    """
    command = [sys.executable, "-P", "-m", "streamlit", "run", str(app_script())]
    if port is not None:
        command += ["--server.port", str(port)]
    if address:
        command += ["--server.address", address]
    return command + list(options)


def missing_live_packages() -> list[str]:
    """The Live page's packages that are not installed (found without importing them)."""
    missing = []
    for name in LIVE_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken install counts as missing
            found = False
        if not found:
            missing.append(name)
    return missing


def run_app(command: Sequence[str]) -> int:
    """Run ``command``: in place of this process on POSIX (so a signal sent to this
    process reaches the server itself), as a child elsewhere. Returns its exit status
    where it returns at all."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(command[0], list(command))
    return subprocess.call(list(command))
