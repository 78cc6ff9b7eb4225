"""A fake FreeSWITCH for tests: mod_event_socket byte for byte, simulated calls, real-capture
replay, and a pytest plugin (``esl.testing.plugin``: fixtures ``freeswitch``, ``esl_client``).

Inbound side::

    from esl.testing import FakeFreeSWITCH

    async with FakeFreeSWITCH() as fake:          # 127.0.0.1, ephemeral port, password ClueCon
        ...                                       # connect a client to fake.host, fake.port
        fake.api["mycmd"] = lambda args, conn: "+OK done\\n"
        await fake.fire(fake.make_event("CUSTOM", {"X-Key": "v"}, subclass="my::thing"))
        await fake.replay("captures/events-plain.raw.xz")
        fake.stall(True); await fake.drop_all()

Call side::

    from esl.testing import Endpoint, FakeFreeSWITCH, Timings

    async with FakeFreeSWITCH(timings=Timings(playback=0.05)) as fake:
        fake.dialplan["ivr"] = [("answer", ""), ("socket", "127.0.0.1:9000 async full")]
        fake.endpoints["user/1000"] = Endpoint(answer_after=0.05)
        fake.endpoints["user/busy"] = Endpoint(fail="USER_BUSY")
        ch = await fake.call("ivr", caller_id_number="1000")   # dials your Outbound app
        await ch.send_dtmf("1#")
        await ch.hangup("NORMAL_CLEARING")

Modules: ``server`` (listener, event bus, api registry), ``connection`` (one ESL
connection: command parsing and replies), ``events`` (names, standard headers,
subscription and filter rules), ``capture`` (load, frame and replay captures),
``calls`` (FakeChannel), ``originate`` (dial strings, originate, bridging),
``apps`` (dialplan applications), ``callapi`` (uuid_* api commands), ``outbound``
(the ``socket`` application), ``builtins`` (status, eval, global_getvar...), ``helpers``
(``serve`` an Outbound app, ``place_call`` into it, press digits, assert on what it did).
"""

from esl.testing import capture
from esl.testing.calls import Endpoint, FakeChannel, Timings
from esl.testing.capture import events as capture_events
from esl.testing.capture import frames as capture_frames
from esl.testing.capture import load as load_capture
from esl.testing.connection import GOODBYE, FakeConnection
from esl.testing.helpers import AppUnderTest, PlacedCall, place_call, serve
from esl.testing.server import FakeFreeSWITCH

__all__ = [
    "GOODBYE",
    "AppUnderTest",
    "PlacedCall",
    "place_call",
    "serve",
    "Endpoint",
    "FakeChannel",
    "FakeConnection",
    "FakeFreeSWITCH",
    "Timings",
    "capture",
    "capture_events",
    "capture_frames",
    "load_capture",
]
