"""The examples in examples/ run against the fake FreeSWITCH and do what they say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    path = EXAMPLES / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{path} not present")
    spec = importlib.util.spec_from_file_location(f"esl_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("press,expected", [("1", "sales"), ("2", "support"), ("9", "invalid"), (None, "timeout")])
async def test_ivr(press: str | None, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ivr = _load("ivr")
    if press is None:  # keep the no-key path fast: shorten the 10 s menu timeout
        import esl.channel

        real_wait = esl.channel.Channel.wait

        async def short_wait(self, target, timeout=30.0):  # type: ignore[no-untyped-def]
            return await real_wait(self, target, timeout=min(timeout or 0.2, 0.2))

        monkeypatch.setattr(esl.channel.Channel, "wait", short_wait)
    assert await ivr.demo(press) == [expected]


async def test_click_to_call() -> None:
    legs, peers_ok = await _load("click_to_call").demo()
    assert legs == 2 and peers_ok


async def test_forward() -> None:
    forward = _load("forward")
    assert await forward.demo() == ["bridged"]
    assert await forward.demo("error/USER_BUSY") == ["USER_BUSY"]


async def test_dialer() -> None:
    results = await _load("dialer").demo()
    assert results["user/1000"] == "delivered"
    assert results["user/1001"] == "USER_BUSY"
    assert results["user/1002"] == "NO_ANSWER"


async def test_amd_dialer() -> None:
    """Voicemail (a beep) gets the message, a person gets an agent, the rest their hangup cause."""
    outcomes = await _load("amd_dialer").demo(8)
    expected = ["machine", "human", "USER_BUSY", "NO_ANSWER"] * 2
    assert outcomes == {f"user/{2000 + i}": kind for i, kind in enumerate(expected)}
