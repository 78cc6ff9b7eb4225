"""esl: a fast, complete FreeSWITCH Event Socket library for asyncio."""

from esl import exceptions
from esl.core import BACKEND, Event, Parser, Router
from esl.consumer import Consumer, filtrate
from esl.inbound import Inbound
from esl.job import Job
from esl.protocol import ESLProtocol

__all__ = ["BACKEND", "Event", "Parser", "Router", "exceptions"]
__all__ += ["Inbound", "Job", "Consumer", "filtrate", "ESLProtocol"]
__version__ = "0.1.0"
