"""esl: a fast, complete FreeSWITCH Event Socket library for asyncio."""

from esl import exceptions
from esl.core import BACKEND, Event, Parser, Router
from esl.consumer import Consumer, filtrate
from esl.inbound import Inbound
from esl.job import Job
from esl.protocol import ESLProtocol
from esl.types import CallState, ChannelState, HangupCause
from esl.channel import Channel
from esl.call import Call
from esl.session import Session
from esl.outbound import Outbound
from esl.cluster import Cluster
from esl.connection import Connection
from esl.stats import ConnectionStats, OutboundStats

__all__ = ["BACKEND", "Event", "Parser", "Router", "exceptions"]
__all__ += ["Inbound", "Job", "Consumer", "filtrate", "ESLProtocol"]
__all__ += ["Cluster", "Connection", "ConnectionStats", "OutboundStats"]
__all__ += ["Outbound", "Session", "Channel", "Call", "ChannelState", "CallState", "HangupCause"]
__version__ = "0.1.0"
