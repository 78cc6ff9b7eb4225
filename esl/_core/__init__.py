"""The compiled core (built from the Cython sources beside this file by CMake): ``Event``, ``Parser``, ``Router``, ``Tally``.

Same interface as the pure-Python twin ``esl._pycore``; ``esl.core`` picks one.
"""

from esl._core.event import Event, Tally
from esl._core.parser import DEFAULT_MAX_SIZE, Parser
from esl._core.router import Router

__all__ = ["Event", "Parser", "Router", "Tally", "DEFAULT_MAX_SIZE"]
