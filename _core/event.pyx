# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled ``Event``: one message read from FreeSWITCH.

An event keeps a reference to the bytes it was framed from plus offsets, so
framing copies nothing. The routing keys of a plain event (Event-Name,
Unique-ID, Job-UUID, Application-UUID, Event-Subclass, Event-Sequence) are
located in C when the frame is read; strings are made only when asked for.
The full header mapping is decoded on first use. Behaviour is that of the
pure-Python twin ``esl._pycore.Event``, which the differential tests enforce.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp, memcpy

from collections.abc import Mapping as _Mapping
from sys import intern as _intern

from esl import _codec

cdef extern from *:
    dict __Pyx_PyDict_NewPresized(Py_ssize_t n)

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object o)
    PyObject* PyDict_SetDefault(object d, object key, object default) except NULL

cdef enum:
    K_NAME = 0
    K_UUID = 1
    K_JOB = 2
    K_APP = 3
    K_SUB = 4
    K_SEQ = 5

cdef dict _FORMATS = {"text/event-plain": FMT_PLAIN, "text/event-json": FMT_JSON,
                      "text/event-xml": FMT_XML}
cdef tuple _FMT_NAMES = (None, "plain", "json", "xml")
cdef object _parse_event = _codec.parse_event
cdef object _split_array = _codec.split_array
cdef str _EVENT_NAME = "Event-Name"
cdef str _CONTENT_LENGTH = "Content-Length"


# -- byte-level decoding ------------------------------------------------------

cdef inline int _hexval(unsigned char c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


cdef str _to_str(const char *p, Py_ssize_t n):
    """UTF-8 with undecodable bytes kept as surrogates (the twin's ``to_str``)."""
    return PyUnicode_DecodeUTF8(p, n, "surrogateescape")


cdef str _decode_value(const char *p, Py_ssize_t n):
    """Percent-decode a header value (a malformed ``%`` stays, ``+`` stays) then ``_to_str``."""
    cdef const char *pct = <const char *>memchr(p, 37, n)
    if pct == NULL:
        return PyUnicode_DecodeUTF8(p, n, "surrogateescape")
    cdef char stackbuf[512]
    cdef char *out = stackbuf
    if n > 512:
        out = <char *>PyMem_Malloc(n)
        if out == NULL:
            raise MemoryError()
    cdef Py_ssize_t i = pct - p, m = pct - p
    cdef int hi, lo
    cdef unsigned char c
    memcpy(out, p, m)
    while i < n:
        c = <unsigned char>p[i]
        if c == 37 and i + 2 < n:
            hi = _hexval(<unsigned char>p[i + 1])
            lo = _hexval(<unsigned char>p[i + 2])
            if hi >= 0 and lo >= 0:
                out[m] = <char>(hi * 16 + lo)
                m += 1
                i += 3
                continue
        out[m] = <char>c
        m += 1
        i += 1
    try:
        return PyUnicode_DecodeUTF8(out, m, "surrogateescape")
    finally:
        if out != stackbuf:
            PyMem_Free(out)


# Header names and most values repeat from one event to the next (97% of the
# values in the real capture): small direct-mapped caches keyed by the raw
# bytes hand back the same str object instead of decoding and allocating.
DEF SLOT_MAX = 56
DEF NAME_SLOTS = 4096
DEF VALUE_SLOTS = 8192

cdef struct Slot:
    PyObject *s
    Py_ssize_t n
    char data[SLOT_MAX]

cdef Slot _names[NAME_SLOTS]
cdef Slot _values[VALUE_SLOTS]
cdef str _EMPTY = ""


cdef inline uint64_t _hash(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = <uint64_t>n * 0x9E3779B97F4A7C15ULL, w
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL
        i += 8
    if i < n:
        w = 0
        memcpy(&w, p + i, n - i)
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL
    return h ^ (h >> 31)


cdef inline void _store(Slot *slot, str s, const char *p, Py_ssize_t n) noexcept:
    Py_INCREF(s)
    Py_XDECREF(slot.s)
    slot.s = <PyObject *>s
    slot.n = n
    memcpy(slot.data, p, n)


cdef str _name_str(const char *p, Py_ssize_t n):
    """A header name as an interned ``str``, from the cache when seen before."""
    if n > SLOT_MAX:
        return PyUnicode_DecodeUTF8(p, n, "surrogateescape")
    cdef Slot *slot = &_names[_hash(p, n) & (NAME_SLOTS - 1)]
    if slot.s != NULL and slot.n == n and memcmp(slot.data, p, n) == 0:
        return <str>slot.s
    s = _intern(PyUnicode_DecodeUTF8(p, n, "surrogateescape"))
    _store(slot, s, p, n)
    return s


cdef str _value_str(const char *p, Py_ssize_t n):
    """``_decode_value`` through the value cache."""
    if n == 0:
        return _EMPTY
    if n > SLOT_MAX:
        return _decode_value(p, n)
    cdef Slot *slot = &_values[_hash(p, n) & (VALUE_SLOTS - 1)]
    if slot.s != NULL and slot.n == n and memcmp(slot.data, p, n) == 0:
        return <str>slot.s
    s = _decode_value(p, n)
    _store(slot, s, p, n)
    return s


cdef inline bint _starts(const char *p, Py_ssize_t n, const char *lit, Py_ssize_t k) noexcept nogil:
    return n >= k and memcmp(p, lit, k) == 0


cdef Py_ssize_t _parse_block(const char *base, Py_ssize_t s, Py_ssize_t e,
                             list flat, dict first) except -2:
    """Append the ``Name: value`` lines of base[s:e] to ``flat`` (name, value, name, ...) and ``first``.

    As the twin's ``_codec.parse_header_block``: split at the first ``:``,
    skip the spaces after it, ignore lines without ``:`` or with an empty
    name; ``first`` keeps the first value of each name, except
    ``Event-Name`` where the last one wins. Returns how many exact
    ``Content-Length`` names were seen.
    """
    cdef Py_ssize_t ls = s, le, colon, vs, cl_count = 0
    cdef const char *nl
    cdef const char *cp
    cdef str name, value
    while ls < e:
        nl = <const char *>memchr(base + ls, 10, e - ls)
        le = (nl - base) if nl != NULL else e
        cp = <const char *>memchr(base + ls, 58, le - ls)
        if cp != NULL and cp != base + ls:
            colon = cp - base
            vs = colon + 1
            while vs < le and base[vs] == 32:
                vs += 1
            name = _name_str(base + ls, colon - ls)
            value = _value_str(base + vs, le - vs)
            flat.append(name)
            flat.append(value)
            if colon - ls == 10 and memcmp(base + ls, b"Event-Name", 10) == 0:
                first[name] = value
            else:
                if colon - ls == 14 and memcmp(base + ls, b"Content-Length", 14) == 0:
                    cl_count += 1
                PyDict_SetDefault(first, name, value)
        ls = le + 1
    return cl_count


cdef object _int_or_none(const char *p, Py_ssize_t n):
    """``int(raw)`` or ``None``, as the twin; digits-only values take a C path."""
    cdef Py_ssize_t i
    cdef long long v = 0
    if 0 < n <= 18:
        for i in range(n):
            if not (48 <= <unsigned char>p[i] <= 57):
                break
            v = v * 10 + (p[i] - 48)
        else:
            return v
    try:
        return int(PyBytes_FromStringAndSize(p, n))
    except ValueError:
        return None


# -- the Event ----------------------------------------------------------------

@cython.freelist(512)
@cython.no_gc
cdef class Event:
    """One message read from FreeSWITCH: an event, a command reply, an api response...

    ``content_type`` tells which. For ``text/event-plain|json|xml`` messages the
    mapping holds the headers of the event inside and ``body`` its inner body;
    for every other message it holds the message's own headers and ``body`` is
    the message body. Lookups are exact first, then case-insensitive; ``getall``
    returns every occurrence with ``ARRAY::`` values split. Values are ``str``,
    percent-decoded for plain and xml, and bytes that are not UTF-8 are kept
    losslessly as surrogates (``surrogateescape``).
    """

    def __init__(self, bytes raw, str content_type, bytes outer, object inner):
        # The twin's constructor: raw is outer + b"\n\n" + (inner or b"").
        _init(self, raw, 0, len(outer), len(raw), inner is not None, content_type)

    # -- construction -------------------------------------------------------

    @classmethod
    def build(cls, headers, body=None, str fmt="plain"):
        """An event with these headers (in order) and body, as if read in format ``fmt``."""
        pairs = list(headers.items()) if isinstance(headers, _Mapping) else list(headers)
        payload = _codec.serialize(pairs, body, fmt)
        from esl._core.parser import Parser
        return Parser().feed(_codec.frame(payload, fmt))[0]

    # -- format -------------------------------------------------------------

    @property
    def format(self):
        """``"plain"``, ``"json"`` or ``"xml"`` for events; ``None`` for other messages."""
        return _FMT_NAMES[self._fmt]

    @property
    def is_event(self):
        """True for ``text/event-*`` messages."""
        return self._fmt != FMT_NONE

    @property
    def raw(self):
        """The bytes of the whole message, as read."""
        if self._raw is None:
            if self._start == 0 and self._end == PyBytes_GET_SIZE(self._buf):
                self._raw = self._buf
            else:
                self._raw = PyBytes_FromStringAndSize(
                    PyBytes_AS_STRING(self._buf) + self._start, self._end - self._start)
        return self._raw

    # -- routing keys -------------------------------------------------------

    cdef void _scan_plain(self) noexcept:
        """Locate the routing keys and the end of the inner header block, in one pass."""
        cdef const char *base = PyBytes_AS_STRING(self._buf)
        cdef Py_ssize_t bs = self._hend + 2, e = self._end, ls = bs, le, n
        cdef const char *nl
        cdef const char *p
        while ls < e:
            nl = <const char *>memchr(base + ls, 10, e - ls)
            le = (nl - base) if nl != NULL else e
            n = le - ls
            if n == 0:
                if ls > bs:
                    self._ihead = ls - 1
                    return
            else:
                p = base + ls
                if p[0] == 69:  # E
                    if _starts(p, n, b"Event-Name: ", 12):
                        self._name_s = ls + 12
                        self._name_e = le
                    elif self._seq_s < 0 and _starts(p, n, b"Event-Sequence: ", 16):
                        self._seq_s = ls + 16
                        self._seq_e = le
                    elif self._sub_s < 0 and _starts(p, n, b"Event-Subclass: ", 16):
                        self._sub_s = ls + 16
                        self._sub_e = le
                elif p[0] == 85:  # U
                    if self._uuid_s < 0 and _starts(p, n, b"Unique-ID: ", 11):
                        self._uuid_s = ls + 11
                        self._uuid_e = le
                elif p[0] == 74:  # J
                    if self._job_s < 0 and _starts(p, n, b"Job-UUID: ", 10):
                        self._job_s = ls + 10
                        self._job_e = le
                elif p[0] == 65:  # A
                    if self._app_s < 0 and _starts(p, n, b"Application-UUID: ", 18):
                        self._app_s = ls + 18
                        self._app_e = le
            ls = le + 1

    cdef object _key(self, int which):
        """Routing key ``which`` as a Python object, computed once."""
        cdef unsigned int bit = 1u << which
        cdef Py_ssize_t s, e
        cdef const char *base
        if self._have & bit:
            if which == K_NAME:
                return self._name
            if which == K_UUID:
                return self._uuid
            if which == K_JOB:
                return self._job
            if which == K_APP:
                return self._app
            if which == K_SUB:
                return self._sub
            return self._seq
        if self._fmt == FMT_PLAIN and self._has_inner:
            base = PyBytes_AS_STRING(self._buf)
            if which == K_NAME:
                s, e = self._name_s, self._name_e
            elif which == K_UUID:
                s, e = self._uuid_s, self._uuid_e
            elif which == K_JOB:
                s, e = self._job_s, self._job_e
            elif which == K_APP:
                s, e = self._app_s, self._app_e
            elif which == K_SUB:
                s, e = self._sub_s, self._sub_e
            else:
                s, e = self._seq_s, self._seq_e
            if s < 0:
                value = None
            elif which == K_SEQ:
                value = _int_or_none(base + s, e - s)
            else:
                value = _decode_value(base + s, e - s)
        else:
            if which == K_SEQ:
                text = self.get("Event-Sequence")
                if text is None:
                    value = None
                else:
                    raw = (<str>text).encode("utf-8", "surrogateescape")
                    value = _int_or_none(PyBytes_AS_STRING(raw), len(raw))
            else:
                value = self.get(("Event-Name", "Unique-ID", "Job-UUID", "Application-UUID",
                                  "Event-Subclass")[which])
        if which == K_NAME:
            self._name = value
        elif which == K_UUID:
            self._uuid = value
        elif which == K_JOB:
            self._job = value
        elif which == K_APP:
            self._app = value
        elif which == K_SUB:
            self._sub = value
        else:
            self._seq = value
        self._have |= bit
        return value

    cdef bint _name_is(self, const char *lit, Py_ssize_t n) except -1:
        """Whether the event name equals ``lit``, on the raw bytes when they need no decoding."""
        cdef const char *raw
        cdef Py_ssize_t k
        if self._fmt == FMT_PLAIN and self._has_inner and not (self._have & 1u):
            if self._name_s < 0:
                return False
            raw = PyBytes_AS_STRING(self._buf) + self._name_s
            k = self._name_e - self._name_s
            if memchr(raw, 37, k) == NULL:
                return k == n and memcmp(raw, lit, n) == 0
        name = self._key(K_NAME)
        return name is not None and name == lit[:n].decode("utf-8", "surrogateescape")

    @property
    def name(self):
        """``Event-Name`` (the last one, as libesl does); ``None`` for non-events."""
        return self._key(K_NAME)

    @property
    def subclass(self):
        """``Event-Subclass`` of a CUSTOM event."""
        return self._key(K_SUB)

    @property
    def uuid(self):
        """``Unique-ID``: the channel the event belongs to."""
        return self._key(K_UUID)

    @property
    def job_uuid(self):
        """``Job-UUID`` of a BACKGROUND_JOB event or a bgapi reply."""
        return self._key(K_JOB)

    @property
    def application_uuid(self):
        """``Application-UUID`` of CHANNEL_EXECUTE(_COMPLETE): the sendmsg ``Event-UUID``."""
        return self._key(K_APP)

    @property
    def sequence(self):
        """``Event-Sequence`` as an int."""
        return self._key(K_SEQ)

    # -- headers ------------------------------------------------------------

    cdef list _decode(self):
        """Decode every header (and the body) once: ``_flat``, ``_body`` and, when cheap, ``_first``.

        Headers are kept as one flat list (name, value, name, value...) rather
        than tuples, so a decoded event costs the cyclic GC one container.
        """
        if self._flat is not None:
            return self._flat
        cdef const char *base = PyBytes_AS_STRING(self._buf)
        cdef Py_ssize_t bs = self._hend + 2, he, cl
        cdef list flat = []
        cdef dict first = {}
        if self._fmt == FMT_NONE:
            _parse_block(base, self._start, self._hend, flat, first)
            self._body = _to_str(base + bs, self._end - bs) if (self._has_inner and self._end > bs) else None
            self._first = first
        elif self._fmt == FMT_PLAIN:
            if self._has_inner:
                he = self._ihead if self._ihead >= 0 else self._end
                first = __Pyx_PyDict_NewPresized((he - bs) // 24 + 1)  # ~36 bytes a line
                cl = _parse_block(base, bs, he, flat, first)
                if self._ihead >= 0 and self._end > self._ihead + 2:
                    self._body = _to_str(base + self._ihead + 2, self._end - self._ihead - 2)
                    # The Content-Length line just before the blank line frames the body.
                    if flat and flat[len(flat) - 2] == _CONTENT_LENGTH:
                        del flat[len(flat) - 2:]
                        if cl == 1:
                            del first[_CONTENT_LENGTH]
            self._first = first
        else:
            inner = PyBytes_FromStringAndSize(base + bs, self._end - bs) if self._has_inner else b""
            pairs, self._body = _parse_event(inner, _FMT_NAMES[self._fmt])
            for k, v in pairs:
                flat.append(k)
                flat.append(v)
        # Only strings inside and never exposed: the cyclic GC need not traverse it.
        PyObject_GC_UnTrack(flat)
        self._flat = flat
        return flat

    cdef dict _first_map(self):
        cdef dict first = self._first
        cdef list flat
        cdef Py_ssize_t i
        if first is None:
            flat = self._decode()
            first = self._first
            if first is None:
                first = {}
                for i in range(0, len(flat), 2):
                    k = flat[i]
                    v = flat[i + 1]
                    if k == _EVENT_NAME:
                        first[k] = v  # last wins, as libesl
                    else:
                        PyDict_SetDefault(first, k, v)
                self._first = first
        return first

    def __getitem__(self, name):
        cdef dict first = self._first_map()
        cdef dict lower
        try:
            return first[name]
        except KeyError:
            pass
        lower = self._lower
        if lower is None:
            lower = {}
            for k, v in first.items():
                PyDict_SetDefault(lower, k.lower(), v)
            self._lower = lower
        return lower[name.lower()]

    def get(self, name, default=None):
        """``self[name]``, or ``default`` when absent."""
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name):
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __iter__(self):
        return iter(self._first_map())

    def __len__(self):
        return len(self._first_map())

    def keys(self):
        """Header names (first occurrence order)."""
        return self._first_map().keys()

    def values(self):
        """Header values, as ``self[name]`` gives them."""
        return self._first_map().values()

    def items(self):
        """``(name, self[name])`` pairs."""
        return self._first_map().items()

    def getall(self, str name):
        """Every value of header ``name`` (any casing), repeated lines and ``ARRAY::`` items flattened."""
        cdef list flat = self._decode()
        cdef Py_ssize_t i
        lname = name.lower()
        out = []
        for i in range(0, len(flat), 2):
            k = flat[i]
            if k == name or k.lower() == lname:
                out.extend(_split_array(flat[i + 1]))
        return out

    def items_all(self):
        """Every header line in wire order, duplicates included."""
        cdef list flat = self._decode()
        cdef Py_ssize_t i
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    @property
    def headers(self):
        """A plain ``dict`` copy of the headers (first occurrence, Event-Name last)."""
        return dict(self._first_map())

    @property
    def body(self):
        """The inner body of an event, the output of an api/response; ``None`` when absent."""
        if self._flat is None:
            self._decode()
        return self._body

    # -- output -------------------------------------------------------------

    def serialize(self, str fmt="plain"):
        """The event as FreeSWITCH would serialize it in ``fmt`` (without the outer frame)."""
        return _codec.serialize(self.items_all(), self.body, fmt)

    def frame(self, str fmt="plain"):
        """The full wire message FreeSWITCH would write for this event in ``fmt``."""
        return _codec.frame(self.serialize(fmt), fmt)

    def __repr__(self):
        if self._fmt != FMT_NONE:
            return f"<Event {self.name} uuid={self.uuid} seq={self.sequence}>"
        return f"<Event {self.content_type} {self.get('Reply-Text', '')!r}>"

    def __eq__(self, other):
        if not isinstance(other, _Mapping) or not hasattr(other, "items_all"):
            return NotImplemented
        return self.items_all() == other.items_all() and self.body == other.body

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None


_Mapping.register(Event)


cdef inline int _init(Event ev, bytes buf, Py_ssize_t start, Py_ssize_t hend, Py_ssize_t end,
                      bint has_inner, str content_type) except -1:
    ev._buf = buf
    ev._start = start
    ev._hend = hend
    ev._end = end
    ev._has_inner = has_inner
    ev.content_type = content_type
    ev._ihead = -1
    ev._name_s = ev._uuid_s = ev._job_s = ev._app_s = ev._sub_s = ev._seq_s = -1
    ev._have = 0
    fmt = _FORMATS.get(content_type)
    ev._fmt = FMT_NONE if fmt is None else <int>fmt
    if ev._fmt == FMT_PLAIN and has_inner:
        ev._scan_plain()
    return 0


cdef Event make_event(bytes buf, Py_ssize_t start, Py_ssize_t hend, Py_ssize_t end,
                      bint has_inner, str content_type):
    """An Event over buf[start:end]: outer headers end at ``hend``, body follows ``hend + 2``."""
    cdef Event ev = Event.__new__(Event)
    _init(ev, buf, start, hend, end, has_inner, content_type)
    return ev
