"""Picks the core: the compiled ``esl._core`` when it is built, else the pure-Python twin.

Set ``ESL_NO_EXTENSIONS=1`` to force the twin. ``BACKEND`` says which one is
active (``"cython"`` or ``"python"``); ``backends()`` gives both where both
exist, for differential tests and benchmarks. Importing from a checkout whose
``esl/_core/`` holds the Cython sources but no compiled module warns
(RuntimeWarning): that is an unbuilt tree, not a deliberate choice of the twin. So does an
installation whose build fell back to the pure-Python package (no C compiler when it was built).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from esl import _pycore

__all__ = ["BACKEND", "DEFAULT_MAX_SIZE", "Event", "Parser", "Router", "Tally", "backends", "load"]


def _compiled() -> ModuleType | None:
    try:
        from esl import _core
    except ImportError:
        return None
    return _core


def load(name: str) -> ModuleType:
    """The core module named ``"cython"`` or ``"python"``; ImportError if not built."""
    if name == "python":
        return _pycore
    if name == "cython":
        mod = _compiled()
        if mod is None:
            raise ImportError("the compiled core esl._core is not built")
        return mod
    raise ValueError(f"unknown backend {name!r}")


def backends() -> dict[str, ModuleType]:
    """Every core available here, by name."""
    found = {"python": _pycore}
    mod = _compiled()
    if mod is not None:
        found["cython"] = mod
    return found


def _unbuilt_sources() -> Path | None:
    """The ``esl/_core`` directory when it holds Cython sources (a checkout), else None."""
    src = Path(__file__).resolve().parent / "_core"
    return src if (src / "parser.pyx").is_file() else None


def _fallback_note() -> str | None:
    """The note a fallback build leaves (its compiled build failed, e.g. no C compiler), else None."""
    note = Path(__file__).resolve().parent / "_fallback_build.txt"
    return note.read_text().strip() if note.is_file() else None


_NO_EXT = os.environ.get("ESL_NO_EXTENSIONS", "") not in ("", "0")
_mod = None if _NO_EXT else _compiled()
if _mod is None and not _NO_EXT and (_note := _fallback_note()) is not None:
    warnings.warn(
        f"esl: this installation was {_note}; the core is the pure-Python twin, which is many "
        "times slower. Install a C compiler (e.g. gcc) and the Python headers, then reinstall esl "
        "for the compiled core, or set ESL_NO_EXTENSIONS=1 to choose the twin deliberately.",
        RuntimeWarning,
        stacklevel=2,
    )
if _mod is None and not _NO_EXT and (_src := _unbuilt_sources()) is not None:
    warnings.warn(
        f"esl: the compiled core is not built (Cython sources in {_src}, no compiled module); "
        "falling back to the pure-Python twin, which is many times slower. Build it with "
        "`pip install .` or `pip install -e .` from the checkout (a C compiler is needed), "
        "or set ESL_NO_EXTENSIONS=1 to choose the twin deliberately.",
        RuntimeWarning,
        stacklevel=2,
    )
if _mod is None:
    _mod = _pycore
    BACKEND = "python"
else:
    BACKEND = "cython"

if TYPE_CHECKING:  # both cores share the twin's interface; type checkers read it there
    from esl._pycore import DEFAULT_MAX_SIZE, Event, Parser, Router, Tally
else:
    Event = _mod.Event
    Parser = _mod.Parser
    Router = _mod.Router
    Tally = _mod.Tally
    DEFAULT_MAX_SIZE: int = _mod.DEFAULT_MAX_SIZE
