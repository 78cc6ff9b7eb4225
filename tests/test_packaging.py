"""What a user installs: the license and changelog ship, the project URLs are set, a build
without a C compiler (or with ESL_NO_EXTENSIONS=1) gives the pure-Python package and says so,
and the README's pytest example runs in a new project that installs the wheel.

The builds are marked ``slow`` (they make virtual environments), which the default run leaves
out: ``pytest -m slow tests/test_packaging.py``. A build with a C compiler gives the compiled
platform wheel; one without falls back (pyproject.toml's ``if.failed`` override) to a py3-none-any
wheel of the pure-Python package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_license_is_mit_with_the_copyright_line() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the esl authors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_changelog() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog")
    assert "## 0.1.0" in changelog
    # no [project.urls] until the project has a public home: invented addresses would mislead


def _venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    return where / "bin" / "python"


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def no_compiler_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A wheel built with CC pointing at a compiler that does not exist, and the build's output."""
    tmp = tmp_path_factory.mktemp("nocc")
    python = _venv(tmp / "venv")
    proc = _run([str(python), "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp / "dist"), str(ROOT)],
                env={"CC": str(tmp / "no-such-compiler" / "cc"), "ESL_NO_EXTENSIONS": ""})
    (wheel,) = (tmp / "dist").glob("esl-*.whl")
    yield wheel, proc.stdout + proc.stderr


@pytest.mark.slow
def test_build_without_a_c_compiler_is_pure_python_and_says_so(no_compiler_build: tuple[Path, str],
                                                                tmp_path: Path) -> None:
    """CMake stops at the missing compiler, scikit-build-core's ``if.failed`` override retries the
    build as the pure-Python package: a py3-none-any wheel, no compiled module, the twin at run time,
    and a warning both in the build log and on import."""
    wheel, output = no_compiler_build
    log = " ".join(output.split())
    assert "no working C compiler found (CC=" in log
    assert "retrying due to override" in log
    assert "THE COMPILED CORE WAS NOT BUILT" in log
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    assert "esl/_fallback_build.txt" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith(".dist-info/CHANGELOG.md") for n in names)
    assert "Root-Is-Purelib: true" in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
    python = _venv(tmp_path / "venv")
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)])
    environ = {k: v for k, v in os.environ.items() if k != "ESL_NO_EXTENSIONS"}
    proc = subprocess.run([str(python), "-c", "import esl.core; print(esl.core.BACKEND)"], cwd=tmp_path,
                          env=environ, capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "python"
    assert "RuntimeWarning" in proc.stderr and "built without the compiled core" in proc.stderr
    proc = _run([str(python), "-c", "import esl.core; print(esl.core.BACKEND)"], cwd=tmp_path,
                env={"ESL_NO_EXTENSIONS": "1"})  # the twin chosen deliberately: silent
    assert proc.stdout.strip() == "python" and proc.stderr == ""
    proc = _run([str(tmp_path / "venv" / "bin" / "esl"), "--version"], cwd=tmp_path)
    assert "core: python" in proc.stdout


@pytest.mark.slow
def test_build_with_a_c_compiler_is_the_compiled_platform_wheel(tmp_path: Path) -> None:
    """The same source with a compiler: a platform wheel (cpXY-cpXY-<platform>) holding the compiled
    core, no fallback note, and ``esl.core.BACKEND == "cython"`` once installed."""
    python = _venv(tmp_path / "venv")
    proc = _run([str(python), "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"), str(ROOT)],
                env={"ESL_NO_EXTENSIONS": ""})
    assert "retrying due to override" not in proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("esl-*.whl")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.split("-")[2:4] == [tag, tag] and not wheel.name.endswith("-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = sorted(n.rsplit("/", 1)[1].split(".")[0] for n in names
                     if n.startswith("esl/_core/") and n.endswith(".so"))
    assert modules == ["event", "parser", "router"]
    assert "esl/_fallback_build.txt" not in names
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)])
    environ = {k: v for k, v in os.environ.items() if k != "ESL_NO_EXTENSIONS"}
    proc = subprocess.run([str(python), "-c", "import esl.core; print(esl.core.BACKEND)"], cwd=tmp_path,
                          env=environ, capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "cython" and proc.stderr == ""


@pytest.mark.slow
def test_esl_no_extensions_at_build_time_gives_a_pure_wheel_and_the_sdist_ships_the_notices(
        tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    proc = _run([str(python), "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"), str(ROOT)],
                env={"ESL_NO_EXTENSIONS": "1"})
    assert "ESL_NO_EXTENSIONS is set: building the pure-Python package" in " ".join(
        (proc.stdout + proc.stderr).split())
    (wheel,) = (tmp_path / "dist").glob("esl-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    _run([str(python), "-m", "pip", "install", "-q", "scikit-build-core>=0.10"])
    _run([str(python), "-c", f"from scikit_build_core.build import build_sdist; build_sdist({str(tmp_path)!r})"],
         cwd=ROOT)
    (sdist,) = tmp_path.glob("esl-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"LICENSE", "CHANGELOG.md", "pyproject.toml", "CMakeLists.txt"} <= names


@pytest.mark.slow
def test_readme_pytest_example_in_a_new_project(no_compiler_build: tuple[Path, str], tmp_path: Path) -> None:
    """A new project: a venv with the wheel and pytest-asyncio, the README's IVR as myivr.py and
    its test file as test_myivr.py, no configuration at all; pytest passes."""
    import re

    wheel, _ = no_compiler_build
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    project = tmp_path / "myproject"
    project.mkdir()
    (project / "myivr.py").write_text(next(b for b in blocks if "async def ivr(" in b))
    (project / "test_myivr.py").write_text(next(b for b in blocks if "from myivr import ivr" in b))
    python = _venv(tmp_path / "venv")
    _run([str(python), "-m", "pip", "install", "-q", f"esl[testing] @ {wheel.as_uri()}"])
    proc = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project)
    assert "2 passed" in proc.stdout
