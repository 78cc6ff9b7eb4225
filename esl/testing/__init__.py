"""Testing helpers: a fake FreeSWITCH speaking the Event Socket protocol byte for byte,
real-capture loading and replay, and the pytest plugin (``esl.testing.plugin``).

    from esl.testing import FakeFreeSWITCH

    async with FakeFreeSWITCH() as fake:
        ...  # connect a client to fake.host, fake.port (password "ClueCon")
"""

from esl.testing import capture
from esl.testing.capture import events as capture_events
from esl.testing.capture import frames as capture_frames
from esl.testing.capture import load as load_capture
from esl.testing.server import GOODBYE, FakeConnection, FakeFreeSWITCH

__all__ = [
    "GOODBYE",
    "FakeConnection",
    "FakeFreeSWITCH",
    "capture",
    "capture_events",
    "capture_frames",
    "load_capture",
]

try:  # the call side
    from esl.testing.calls import Endpoint, FakeChannel, Timings

    __all__ += ["Endpoint", "FakeChannel", "Timings"]
except ImportError:  # pragma: no cover
    pass
