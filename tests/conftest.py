"""Shared fixtures: the core backends and the real FreeSWITCH captures."""

from __future__ import annotations

import lzma
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import settings

import esl.core

# CI runs the property tests derandomized (examples chosen from each test's own fixed seed): a
# submission passes or fails on its code, not on the draw; a local run explores as usual.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

#: ``$ESL_CAPTURES``, else ``shared/captures`` beside the checkout (see its README for what each file holds).
CAPTURES_DIR = Path(os.environ.get("ESL_CAPTURES") or Path(__file__).resolve().parents[2] / "shared" / "captures")

_BACKENDS = sorted(esl.core.backends(), key=lambda name: name != "cython")  # cython first


@pytest.fixture(params=_BACKENDS)
def core(request: pytest.FixtureRequest) -> ModuleType:
    """Each available core module (``esl._core`` as "cython", ``esl._pycore`` as "python")."""
    return esl.core.load(request.param)


class Captures:
    """Read access to the real captures, decompressed once per session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, bytes] = {}

    def path(self, name: str) -> Path:
        return self.root / name

    def read(self, name: str) -> bytes:
        """The bytes of capture ``name`` (``.xz`` files decompressed)."""
        data = self._cache.get(name)
        if data is None:
            path = self.root / name
            if not path.exists():
                pytest.skip(f"capture {name} not found in {self.root}")
            data = lzma.open(path, "rb").read() if name.endswith(".xz") else path.read_bytes()
            self._cache[name] = data
        return data

    def events(self, fmt: str) -> bytes:
        """The inbound event stream in ``fmt`` (plain, json or xml)."""
        return self.read(f"events-{fmt}.raw.xz")

    def sip_events(self, fmt: str) -> bytes:
        """The SIP-leg event stream in ``fmt`` (``sip-events-*``: ~100 headers, large %-escaped values)."""
        return self.read(f"sip-events-{fmt}.raw.xz")


@pytest.fixture(scope="session")
def captures() -> Captures:
    """The shared captures; skips the test when ``shared/captures`` is not beside the checkout."""
    if not CAPTURES_DIR.is_dir():
        pytest.skip(f"captures not found at {CAPTURES_DIR}")
    return Captures(CAPTURES_DIR)
