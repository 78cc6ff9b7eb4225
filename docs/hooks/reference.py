"""mkdocs hook: the API reference, one page per public module of esl, found by walking the package,
and the changelog page, made from CHANGELOG.md.

A module is public when no part of its dotted name starts with ``_``; ``EXCLUDE`` lists
public-looking modules that are not an API (the command line's internals). New modules
appear in the reference without editing anything.
"""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

#: Packages walked for modules, in the order their pages appear.
PACKAGES = ("esl", "esl.testing")
#: Modules left out: the ``esl`` command's implementation (documented as a command) and the
#: pytest plugin's entry point (documented in the testing guide and esl.testing.helpers).
EXCLUDE = ("esl.cli", "esl.__main__")


def public_modules() -> list[str]:
    """``esl`` and its public modules, sorted, packages first."""
    import esl

    names = {"esl"}
    for info in pkgutil.walk_packages(esl.__path__, "esl."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if any(info.name == ex or info.name.startswith(ex + ".") for ex in EXCLUDE):
            continue
        names.add(info.name)
    return sorted(names, key=lambda n: (n not in PACKAGES, n))


def _page(module: str) -> str:
    return f"reference/{module}.md"


def on_config(config: MkDocsConfig, **kwargs: Any) -> MkDocsConfig:
    """Add the reference section to the navigation."""
    nav = config.nav or []
    nav.append({"API reference": [{module: _page(module)} for module in public_modules()]})
    config.nav = nav
    return config


def _content(module: str, modules: list[str]) -> str:
    if module not in PACKAGES:
        return f"# {module}\n\n::: {module}\n"
    # a package page: its docstring and its modules (the names it re-exports are documented there)
    inside = [m for m in modules if m.startswith(module + ".") and m.count(".") == module.count(".") + 1]
    links = "\n".join(f"- [`{m}`]({m}.md)" for m in inside)
    return f"# {module}\n\n::: {module}\n    options:\n      members: false\n\n## Modules\n\n{links}\n"


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    """Add a generated page per module: its title and the mkdocstrings directive."""
    modules = public_modules()
    for module in modules:
        files.append(File.generated(config, _page(module), content=_content(module, modules)))
    changelog = Path(config.config_file_path).parent / "CHANGELOG.md"
    files.append(File.generated(config, "changelog.md", content=changelog.read_text()))
    return files


#: Sphinx roles in docstrings, shown as Sphinx shows them: ``:class:`~esl.job.Job``` as ``Job``,
#: ``:mod:`esl.protocol``` as ``esl.protocol``.
_ROLE = re.compile(r":(?:py:)?(?:meth|class|func|mod|attr|exc|data|obj|const):<code>(~?)([\w.]+)")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}"


def on_page_content(html: str, page: Any, config: MkDocsConfig, files: Files) -> str:
    """Drop the Sphinx role markers the docstrings carry; the code they mark stays."""
    return _ROLE.sub(_role, html)
