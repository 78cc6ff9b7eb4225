"""The pure-Python twin of the compiled core: ``Parser``, ``Event`` and ``Router``.

It has exactly the interface of ``esl._core`` (the Cython build) and serves where
no compiler is at hand, under ``ESL_NO_EXTENSIONS=1``, and as the reference the
differential tests hold the compiled core to.

Wire facts used here (see ESL-PROTOCOL.md):

* a message is a header block ended by ``\\n\\n``, then ``Content-Length`` bytes
  of body if that header is present;
* a ``text/event-*`` message carries one serialized event as its body; a plain
  event is itself a header block, optionally followed by
  ``Content-Length: n\\n\\n`` and *n* bytes of inner body;
* plain and xml header values are percent-encoded by FreeSWITCH; header names
  are not.
"""


from esl._pycore.event import Event, Tally
from esl._pycore.parser import DEFAULT_MAX_SIZE, Parser
from esl._pycore.router import Router

__all__ = ["DEFAULT_MAX_SIZE", "Event", "Parser", "Router", "Tally"]
