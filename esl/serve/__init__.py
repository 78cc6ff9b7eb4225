"""Running esl apps in production: scenarios started over HTTP, Prometheus metrics, JSON logs.

>>> import esl, esl.serve
>>> app = esl.serve.App(host="127.0.0.1", port=8021, password="ClueCon")
>>> @app.scenario("callback")
... async def callback(call: esl.Call, data: dict) -> None:
...     esl.serve.report("greeting", text=data.get("text"))
...     await call.first.playback("ivr/ivr-welcome.wav")

``esl serve mymodule:app`` serves it (see docs/production.md); ``esl.serve.Server``
does the same from code. ``esl.serve.metrics`` exports stats() to Prometheus.
Needs the ``serve`` extra (aiohttp, prometheus-client).
"""

from typing import Any

from esl.serve.app import App, CallRecord, Context, LimitExceeded, ScenarioStats, context, report

__all__ = [
    "App",
    "CallRecord",
    "Context",
    "LimitExceeded",
    "ScenarioStats",
    "Server",
    "context",
    "is_loopback",
    "load_token",
    "report",
]


def __getattr__(name: str) -> Any:
    # the HTTP server needs aiohttp (the serve extra); logs and App do not
    if name in ("Server", "is_loopback", "load_token"):
        from esl.serve import http

        return getattr(http, name)
    raise AttributeError(f"module 'esl.serve' has no attribute {name!r}")
