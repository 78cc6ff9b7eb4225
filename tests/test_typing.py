"""The package itself passes ``mypy --strict`` (tests/test_docs.py checks the docs and examples)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install 'esl[test]')")
def test_package_passes_mypy_strict(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    # run from the checkout so mypy reads its esl/ (and pyproject's [tool.mypy]), not an installed copy;
    # the cache lives in pytest's cache dir so later runs are incremental
    store = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    cache = store.mkdir("mypy") if store is not None else tmp_path / ".mypy_cache"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--show-error-codes", "--cache-dir", str(cache), "-p", "esl"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Success: no issues found"), proc.stdout
