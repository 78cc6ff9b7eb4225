"""esl: a fast, complete FreeSWITCH Event Socket library for asyncio."""

from esl import exceptions
from esl.core import BACKEND, Event, Parser, Router

__all__ = ["BACKEND", "Event", "Parser", "Router", "exceptions"]
__version__ = "0.1.0"
