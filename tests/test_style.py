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
    """No page renders HTML, except the project's own CSS read from pages/lib/assets/
    (``st.html(_PHONE_CSS)``: a module constant, never built from anything a visitor sends)."""
    allowed = "st.html(_PHONE_CSS)"
    for path in [ROOT / "app.py", *(ROOT / "pages").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert "unsafe_allow_html" not in text, path
        assert "components.html" not in text, path
        assert "st.html(" not in text.replace(allowed, ""), path
    layout = (ROOT / "pages" / "lib" / "layout.py").read_text(encoding="utf-8")
    assert '_PHONE_CSS = ("<style>" + (Path(__file__).parent / "assets" / "phone.css")' in layout
    from pages.lib.layout import PHONE_WIDTH

    css = (ROOT / "pages" / "lib" / "assets" / "phone.css").read_text(encoding="utf-8")
    assert f"@media (max-width: {PHONE_WIDTH}px)" in css and "<" not in css


def test_uploads_are_never_written_under_their_own_names():
    """Upload names may only be shown (escaped), never joined into a path."""
    for path in (ROOT / "pages").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name_use in (".name)", ".name}"):
            for line in text.splitlines():
                if name_use in line:
                    assert "open(" not in line and "Path(" not in line, (path, line)


def _core_import_graph() -> dict[str, set[str]]:
    """Each ``saliency_core`` module and the project modules it imports, anywhere in it
    (an import inside a function is a dependency too: it only runs later)."""
    def name_of(path: Path) -> str:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name_of(p): p for p in (ROOT / "saliency_core").rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(filter(None, (known(alias.name) for alias in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                found.update(filter(None, (known(f"{base}.{alias.name}") or known(base)
                                           for alias in node.names)))
        found.discard(module)
        graph[module] = found
    return graph


def find_import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_import_cycles(graph) == [["a", "b", "c"]]
    assert find_import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_the_core():
    """Each core package can be read and tested on its own: no module imports, directly or
    through others, a module that imports it back (the safety layer never imports the model
    registry, which imports it)."""
    assert find_import_cycles(_core_import_graph()) == []


def test_no_module_reaches_into_another_project_modules_private_names():
    """``registry._lite0_checkpoint()`` from another module broke silently when the registry
    changed; modules use each other's public functions."""
    project = {".".join(p.relative_to(ROOT).with_suffix("").parts)
               for folder in ("saliency_core", "pages") for p in (ROOT / folder).rglob("*.py")}
    reached = []
    for folder in ("saliency_core", "pages"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            modules = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    modules.update(alias.asname or alias.name for alias in node.names
                                   if f"{node.module}.{alias.name}" in project)
                elif isinstance(node, ast.Import):
                    modules.update(alias.asname for alias in node.names
                                   if alias.asname and alias.name in project)
            reached += [f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}"
                        for node in ast.walk(tree)
                        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in modules and node.attr.startswith("_")
                        and not node.attr.startswith("__")]
    assert not reached, reached


def _script_statements(body):
    """Statements a page script runs at its top level, inside if/with/for/try blocks too
    (Streamlit's "magic" writes those on the page), not inside functions or classes."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _script_statements(getattr(node, field, []) or [])


def test_no_page_script_writes_a_stray_string_on_the_page():
    """A bare string in a page script (an attribute docstring, a note) is shown to every
    visitor by Streamlit's magic; only the module docstring is not."""
    stray = []
    for path in sorted((ROOT / "pages").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _script_statements(tree.body[1:]):
            if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)):
                stray.append(f"{path.name}:{node.lineno}")
    assert not stray, stray
