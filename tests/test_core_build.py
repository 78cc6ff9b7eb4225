"""A checkout with the Cython sources but no compiled core warns instead of silently using the twin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import esl

_PROBE = "import esl.core; print(esl.core.BACKEND)"


def _unbuilt_checkout(tmp_path: Path) -> Path:
    """A copy of the esl package with its Cython sources and without any compiled module."""
    src = Path(esl.__file__).parent
    dest = tmp_path / "esl"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    for name in ("parser.pyx", "event.pyx", "router.pyx"):  # an installed package has no sources
        if not (dest / "_core" / name).exists():
            (dest / "_core" / name).write_text("# source\n")
    return tmp_path


def _run(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "ESL_NO_EXTENSIONS"}
    environ.update(env, PYTHONPATH=str(root))
    return subprocess.run(
        [sys.executable, "-S", "-c", _PROBE], cwd=root, env=environ, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("flag", ["", "0"])
def test_unbuilt_checkout_warns(tmp_path: Path, flag: str) -> None:
    root = _unbuilt_checkout(tmp_path)
    env = {"ESL_NO_EXTENSIONS": flag} if flag else {}
    done = _run(root, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python"
    assert "RuntimeWarning" in done.stderr
    assert "compiled core is not built" in done.stderr
    assert "pip install" in done.stderr


def test_no_extensions_is_silent(tmp_path: Path) -> None:
    root = _unbuilt_checkout(tmp_path)
    done = _run(root, ESL_NO_EXTENSIONS="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python"
    assert done.stderr == ""
