# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled UUID event filter: each event to the owner of its UUID.

For events from the compiled parser the key is read from the offsets the
parser recorded, so an event that matches no route is passed on or dropped
without its headers ever being decoded.
"""

from esl._core.event cimport Event


cdef object _deliverer(object target):
    put = getattr(target, "put_nowait", None)
    if put is not None:
        return put
    if not callable(target):
        raise TypeError(f"route target must be callable or have put_nowait, not {type(target).__name__}")
    return target


cdef class Router:
    """The UUID event filter: sends each event to the owner of its UUID.

    The key of an event is its ``Job-UUID`` for BACKGROUND_JOB and its
    ``Unique-ID`` otherwise. A target is a callable or anything with
    ``put_nowait`` (an ``asyncio.Queue``). Events whose key has no route go to
    ``default`` (or are dropped when it is ``None``) without their headers
    being decoded. A ``CHANNEL_UUID`` event moves the route of
    ``Old-Unique-ID`` to the new ``Unique-ID`` so a channel keeps its events.
    Routes may be added and removed at any time, from inside a target too.
    """

    def __init__(self, default=None):
        self._routes = {}
        self._targets = {}
        self.default = default
        self.matched = 0
        self.unmatched = 0

    @property
    def default(self):
        """Where events with no route go; ``None`` drops them."""
        return self._default

    @default.setter
    def default(self, target):
        self._default = target
        self._default_call = None if target is None else _deliverer(target)

    def add(self, key, target):
        """Route events whose UUID is ``key`` to ``target`` (replacing any earlier route)."""
        self._routes[key] = _deliverer(target)
        self._targets[key] = target

    def discard(self, key):
        """Remove the route for ``key`` if there is one."""
        self._routes.pop(key, None)
        self._targets.pop(key, None)

    def get(self, key):
        """The target routed for ``key``, or ``None``."""
        return self._targets.get(key)

    def __contains__(self, key):
        return key in self._routes

    def __len__(self):
        return len(self._routes)

    cdef object _event_key(self, object event):
        cdef Event ev
        if type(event) is Event:
            ev = <Event>event
            if ev._name_is(b"BACKGROUND_JOB", 14):
                return ev._key(2)  # Job-UUID
            return ev._key(1)  # Unique-ID
        return event.job_uuid if event.name == "BACKGROUND_JOB" else event.uuid

    cdef object _rekey(self, object event, object key):
        """For CHANNEL_UUID: move the route of Old-Unique-ID to ``key``; the target or None."""
        old = event.get("Old-Unique-ID")
        if old is not None and old in self._routes:
            self._routes[key] = self._routes.pop(old)
            target = self._targets[key] = self._targets.pop(old)
            return target
        return None

    def lookup(self, event):
        """The target owning ``event``, or ``None``; follows CHANNEL_UUID renames."""
        key = self._event_key(event)
        if key is None:
            return None
        target = self._targets.get(key)
        if target is None and _is_channel_uuid(event):
            target = self._rekey(event, key)
        return target

    cdef bint _route(self, object event) except -1:
        key = self._event_key(event)
        call = self._routes.get(key) if key is not None else None
        if call is None and _is_channel_uuid(event) and self.lookup(event) is not None:
            call = self._routes.get(key) if key is not None else None
        if call is not None:
            self.matched += 1
            call(event)
            return True
        self.unmatched += 1
        if self._default_call is not None:
            self._default_call(event)
        return False

    def route(self, event):
        """Deliver one event; True when a route matched."""
        return self._route(event)

    def dispatch(self, events):
        """Deliver each event; return how many matched a route."""
        cdef Py_ssize_t matched = 0
        for event in events:
            if self._route(event):
                matched += 1
        return matched


cdef inline bint _is_channel_uuid(object event) except -1:
    if type(event) is Event:
        return (<Event>event)._name_is(b"CHANNEL_UUID", 12)
    return event.name == "CHANNEL_UUID"
