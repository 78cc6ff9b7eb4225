# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled framer: bytes in, complete messages (``Event``) out.

Frames that lie inside one fed chunk are not copied at first: their events
point into that chunk, and the parser notes them (an event that goes away
takes itself off the note). At the next ``feed`` (and at ``reset``, and when
the parser goes away) every such event still alive gets its own copy of its
frame, so a kept event never pins the socket read it arrived in past the read
that follows it, and an event dropped at once (the common case: a handler
reads it and returns) costs no copy at all. A message
split across chunks is assembled in a buffer and owns it.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.ref cimport PyObject
from libc.string cimport memchr, memcmp, memcpy
cdef extern from "strings.h" nogil:
    int strncasecmp(const char *a, const char *b, size_t n)

from esl._core.event cimport Event, Lend, lend_add, lend_new, lend_release, lend_settle, make_event

from esl.exceptions import ProtocolError

#: FreeSWITCH's own cap on a message (MAX_CONTENT_LENGTH, libesl's ESL_MAX_CONTENT_LENGTH).
DEFAULT_MAX_SIZE = 16 * 1024 * 1024

# Content-Types FreeSWITCH writes, as shared str objects.
cdef tuple _KNOWN_TYPES = (
    "text/event-plain", "text/event-json", "text/event-xml", "command/reply",
    "api/response", "auth/request", "log/data", "text/disconnect-notice",
    "text/rude-rejection",
)


cdef inline bint _space(unsigned char c) noexcept nogil:
    # bytes.strip() whitespace
    return c == 32 or (9 <= c <= 13)


cdef inline Py_ssize_t _find_blank(const char *p, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t *tlen) noexcept nogil:
    """Index of the first terminator (``\\n\\n`` or ``\\n\\r\\n``, as libesl) in p[pos:n], or -1; its length in tlen."""
    cdef const char *nl
    cdef Py_ssize_t i
    while pos < n - 1:
        # search p[pos:n-1] so that nl[1] is always inside the buffer
        nl = <const char *>memchr(p + pos, 10, n - 1 - pos)
        if nl == NULL:
            return -1
        i = nl - p
        if nl[1] == 10:
            tlen[0] = 2
            return i
        if nl[1] == 13 and i + 2 < n and nl[2] == 10:
            tlen[0] = 3
            return i
        pos = i + 1
    return -1


cdef inline Py_ssize_t _partial(const char *p, Py_ssize_t n) noexcept nogil:
    """How many bytes at the end of p[:n] may begin a terminator still to complete (0, 1 or 2)."""
    if n >= 1 and p[n - 1] == 10:
        return 1
    if n >= 2 and p[n - 2] == 10 and p[n - 1] == 13:
        return 2
    return 0


cdef tuple _KNOWN_BYTES = tuple([t.encode("ascii") for t in _KNOWN_TYPES])


cdef str _ctype_str(const char *p, Py_ssize_t n):
    """A Content-Type value as text (latin-1, as the twin), shared when it is a known one."""
    cdef Py_ssize_t i
    cdef bytes kb
    for i in range(len(_KNOWN_BYTES)):
        kb = <bytes>_KNOWN_BYTES[i]
        if PyBytes_GET_SIZE(kb) == n and memcmp(PyBytes_AS_STRING(kb), p, n) == 0:
            return <str>_KNOWN_TYPES[i]
    return p[:n].decode("latin-1")


cdef class Parser:
    """Incremental ESL framer: bytes in, complete messages (``Event``) out.

    ``feed`` may be given any split of the stream, down to one byte at a time,
    and frames it the same way whatever the split; it never re-scans bytes it
    has already searched. A header block ends at ``\\n\\n`` or ``\\n\\r\\n`` (as
    libesl and mod_event_socket read it).

    A Content-Length that is not a decimal number, or a header block or body
    over ``max_size`` bytes, raises :class:`ProtocolError`. The messages that
    the same ``feed`` call completed before the bad frame are not lost: they
    are on the exception as ``exc.messages`` (a list, in order; empty when
    there were none). After the error the parser refuses more input until
    ``reset()``, so nothing after it can be mis-framed silently.
    """

    def __init__(self, Py_ssize_t max_size=DEFAULT_MAX_SIZE):
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self.max_size = max_size
        self.reset()

    def reset(self):
        """Drop buffered bytes and any error state."""
        self._settle()
        self._pend = bytearray()
        self._in_body = False
        self._hlen = 0
        self._tlen = 2
        self._need = -1
        self._ctype = ""
        self._error = None

    def __dealloc__(self):
        if self._lend != NULL:
            try:
                lend_settle(self._lend)
            except MemoryError:
                pass  # the events keep the chunk they point into: correct, only larger
            lend_release(self._lend)
            self._lend = NULL

    cdef int _settle(self) except -1:
        """Give each event framed in place from the last chunk and still alive its own frame."""
        if self._lend != NULL and self._lend.n:
            lend_settle(self._lend)
        return 0

    @property
    def buffered(self):
        """Bytes held waiting for the rest of a message."""
        return PyByteArray_GET_SIZE(self._pend)

    def feed(self, data):
        """Add bytes; return the messages they complete, in order.

        On a framing error raises :class:`ProtocolError` whose ``messages``
        holds the messages completed earlier in this same call.
        """
        if self._error is not None:
            exc = ProtocolError(f"parser stopped after an earlier error: {self._error}")
            exc.messages = []
            raise exc
        cdef bytes chunk = data if type(data) is bytes else bytes(data)
        cdef list out = []
        cdef Py_ssize_t pos = 0
        if self._lend == NULL:
            self._lend = lend_new()
        elif self._lend.n:
            lend_settle(self._lend)
        try:
            if PyByteArray_GET_SIZE(self._pend):
                pos = self._resume(chunk, out)
            if pos >= 0:
                self._run(chunk, pos, out)
        except ProtocolError as exc:
            self._error = exc
            self._pend = bytearray()
            self._in_body = False
            exc.messages = out
            raise
        return out

    cdef Py_ssize_t _fields(self, const char *p, Py_ssize_t s, Py_ssize_t e) except -2:
        """Read Content-Type (into ``_ctype``) and Content-Length (returned, -1 if absent) of p[s:e]."""
        cdef Py_ssize_t ls = s, le, k, vs, ve, length = -1, v, i, cs = 0, ce = 0
        cdef const char *nl
        cdef const char *colon
        cdef str ctype = ""
        while ls < e:
            nl = <const char *>memchr(p + ls, 10, e - ls)
            le = (nl - p) if nl != NULL else e
            colon = <const char *>memchr(p + ls, 58, le - ls)
            if colon != NULL and colon != p + ls:
                k = colon - (p + ls)
                vs = colon - p + 1
                ve = le
                if k == 12 and strncasecmp(p + ls, b"content-type", 12) == 0:
                    while vs < ve and _space(p[vs]):
                        vs += 1
                    while ve > vs and _space(p[ve - 1]):
                        ve -= 1
                    ctype = _ctype_str(p + vs, ve - vs)
                elif k == 14 and strncasecmp(p + ls, b"content-length", 14) == 0:
                    while vs < ve and _space(p[vs]):
                        vs += 1
                    while ve > vs and _space(p[ve - 1]):
                        ve -= 1
                    if vs == ve:
                        raise ProtocolError(f"malformed Content-Length: {p[vs:ve]!r}")
                    v = 0
                    for i in range(vs, ve):
                        if not (48 <= <unsigned char>p[i] <= 57):
                            raise ProtocolError(f"malformed Content-Length: {p[vs:min(ve, vs + 40)]!r}")
                        if v <= self.max_size:  # saturates past the cap: any digit count is safe
                            v = v * 10 + (p[i] - 48)
                    length = v
                    cs, ce = vs, ve
            ls = le + 1
        self._ctype = ctype
        if length > self.max_size:
            raise ProtocolError(
                f"Content-Length {_digits(p[cs:ce])} exceeds the {self.max_size}-byte cap")
        return length

    cdef int _check_pending(self, const char *p, Py_ssize_t n) except -1:
        """Refuse an unterminated header block already certain to pass the cap."""
        if n - _partial(p, n) > self.max_size:
            raise ProtocolError(f"header block larger than {self.max_size} bytes")
        return 0

    cdef Py_ssize_t _resume(self, bytes data, list out) except -2:
        """Complete the buffered message with ``data``; the offset in ``data`` after it, or -1."""
        cdef const char *d = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), pl = PyByteArray_GET_SIZE(self._pend)
        cdef Py_ssize_t pos = 0, t = -1, tlen = 2, used, length, total, missing, k
        cdef const char *pp
        cdef char bridge[5]
        cdef bytes frame
        if not self._in_body:
            # a terminator that began in the buffered bytes (at most 2 of them)
            pp = PyByteArray_AS_STRING(self._pend)
            k = 2 if pl >= 2 else pl
            memcpy(bridge, pp + pl - k, k)
            memcpy(bridge + k, d, min(n, 3))
            t = _find_blank(bridge, 0, k + min(n, 3), &tlen)
            if t >= 0 and t < k:
                t += pl - k
            else:
                t = _find_blank(d, 0, n, &tlen)
                if t >= 0:
                    t += pl
            if t < 0:
                self._pend += data
                self._check_pending(PyByteArray_AS_STRING(self._pend), PyByteArray_GET_SIZE(self._pend))
                return -1
            if t > self.max_size:
                raise ProtocolError(f"header block larger than {self.max_size} bytes")
            used = t + tlen - pl
            self._pend += d[:used]
            pp = PyByteArray_AS_STRING(self._pend)
            length = self._fields(pp, 0, t)
            if length <= 0:
                frame = PyBytes_FromStringAndSize(pp, t + tlen)
                self._pend = bytearray()
                out.append(make_event(frame, 0, t, t + tlen, t + tlen, False, self._ctype))
                return used
            self._in_body = True
            self._hlen = t
            self._tlen = tlen
            self._need = length
            pos = used
        total = self._hlen + self._tlen + self._need
        missing = total - PyByteArray_GET_SIZE(self._pend)
        if n - pos < missing:
            self._pend += d[pos:n]
            return -1
        frame = PyBytes_FromStringAndSize(NULL, total)
        pl = PyByteArray_GET_SIZE(self._pend)
        memcpy(PyBytes_AS_STRING(frame), PyByteArray_AS_STRING(self._pend), pl)
        memcpy(PyBytes_AS_STRING(frame) + pl, d + pos, missing)
        self._pend = bytearray()
        self._in_body = False
        out.append(make_event(frame, 0, self._hlen, self._hlen + self._tlen, total, True, self._ctype))
        return pos + missing

    cdef int _run(self, bytes data, Py_ssize_t pos, list out) except -1:
        """Frame messages from data[pos:], each copied into its own bytes; buffer an incomplete tail."""
        cdef const char *p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), e, length, fe, tlen = 2
        cdef bint has_inner
        cdef Event ev
        while True:
            while pos < n and (p[pos] == 10 or p[pos] == 13):  # stray line ends between messages
                pos += 1
            if pos >= n:
                return 0
            e = _find_blank(p, pos, n, &tlen)
            if e < 0:
                self._check_pending(p + pos, n - pos)
                self._pend = bytearray(p[pos:n])
                self._in_body = False
                return 0
            if e - pos > self.max_size:
                raise ProtocolError(f"header block larger than {self.max_size} bytes")
            length = self._fields(p, pos, e)
            if length <= 0:
                fe = e + tlen
                has_inner = False
            else:
                fe = e + tlen + length
                has_inner = True
                if fe > n:
                    self._pend = bytearray(p[pos:n])
                    self._in_body = True
                    self._hlen = e - pos
                    self._tlen = tlen
                    self._need = length
                    return 0
            ev = make_event(data, pos, e, e + tlen, fe, has_inner, self._ctype)
            out.append(ev)
            if pos or fe != n:  # a frame inside the chunk: settled at the next feed
                lend_add(self._lend, ev)
            pos = fe


cdef str _digits(bytes text):
    """A decimal number for an error message: itself, or its length when it is very long."""
    text = text.lstrip(b"0") or b"0"
    if len(text) <= 40:
        return text.decode("ascii")
    return f"of {len(text)} digits"
