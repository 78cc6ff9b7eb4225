"""The documentation builds with warnings as errors, and every Python block of README.md and
docs/*.md, and every script in examples/, passes ``mypy --strict``.

Blocks are checked each as a module of its own. A block preceded by ``<!-- no-check -->`` is
left out (another library's code in the migration guide); one preceded by
``<!-- module: NAME -->`` is saved as ``NAME.py``, so later blocks can import it (the README's
IVR is ``myivr``, which its test example imports).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SOURCES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")
_MARK = re.compile(r"<!--\s*(no-check|module:\s*(?P<module>\w+))\s*-->")


@dataclass
class Block:
    """One fenced Python block: where it is, its code, and its module name if it has one."""

    source: Path
    line: int
    code: str
    module: str | None
    checked: bool

    @property
    def label(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file (indented ones inside tabs included)."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent = match.group("indent")
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        mark = _MARK.fullmatch(previous)
        blocks.append(Block(
            source=path,
            line=start + 1,
            code=textwrap.dedent("\n".join(body)) + "\n",
            module=mark.group("module") if mark and mark.group("module") else None,
            checked=not (mark and mark.group(1) == "no-check"),
        ))
        i += 1
    return blocks


def test_block_extraction_understands_marks_and_tabs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        Text.

        <!-- module: shop -->
        ```python
        x = 1
        ```

        === "tab"

            <!-- no-check -->
            ```python
            y = undefined
            ```

            ```python
            def f() -> None:
                pass
            ```
        """))
    blocks = python_blocks(page)
    assert [(b.module, b.checked) for b in blocks] == [("shop", True), (None, False), (None, True)]
    assert blocks[2].code == "def f() -> None:\n    pass\n"


def test_every_page_has_checked_python() -> None:
    for path in SOURCES:
        if path.name in ("changelog.md",):
            continue
        assert path.exists(), path
    blocks = [b for path in SOURCES for b in python_blocks(path)]
    assert sum(b.checked for b in blocks) >= 30


#: Third-party packages esl imports whose code mypy need not analyse to check the examples.
_SKIP_ANALYSIS = ("aiohttp", "multidict", "yarl", "prometheus_client", "httpx", "httpx_sse", "rich",
                  "click", "aiosignal", "frozenlist", "propcache", "attr", "attrs")


def _mypy_available() -> bool:
    return importlib.util.find_spec("mypy") is not None


@pytest.mark.skipif(not _mypy_available(), reason="mypy is not installed (pip install 'esl[test]')")
def test_code_blocks_and_examples_pass_mypy_strict(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    files: dict[str, str] = {}
    for path in SOURCES:
        for block in python_blocks(path):
            if not block.checked:
                continue
            stem = block.module or re.sub(r"\W", "_", f"{path.stem}_{block.line}")
            name = f"{stem}.py"
            assert name not in files, f"two blocks named {name}"
            files[name] = f"# {block.label}\n{block.code}"
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    for example in sorted((ROOT / "examples").glob("*.py")):
        (tmp_path / f"example_{example.name}").write_text(example.read_text())
    # large third-party packages are read as Any (their own typing is not under test here): a cold
    # mypy run over aiohttp and friends would take minutes
    skipped = ", ".join(f"{name}.*" for name in _SKIP_ANALYSIS)
    (tmp_path / "mypy.ini").write_text(f"[mypy]\n\n[mypy-{skipped}]\nfollow_imports = skip\n"
                                       "follow_imports_for_stubs = True\n")
    # the cache lives in pytest's cache dir (as tests/test_typing.py's) so later runs are incremental
    store = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    cache = store.mkdir("mypy-docs") if store is not None else tmp_path / ".mypy_cache"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--strict", "--no-error-summary",
         "--show-error-codes", "--cache-dir", str(cache), "--python-version", "3.10", "."],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    located = []
    for line in errors:  # name the Markdown file and line each error comes from
        name, lineno = line.split(":", 2)[:2]
        path = tmp_path / name
        origin = path.read_text().splitlines()[0][2:] if name in files else f"examples/{name[8:]}"
        located.append(f"{origin} (+{int(lineno) - 1}): {line.split(': error: ', 1)[1]}")
    assert not located, "\n".join(located)


def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict``: broken links, missing pages and docstring warnings fail it."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    site = tmp_path / "site"
    for page in ("index.html", "getting-started/index.html", "migrating/index.html",
                 "reference/esl.inbound/index.html", "reference/esl.testing.helpers/index.html"):
        assert (site / page).exists(), page
    reference = (site / "reference" / "esl.inbound" / "index.html").read_text()
    assert "bgapi" in reference and "Inbound" in reference  # rendered from the docstrings


pytest_plugins = ["pytester"]


def test_the_test_examples_of_the_docs_pass(pytester: pytest.Pytester) -> None:
    """Every block of the README and the docs that is a pytest test file runs, beside the modules of
    its page, in a project of its own (pytest-asyncio's default strict mode, no configuration,
    warnings as errors): the README's example and what the testing guide shows work as written."""
    written = 0
    for path in SOURCES:
        blocks = python_blocks(path)
        modules = {b.module: b.code for b in blocks if b.module}
        tests = [b for b in blocks if b.checked and "@pytest.mark.asyncio" in b.code]
        for block in tests:
            folder = pytester.path / re.sub(r"\W", "_", f"{path.stem}_{block.line}")
            folder.mkdir()
            for name, code in modules.items():
                (folder / f"{name}.py").write_text(code)
            (folder / f"test_{folder.name}.py").write_text(block.code)
            written += 1
    assert written >= 3
    pytester.makeini("[pytest]\n")  # a project of its own: none of this repository's settings
    # warnings are errors, but for pytest-asyncio's own request that every project set its loop
    # scope, and for the import hook of an editable install of esl (a wheel has none)
    editable = ("ignore:Module already imported so cannot be rewritten; _editable"
                ":pytest.PytestAssertRewriteWarning")
    result = pytester.runpytest_subprocess("-p", "asyncio", "-o", "asyncio_mode=strict", "-q",
                                           "-p", "no:cacheprovider", "-W", "error",
                                           "-W", "ignore::pytest.PytestDeprecationWarning", "-W", editable)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-4000:]
    assert outcomes.get("passed", 0) >= 5
