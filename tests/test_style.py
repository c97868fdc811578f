"""House rules that can be checked mechanically."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_streamlit():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "saliency_core").rglob("*.py")
                 if "streamlit" in imported_modules(p)]
    assert not offenders


def test_only_the_adapter_and_model_code_import_tensorflow():
    allowed = {"tf_adapter.py"}
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "saliency_core").rglob("*.py")
                 if "tensorflow" in imported_modules(p) and p.name not in allowed]
    assert not offenders


def test_no_plain_pickle_load_anywhere():
    for path in list((ROOT / "saliency_core").rglob("*.py")) + list((ROOT / "pages").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "pickle.load(" not in text and "pickle.loads(" not in text, path


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (it is in requirements-dev.txt)")
    result = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pages_do_not_import_tensorflow_directly():
    for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py")]:
        assert "tensorflow" not in imported_modules(path), path
    assert sys.version_info >= (3, 11)


def test_security_defaults_in_the_streamlit_config():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableXsrfProtection"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert 0 < config["server"]["maxUploadSize"] <= 1024


def test_no_user_controlled_html_is_rendered():
    for path in [ROOT / "app.py", *(ROOT / "pages").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert "unsafe_allow_html" not in text, path
        assert "st.html(" not in text and "components.html" not in text, path


def test_uploads_are_never_written_under_their_own_names():
    """Upload names may only be shown (escaped), never joined into a path."""
    for path in (ROOT / "pages").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name_use in (".name)", ".name}"):
            for line in text.splitlines():
                if name_use in line:
                    assert "open(" not in line and "Path(" not in line, (path, line)
