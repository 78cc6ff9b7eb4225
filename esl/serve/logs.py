"""Structured logs: one JSON object per line, with the call's ids as fields and secrets redacted.

``setup_logging(level, json=True, secrets=[password, token])`` installs a
:class:`JSONFormatter` on a stderr handler of the root logger. Each line has
``time``, ``level``, ``logger`` and ``message``; ``uuid`` and ``call_id`` when
the record carries them (``extra={"uuid": ...}``) or when it is logged from a
running scenario; any other ``extra`` fields; ``exc`` with the traceback.
Passwords and tokens never reach the output: the known secrets are replaced
wherever they appear, and ``auth``/``userauth`` commands, ``password=`` /
``token=`` pairs and ``Authorization`` headers are masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["JSONFormatter", "redact", "setup_logging"]

MASK = "***"

_PATTERNS = (
    # ESL authentication commands
    re.compile(r"(?i)(\b(?:auth\s+|userauth\s+[^:\s]+:))\S+"),
    # password=..., "token": "...", secret: ...
    re.compile(r"""(?i)((?:password|passwd|pass|secret|token|api[_-]?key)["']?\s*[:=]\s*["']?)[^\s,"'&;}]+"""),
    # Authorization headers
    re.compile(r"(?i)(authorization\s*[:=]\s*(?:bearer|basic)?\s*)\S+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"),
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every password/token-looking value masked."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class JSONFormatter(logging.Formatter):
    """Formats each record as one line of JSON (see the module docstring for the fields)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` wherever it appears from now on."""
        if secret:
            self.secrets.append(secret)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        self._scenario_fields(out)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(out, ensure_ascii=False, default=str), self.secrets)

    @staticmethod
    def _scenario_fields(out: dict[str, Any]) -> None:
        from esl.serve.record import _current

        ctx = _current.get(None)
        if ctx is None:
            return
        out["call_id"] = ctx.id
        out["scenario"] = ctx.scenario
        channel = ctx.channel
        if channel is not None:
            out["uuid"] = channel.uuid


def setup_logging(level: str | int = "info", *, json: bool = False, secrets: Iterable[str] = (),
                  stream: Any = None) -> logging.Handler:
    """Log to stderr at ``level``: plain text lines, or JSON lines (with ``json``); returns the handler.

    Replaces handlers this function installed before, so calling it twice does not log twice.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("esl")
    if json:
        handler.setFormatter(JSONFormatter(secrets))
    else:
        handler.setFormatter(_RedactingFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "esl":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


class _RedactingFormatter(logging.Formatter):
    """The plain ``time level logger: message`` format, with secrets masked too."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)
