"""Installing like a library: pyproject.toml, the wheel, ``saliency-studio explain`` and ``app``.

The wheel test builds the wheel from a copy of the files pyproject.toml packs, installs it
into a fresh virtual environment offline (``pip install --no-deps --no-index``; the
dependencies come from the running environment through a folder of links that leaves out
the ``[live]`` extra, as a plain ``pip install saliency-studio`` would), then runs the
installed command and API from another folder and serves the installed app.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import pytest
from browser_support import (
    CHROMIUM,
    OVERLAY,
    free_port,
    launch_browser,
    screenshot,
    wait_until_healthy,
)

from conftest import ROOT
from saliency_core import __main__ as cli
from saliency_core import serve

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
LIVE_ONLY = re.compile(r"^(streamlit_webrtc|aiortc|av|pylibsrtp)([-.].*)?$")
"""Top-level entries of site-packages that only the [live] extra brings."""


def requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines
            if line.strip() and not line.lstrip().startswith(("#", "-r"))]


def test_dependencies_are_the_requirement_files_pins():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    live, scale = extras["live"], extras["scale"]
    assert sorted(project["dependencies"] + live) == sorted(requirement_lines("requirements.txt"))
    assert scale == requirement_lines("requirements-scale.txt")
    assert [r for r in live if r.startswith("streamlit-webrtc")] == live
    assert project["scripts"]["saliency-studio"] == "saliency_core.__main__:console_main"


def _package_of(path: Path) -> str:
    """The wheel's package name of a folder in the repository."""
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "saliency_core":
        return ".".join(relative.parts)
    return ".".join(("saliency_core", "_app", *relative.parts))


def test_every_package_and_data_file_is_in_the_wheel():
    packages = set(SETUPTOOLS["packages"])
    folders = [p.parent for root in ("saliency_core", "pages")
               for p in (ROOT / root).rglob("__init__.py")]
    missing = sorted({_package_of(f) for f in folders} - packages)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    data = SETUPTOOLS["package-data"]
    mapped = SETUPTOOLS["package-dir"]
    dirs = {name: (ROOT / mapped[name] if name in mapped else ROOT / name.replace(".", "/")
                   ).resolve() for name in packages}
    left_out = []
    for root in ("saliency_core", "pages"):
        for file in (ROOT / root).rglob("*"):
            if not file.is_file() or file.suffix in (".py", ".pyc") or "__pycache__" in file.parts:
                continue
            owners = [(name, folder) for name, folder in dirs.items() if folder in file.parents]
            name, folder = max(owners, key=lambda owner: len(owner[1].parts))
            relative = file.relative_to(folder).as_posix()
            if not any(fnmatch.fnmatch(relative, glob) for glob in data.get(name, [])):
                left_out.append(str(file.relative_to(ROOT)))
    assert not left_out, f"add these to [tool.setuptools.package-data]: {left_out}"
    assert SETUPTOOLS["package-dir"]["saliency_core._app"] == "."
    app_data = data["saliency_core._app"]
    assert ".streamlit/config.toml" in app_data and "NOTICE.md" in app_data


def test_app_command_runs_streamlit_on_the_apps_script(monkeypatch, capsys):
    assert serve.app_script() == ROOT / "app.py"  # a checkout: the repository's own
    ran = []
    monkeypatch.setattr(serve, "run_app", lambda command: ran.append(command) or 0)
    monkeypatch.setattr(serve, "missing_live_packages", lambda: ["streamlit_webrtc"])
    status = cli.main(["app", "--port", "8600", "--address", "127.0.0.1",
                       "--server.headless", "false", "--theme.base=dark"], prog="saliency-studio")
    assert status == 0
    assert ran == [[sys.executable, "-P", "-m", "streamlit", "run", str(ROOT / "app.py"),
                    "--server.port", "8600", "--server.address", "127.0.0.1",
                    "--server.headless", "false", "--theme.base=dark"]]
    note = capsys.readouterr().err
    assert 'pip install "saliency-studio[live]"' in note and "streamlit_webrtc" in note
    for argv, message in ((["app", "--bogus"], "unknown option --bogus"),
                          (["app", "stray"], "unexpected argument 'stray'"),
                          (["app", "--port", "0"], "--port 0 is not a port number")):
        assert cli.main(argv, prog="saliency-studio") == 2
        assert f"saliency-studio app: error: {message}" in capsys.readouterr().err
    assert len(ran) == 1
    with pytest.raises(SystemExit):  # argparse: the value of --port must be a number
        cli.main(["app", "--port", "x"])


def test_app_files_missing_are_reported(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(serve, "__file__", str(tmp_path / "saliency_core" / "serve.py"))
    assert cli.main(["app"], prog="saliency-studio") == 2
    assert "are not installed with this copy" in capsys.readouterr().err


@pytest.mark.slow
def test_without_the_live_extra_the_live_page_says_how_to_install_it(monkeypatch):
    """AppTest with streamlit-webrtc unimportable, as after a plain ``pip install``: the
    Live page explains, and the other pages do not notice."""
    from apptest_support import new_app

    import pages.lib

    monkeypatch.setitem(sys.modules, "streamlit_webrtc", None)  # import fails, as if absent
    monkeypatch.delitem(sys.modules, "pages.lib.live_stream", raising=False)
    monkeypatch.delattr(pages.lib, "live_stream", raising=False)
    at = new_app()
    at.switch_page("live.py").run()
    assert not at.exception, [e.value for e in at.exception]
    warning = " ".join(w.value for w in at.warning)
    assert 'pip install "saliency-studio[live]"' in warning
    assert "the `streamlit_webrtc` module is missing" in warning
    assert not at.button  # no stream, no controls
    at.switch_page("explore.py").run()
    assert not at.exception and at.get("plotly_chart")


# ----------------------------------------------------------------- the real wheel

SOURCES = ("pyproject.toml", "README.md", "NOTICE.md", "app.py", "saliency_core", "pages",
           ".streamlit")
"""What pyproject.toml packs (the build fails if it needs anything else)."""


def run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


def clean_env() -> dict:
    """This test run's environment (offline, its caches) without a PYTHONPATH to the repo."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["SALIENCY_STUDIO_OFFLINE"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel built and installed into a fresh virtual environment without [live]."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    wheels = root / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(wheels), str(source)], env=clean_env())
    wheel = next(wheels.glob("saliency_studio-*.whl"))

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                    ).stdout.strip())
    # The installed dependencies, less the [live] extra's packages. The folder is called
    # site-packages because Streamlit runs in its development mode (which refuses
    # --server.port) when its own files lie anywhere else.
    deps = root / "deps" / "site-packages"
    deps.mkdir(parents=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not LIVE_ONLY.match(entry.name) and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    (site / "saliency_test_dependencies.pth").write_text(f"{deps}\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile",
         str(wheel)], env=clean_env())
    work = root / "work"  # a folder with nothing of the repository in it
    work.mkdir()
    return {"venv": venv, "python": python, "command": venv / "bin" / "saliency-studio",
            "site": site, "work": work, "wheel": wheel}


@pytest.mark.slow
def test_the_wheel_carries_the_package_and_the_app_without_top_level_clutter(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"saliency_core", "saliency_studio-0.1.0.dist-info"}, top
    for packed in ("saliency_core/_app/app.py", "saliency_core/_app/pages/router.py",
                   "saliency_core/_app/.streamlit/config.toml", "saliency_core/_app/NOTICE.md",
                   "saliency_core/_app/pages/lib/assets/overlay_bridge.js",
                   "saliency_core/data/imagenet_classes.txt",
                   "saliency_core/samples/chelsea.png", "saliency_core/api.py"):
        assert packed in names
    assert not any(name.startswith("saliency_core/_app/tests") for name in names)
    assert (installed["site"] / "saliency_core" / "_app" / "app.py").is_file()


@pytest.mark.slow
def test_installed_command_and_api_explain_a_sample(installed):
    work = installed["work"]
    photos = work / "photos"
    photos.mkdir()
    shutil.copy2(ROOT / "saliency_core" / "samples" / "chelsea.png", photos / "chelsea.png")
    out = work / "audit"
    result = run([installed["command"], "explain", str(photos), "--out", str(out)],
                 cwd=work, env=clean_env(), timeout=600)
    assert "explained 1 of 1 images" in result.stderr
    record = json.loads((out / "chelsea.json").read_text())
    assert record["model"]["key"] == "efficientnet_lite0"
    assert (out / "chelsea.png").read_bytes()[:4] == b"\x89PNG"
    assert "summary.csv" in {p.name for p in out.iterdir()}

    script = """
import json, sys
import numpy as np
import saliency_core as sc
light = "tensorflow" not in sys.modules
model = sc.load_model("efficientnet_lite0")
explanation = sc.explain(model, sys.argv[1], "vanilla")
np.save(sys.argv[2], explanation.values)
print(json.dumps({"file": sc.__file__, "light": light, "class": explanation.class_name,
                  "png": sc.overlay_png(explanation)[:4].hex(),
                  "figure": type(sc.overlay_figure(explanation)).__name__}))
"""
    values = work / "api.npy"
    answer = json.loads(run([installed["python"], "-c", script, str(photos / "chelsea.png"),
                             str(values)], cwd=work, env=clean_env(), timeout=600
                            ).stdout.splitlines()[-1])
    assert Path(answer["file"]).is_relative_to(installed["site"])  # the wheel's copy
    assert answer["light"] and answer["png"] == "89504e47" and answer["figure"] == "Figure"
    assert answer["class"] == record["target"]["class_name"].split(",")[0]
    np.testing.assert_array_equal(np.load(values), np.load(out / "chelsea.npy"))


@pytest.fixture(scope="module")
def installed_server(installed):
    """``saliency-studio app`` from the fresh environment, on a free localhost port, started
    in a folder whose own ``saliency_core`` and ``pages`` must never be imported."""
    port = free_port()
    log = installed["work"] / "app.log"
    elsewhere = installed["work"] / "a-clone"
    for decoy in ("saliency_core", "pages"):
        (elsewhere / decoy).mkdir(parents=True)
        (elsewhere / decoy / "__init__.py").write_text(
            f"raise ImportError('the {decoy} in the working directory was imported')\n")
    with log.open("w") as handle:
        process = subprocess.Popen(
            [installed["command"], "app", "--port", str(port), "--address", "127.0.0.1"],
            cwd=elsewhere, env=clean_env(), stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process, log, 180, "saliency-studio app")
    yield {"url": url, "log": log, "process": process}
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.slow
def test_installed_app_answers_health_with_the_packaged_settings(installed, installed_server):
    log = installed_server["log"].read_text()
    assert 'pip install "saliency-studio[live]"' in log  # the [live] extra is not installed
    assert "working directory was imported" not in log
    # The process is the server itself (the command replaced itself with it).
    assert installed_server["process"].poll() is None
    # Streamlit reads the config beside the installed app.py, as `streamlit run` does for
    # the script it runs (config._main_script_path is where it looks).
    script = """
import saliency_core.serve as serve
from streamlit import config
config._main_script_path = str(serve.app_script())
config.get_config_options(force_reparse=True)
print(serve.app_script(), config.get_option("server.maxUploadSize"),
      config.get_option("server.enableXsrfProtection"), config.get_option("theme.primaryColor"),
      config.get_option("browser.gatherUsageStats"))
"""
    printed = run([installed["python"], "-c", script], cwd=installed["work"],
                  env=clean_env()).stdout.split()
    assert Path(printed[0]).is_relative_to(installed["site"])
    assert printed[1:] == ["1000", "True", "#e4572e", "False"]


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_installed_app_serves_every_page_and_live_says_how_to_install(installed_server):
    url = installed_server["url"]
    for browser in launch_browser():
        for name, viewport in (("desktop", {"width": 1280, "height": 720}),
                               ("phone", {"width": 390, "height": 844})):
            context = browser.new_context(viewport=viewport)
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector(OVERLAY, timeout=180_000)
            assert page.locator("[data-testid='stException']").count() == 0
            screenshot(page, f"installed-explore-{name}")
            page.goto(url + "/live")
            page.get_by_text("needs the optional camera-stream packages").wait_for(
                timeout=60_000)
            text = page.locator("[data-testid='stAlert']").first.inner_text()
            assert 'pip install "saliency-studio[live]"' in text, text
            assert page.locator("[data-testid='stException']").count() == 0
            screenshot(page, f"installed-live-without-extra-{name}")
            context.close()
