"""The README says what the code does: its commands, its Python blocks, its CLI table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import esl
from esl.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"



@pytest.fixture(scope="module")
def readme() -> str:
    if not README.exists():  # pragma: no cover - tests run from a checkout
        pytest.skip("README.md is not beside the tests")
    return README.read_text()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


MAIN_JOB = 'python3 -m venv .venv && .venv/bin/pip install ".[bench]" && .venv/bin/esl bench'
TESTS = 'python3 -m venv .venv && .venv/bin/pip install ".[test]" && .venv/bin/pytest'


def test_the_two_set_up_commands(readme: str) -> None:
    assert MAIN_JOB in readme
    assert TESTS in readme


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert TESTS in ci.splitlines()


def test_python_blocks_compile_and_use_real_names(readme: str) -> None:
    blocks = python_blocks(readme)
    assert len(blocks) >= 5
    for block in blocks:
        compile(block, "README.md", "exec")
    for name in re.findall(r"\besl\.([A-Z]\w+)", readme):
        assert hasattr(esl, name), f"README uses esl.{name}, which esl does not export"


def test_every_subcommand_is_in_the_cli_table(readme: str) -> None:
    for name in main.commands:
        assert f"`esl {name}" in readme, name
