"""Every relative link in the README and in ``docs/`` leads somewhere.

A link names a file relative to the Markdown file it sits in, optionally with ``#anchor``. The
file must exist, and an anchor must name a heading of that file, slugged the way GitHub does it
(lowercase; every character that is not a letter, digit, space, ``-`` or ``_`` dropped; each
space turned into ``-``; a repeated heading gets ``-1``, ``-2``...). Links and headings inside
code (fenced blocks and inline spans) are not links and not headings. Web addresses are not
checked (the tests never go online).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one nested [..] allowed
                         r"\(\s*<?([^()\s<>]*)>?(?:\s+[\"'(][^)]*)?\)")  # (target "title")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def prose_lines(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks (a code block's lines become empty)."""
    lines, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text, e.g. ``"Many machines: `--engine ray`"`` →
    ``"many-machines---engine-ray"``."""
    text = INLINE_LINK.sub(lambda m: re.match(r"!?\[(.*)\]", m.group(0)).group(1), heading)
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a link into ``path`` may name."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            seen = counts.get(base, 0)
            counts[base] = seen + 1
            found.add(base if seen == 0 else f"{base}-{seen}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """``(line number, target)`` of every link and image in ``path``'s prose."""
    result = []
    for number, line in enumerate(prose_lines(path.read_text(encoding="utf-8")), start=1):
        line = INLINE_CODE.sub("", line)
        result.extend((number, target) for target in INLINE_LINK.findall(line))
        reference = REFERENCE.match(line)
        if reference:
            result.append((number, reference.group(1)))
    return result


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """A line for every relative link in ``path`` whose file or heading does not exist."""
    problems = []
    for number, target in links(path):
        if not target or SCHEME.match(target):
            continue
        name, _, anchor = unquote(target).partition("#")
        where = f"{path.relative_to(root)}:{number}: {target}"
        destination = (path.parent / name).resolve() if name else path
        if not destination.exists():
            problems.append(f"{where}: no such file")
        elif root.resolve() not in (destination, *destination.parents):
            problems.append(f"{where}: outside the repository")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{where}: no heading with that anchor in {destination.name}")
    return problems


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(document):
    assert links(document), f"{document.name} has no links at all: is the parser broken?"
    assert broken_links(document) == []


def test_the_readme_stays_short_and_links_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    targets = {unquote(target).partition("#")[0] for _, target in links(ROOT / "README.md")}
    for doc in ("guide", "models", "command-line", "safety", "benchmarks", "trust",
                "safe-outputs", "python-api"):
        assert f"docs/{doc}.md" in targets, f"the README does not link docs/{doc}.md"
    assert "NOTICE.md" in targets  # the samples' and weights' attributions


def test_the_readme_shows_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1].startswith("python3 -m venv .venv")
    assert ci[-1] in (ROOT / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------ the checker itself


def test_github_anchor_rule():
    assert slug("Many machines: `--engine ray`") == "many-machines---engine-ray"
    assert slug("The audit command (`bench/audit_throughput.py`)") == \
        "the-audit-command-benchaudit_throughputpy"
    assert slug("Targets of issue #12") == "targets-of-issue-12"
    assert slug("Spreadsheet formulas (CSV injection)") == "spreadsheet-formulas-csv-injection"
    assert slug("See [the guide](docs/guide.md)") == "see-the-guide"


def test_the_checker_finds_missing_files_and_headings(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(
        "# Guide\n\n## Explore\n\n## Explore\n\n```bash\n# not a heading\n```\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[ok](docs/guide.md#explore) [second](docs/guide.md#explore-1) [self](#title)\n"
        "![pic](docs/images/missing.png) [web](https://example.org/x#y)\n"
        "[gone](docs/gone.md) [bad anchor](docs/guide.md#compare)\n"
        "[code](docs/guide.md#not-a-heading) `[in code](docs/nothing.md)`\n"
        "```\n[in a block](docs/nothing.md)\n```\n"
        "[ref]: docs/also-gone.md\n")
    problems = broken_links(readme, root=tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "docs/images/missing.png: no such file",
        "docs/gone.md: no such file",
        "docs/guide.md#compare: no heading with that anchor in guide.md",
        "docs/guide.md#not-a-heading: no heading with that anchor in guide.md",
        "docs/also-gone.md: no such file",
    ]
