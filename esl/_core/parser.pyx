# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled framer: bytes in, complete messages (``Event``) out.

Frames that lie inside one fed chunk are not copied: their events point into
that chunk. Only a message split across chunks is assembled in a buffer.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.string cimport memchr, memcmp, memcpy
cdef extern from "strings.h" nogil:
    int strncasecmp(const char *a, const char *b, size_t n)

from esl._core.event cimport Event, make_event

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


cdef inline Py_ssize_t _find_blank(const char *p, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """Index of the first ``\\n\\n`` in p[pos:n], or -1."""
    cdef const char *nl
    while pos < n - 1:
        # search p[pos:n-1] so that nl[1] is always inside the buffer
        nl = <const char *>memchr(p + pos, 10, n - 1 - pos)
        if nl == NULL:
            return -1
        if nl[1] == 10:
            return nl - p
        pos = (nl - p) + 2
    return -1


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

    ``feed`` may be given any split of the stream, down to one byte at a time;
    it never re-scans bytes it has already searched. A Content-Length that is
    not a decimal number, or a header block or body over ``max_size`` bytes,
    raises :class:`ProtocolError`; after that the parser refuses more input
    until ``reset()``, so nothing after the error can be mis-framed silently.
    """

    def __init__(self, Py_ssize_t max_size=DEFAULT_MAX_SIZE):
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self.max_size = max_size
        self.reset()

    def reset(self):
        """Drop buffered bytes and any error state."""
        self._pend = bytearray()
        self._in_body = False
        self._hlen = 0
        self._need = -1
        self._ctype = ""
        self._error = None

    @property
    def buffered(self):
        """Bytes held waiting for the rest of a message."""
        return PyByteArray_GET_SIZE(self._pend)

    def feed(self, data):
        """Add bytes; return the messages they complete, in order."""
        if self._error is not None:
            raise ProtocolError(f"parser stopped after an earlier error: {self._error}")
        cdef bytes chunk = data if type(data) is bytes else bytes(data)
        cdef list out = []
        cdef Py_ssize_t pos = 0
        try:
            if PyByteArray_GET_SIZE(self._pend):
                pos = self._resume(chunk, out)
            if pos >= 0:
                self._run(chunk, pos, out)
        except ProtocolError as exc:
            self._error = exc
            self._pend = bytearray()
            self._in_body = False
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
                        if v <= self.max_size:
                            v = v * 10 + (p[i] - 48)
                    length = v
                    cs, ce = vs, ve
            ls = le + 1
        self._ctype = ctype
        if length > self.max_size:
            raise ProtocolError(
                f"Content-Length {int(p[cs:ce])} exceeds the {self.max_size}-byte cap")
        return length

    cdef Py_ssize_t _resume(self, bytes data, list out) except -2:
        """Complete the buffered message with ``data``; the offset in ``data`` after it, or -1."""
        cdef const char *d = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), pl = PyByteArray_GET_SIZE(self._pend)
        cdef Py_ssize_t pos = 0, t, used, length, total, missing
        cdef const char *pp
        cdef bytes frame
        if not self._in_body:
            pp = PyByteArray_AS_STRING(self._pend)
            if n and pp[pl - 1] == 10 and d[0] == 10:
                t = pl - 1
            else:
                t = _find_blank(d, 0, n)
                if t >= 0:
                    t += pl
            if t < 0:
                self._pend += data
                if PyByteArray_GET_SIZE(self._pend) > self.max_size:
                    raise ProtocolError(f"header block larger than {self.max_size} bytes")
                return -1
            if t > self.max_size:
                raise ProtocolError(f"header block larger than {self.max_size} bytes")
            used = t + 2 - pl
            self._pend += d[:used]
            pp = PyByteArray_AS_STRING(self._pend)
            length = self._fields(pp, 0, t)
            if length <= 0:
                frame = PyBytes_FromStringAndSize(pp, t + 2)
                self._pend = bytearray()
                out.append(make_event(frame, 0, t, t + 2, False, self._ctype))
                return used
            self._in_body = True
            self._hlen = t
            self._need = length
            pos = used
        total = self._hlen + 2 + self._need
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
        out.append(make_event(frame, 0, self._hlen, total, True, self._ctype))
        return pos + missing

    cdef int _run(self, bytes data, Py_ssize_t pos, list out) except -1:
        """Frame messages from data[pos:] without copying; buffer an incomplete tail."""
        cdef const char *p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), e, length, fe
        while True:
            while pos < n and p[pos] == 10:  # stray blank lines between messages
                pos += 1
            if pos >= n:
                return 0
            e = _find_blank(p, pos, n)
            if e < 0:
                if n - pos > self.max_size:
                    raise ProtocolError(f"header block larger than {self.max_size} bytes")
                self._pend = bytearray(p[pos:n])
                self._in_body = False
                return 0
            if e - pos > self.max_size:
                raise ProtocolError(f"header block larger than {self.max_size} bytes")
            length = self._fields(p, pos, e)
            if length <= 0:
                out.append(make_event(data, pos, e, e + 2, False, self._ctype))
                pos = e + 2
                continue
            fe = e + 2 + length
            if fe <= n:
                out.append(make_event(data, pos, e, fe, True, self._ctype))
                pos = fe
                continue
            self._pend = bytearray(p[pos:n])
            self._in_body = True
            self._hlen = e - pos
            self._need = length
            return 0
