"""``Channel``: one call leg, driven the same way from an outbound Session or an Inbound connection.

The pieces:

* :mod:`esl.channel.state` — state, waits and handlers, from the channel's own
  events (handed over by the connection's owners table before any flow control);
* :mod:`esl.channel.verbs` — executing applications, answer/hangup and media;
* :mod:`esl.channel.variables`, :mod:`esl.channel.control`,
  :mod:`esl.channel.recording` — variables; bridge, transfer, DTMF, hold,
  mute, scheduling, broadcast, avmd...; background recording;
* :mod:`esl.channel.originate` — placing a call (``Channel.create``) and the
  escaping of its variables;
* :mod:`esl.channel.media` — streaming the call's audio to a websocket (mod_audio_stream).
"""

from __future__ import annotations

import asyncio
import uuid as _uuid_mod
from typing import TYPE_CHECKING, Mapping

from esl.channel.originate import kill_orphan, originate_command
from esl.channel.history import History
from esl.channel.hooks import LIFECYCLE
from esl.channel.host import ChannelHost
from esl.channel.control import Control
from esl.channel.media import MediaVerbs
from esl.channel.recording import Recording
from esl.channel.variables import Variables
from esl.channel.verbs import CallControl
from esl.exceptions import ChannelError

if TYPE_CHECKING:  # pragma: no cover
    from esl.cluster import Cluster
    from esl.core import Event
    from esl.job import Job

__all__ = ["Channel", "ChannelHost", "History", "LIFECYCLE", "channels_of"]


class Channel(MediaVerbs, Recording, Control, Variables, CallControl):
    """One call leg (FreeSWITCH channel), in outbound or inbound mode.

    Get one from :meth:`create` (originate), ``session.channel`` (the call an
    outbound socket controls) or :meth:`attach` (an existing UUID on a
    connection).

    State (``state``, ``call_state``, ``answered``, ``hangup_cause``,
    ``variables``) comes from the channel's own events only. ``events`` holds
    the newest ``Channel.history`` events (a :class:`History`: newest last,
    with ``get(header)`` lookups).
    """

    __slots__ = ()

    @classmethod
    def _for_session(cls, session: ChannelHost, uuid: str, context: "Event") -> "Channel":
        channel = cls(session, uuid, context=context)
        channel._register()
        return channel

    @classmethod
    def from_session(cls, session: ChannelHost) -> "Channel":
        """The channel an outbound session controls (``session.channel``)."""
        return getattr(session, "channel")  # type: ignore[no-any-return]

    @classmethod
    def attach(cls, connection: ChannelHost, uuid: str, *, context: "Event | None" = None,
               history: int | None = None) -> "Channel":
        """The Channel object for an existing ``uuid`` on ``connection`` (made and owned if new).

        The connection must receive the channel's events: ``await
        channel.ensure_events()`` on an Inbound (subscribes the channel events,
        and filters on the UUID when the connection has filters).
        """
        owner = connection.owners.channel(uuid)
        if isinstance(owner, Channel):
            return owner
        if owner is not None:
            raise ChannelError(f"channel {uuid} is owned by {owner!r} on this connection", uuid)
        channel = cls(connection, uuid, context=context, history=history)
        channel._register()
        return channel

    async def ensure_events(self) -> None:
        """Make sure the connection receives this channel's events (see ``Connection.ensure_channel_events``)."""
        if await self.connection.ensure_channel_events(self.uuid):
            self._filtered = True

    @classmethod
    async def create(
        cls,
        connection: "ChannelHost | Cluster",
        dial_path: str,
        variables: Mapping[str, object] | None = None,
        *,
        caller_id_number: str | None = None,
        caller_id_name: str | None = None,
        timeout: float | None = None,
        app: str = "&park()",
        history: int | None = None,
        return_ring_ready: bool = False,
        node: str | None = None,
    ) -> "Channel":
        """Place a call to ``dial_path`` and return its Channel at once (before it is answered).

        ``connection`` is an Inbound or Session, or a :class:`~esl.Cluster`:
        then the call goes to ``node`` if given, else to the node the
        cluster's placement policy picks (fewest sessions by default, nodes
        down or at their limit skipped; :class:`~esl.cluster.NoNodeAvailable`
        when none is left), and the Channel stays bound to that node's
        connection (``channel.connection``).

        The channel UUID is chosen here and passed as ``origination_uuid``
        (a ``variables`` entry of that name is ignored); the channel is owned
        by the connection, and the connection made to receive its events,
        before ``bgapi originate`` is written. Variable values and caller id
        are escaped so they reach the channel literally; names are restricted
        to what FreeSWITCH accepts (``ValueError`` otherwise). ``timeout``
        becomes ``originate_timeout`` (seconds of ringing). ``app`` is what the
        answered leg runs (``&park()`` by default, or ``"<extension> XML <context>"``).

        A failure (``-ERR <CAUSE>`` from the originate, or a hangup before
        answer) is kept in ``channel.failure`` and raised as
        :class:`~esl.exceptions.OriginateError` by every wait on the channel.
        Cancelling ``create`` once the originate is on its way does not leave
        an unowned call: it is hung up (``ORIGINATOR_CANCEL``) when placed.

        ``return_ring_ready``: the originate's result (``channel.job``) comes
        back as soon as the far end rings instead of when it answers
        (``return_ring_ready=true``), so the job frees FreeSWITCH's originate
        thread early; a failure after that still reaches the channel, as a
        hangup before answer. ``channel.job.channel`` is this channel and
        ``channel.job.session_uuid`` its UUID once the result is in.

        On a connection with event filters (``filter ...``), what genesis
        documents as steps is done here, in this order: the UUID is chosen
        client-side (a ``uuid4``, the same as the ``create_uuid`` api without
        its round trip), ``filter Unique-ID <uuid>`` is added (and the channel
        events subscribed) before the originate is written, BACKGROUND_JOB is
        let through the filters for the result, and the filter is removed
        when the channel is destroyed. A connection without filters gets no
        filter (the first one would hide every other event from its handlers).
        """
        from esl.cluster import Cluster

        if isinstance(connection, Cluster):  # place the call on one of its nodes
            connection = connection.node(node) if node is not None else connection.pick()
        elif node is not None:
            raise ValueError("node= is for a Cluster")
        uuid = str(_uuid_mod.uuid4())
        if return_ring_ready:
            variables = {**(variables or {}), "return_ring_ready": "true"}
        command = originate_command(uuid, dial_path, variables, caller_id_number=caller_id_number,
                                    caller_id_name=caller_id_name, timeout=timeout, app=app)
        channel = cls(connection, uuid, dial_path=dial_path.strip(), created=True, history=history)
        channel._register()
        try:
            await channel.ensure_events()
        except BaseException:
            channel._unregister()
            raise
        sending: asyncio.Task[Job] = asyncio.ensure_future(connection.bgapi(command))
        try:
            job = await asyncio.shield(sending)
        except asyncio.CancelledError:
            connection.executor.spawn(kill_orphan(channel, sending), f"ending the cancelled originate {uuid}")
            raise
        except BaseException:
            channel._unregister()
            raise
        channel.job = job
        job.channel = channel
        job.add_done_callback(channel._job_done)
        return channel


def channels_of(connection: ChannelHost) -> tuple[Channel, ...]:
    """The live Channel objects a connection owns."""
    return tuple(o for o in connection.owners if isinstance(o, Channel))
