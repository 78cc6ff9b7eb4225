# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled ``Event``: one message read from FreeSWITCH.

An event keeps a reference to the bytes it was framed from plus offsets, so
framing copies nothing. The routing keys of an event (Event-Name,
Unique-ID, Job-UUID, Application-UUID, Event-Subclass, Event-Sequence) are
located in C when the frame is read, for json and xml too (the full decode
answers where the byte scan cannot be sure); strings are made only when
asked for.
The full header mapping is decoded on first use. Behaviour is that of the
pure-Python twin ``esl._pycore.Event``, which the differential tests enforce.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset

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
    K_BODY = 6
    KEYS_SCANNED = 1 << 7   # in _have: the key offsets are valid

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
# A slot is one 64-byte cache line: the str, the key length, its hash and up
# to 48 key bytes (zero-padded so keys compare a word at a time). The tables
# and the byte scans are plain C, in scan.h.
cdef extern from "scan.h" nogil:
    # string caches (see the comment above): slots of 64 and 128 bytes
    ctypedef struct esl_slot:
        PyObject *s
        uint32_t n
        uint32_t h
        char data[48]
    ctypedef struct esl_line:
        PyObject *name
        PyObject *value
        uint32_t n
        uint32_t h
        uint32_t flags          # 1 not a header, 2 Event-Name, 4 Content-Length, 8 filled
        char data[96]
    esl_slot esl_names[1024]
    esl_slot esl_values[4096]
    esl_line esl_lines[8192]
    # routing keys: [s, e) per key, -1 when absent, -2 when unsure (json/xml)
    ctypedef struct esl_keys:
        Py_ssize_t s[6]
        Py_ssize_t e[6]
        Py_ssize_t ihead
    Py_ssize_t esl_find2(const char *p, Py_ssize_t n, char a, char b)
    void esl_scan_plain(const char *base, Py_ssize_t bs, Py_ssize_t e, esl_keys *k)
    int esl_scan_json(const char *p, Py_ssize_t i, Py_ssize_t n, esl_keys *k)
    int esl_scan_xml(const char *p, Py_ssize_t i, Py_ssize_t n, esl_keys *k)
    void esl_prefetch(const void *p)

DEF SLOT_MAX = 48
DEF NAME_SLOTS = 1024
DEF VALUE_SLOTS = 4096
DEF LINE_SLOTS = 8192
DEF LINE_MAX = 96

cdef str _EMPTY = ""


cdef inline uint64_t _tail(const char *p, Py_ssize_t n) noexcept nogil:
    """The n < 8 bytes at p as a zero-padded little word (no memcpy call)."""
    cdef uint64_t w = 0
    cdef Py_ssize_t i
    for i in range(n):
        w |= (<uint64_t><unsigned char>p[i]) << (8 * i)
    return w


cdef inline uint64_t _hash(const char *p, Py_ssize_t n) noexcept nogil:
    # length, first and last eight bytes (and the middle of longer keys)
    cdef uint64_t a = 0, z = 0, m = 0
    if n >= 8:
        memcpy(&a, p, 8)
        memcpy(&z, p + n - 8, 8)
        if n > 16:
            memcpy(&m, p + (n >> 1) - 4, 8)
    else:
        a = _tail(p, n)
    a = (a ^ <uint64_t>n) * 0x9E3779B97F4A7C15ULL
    z = (z ^ (m << 1)) * 0xFF51AFD7ED558CCDULL
    a ^= z
    return a ^ (a >> 29)


cdef inline bint _same(const esl_slot *slot, uint32_t h, const char *p, Py_ssize_t n) noexcept nogil:
    if slot.s == NULL or slot.h != h or slot.n != <uint32_t>n:
        return False
    return _eq_padded(slot.data, p, n)


cdef inline bint _eq_padded(const char *data, const char *p, Py_ssize_t n) noexcept nogil:
    """p[:n] == data[:n], where data is zero-padded to a multiple of 8 bytes."""
    cdef const char *slotdata = data
    cdef Py_ssize_t i = 0
    cdef uint64_t w, v
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        memcpy(&v, slotdata + i, 8)
        if w != v:
            return False
        i += 8
    if i < n:
        w = _tail(p + i, n - i)
        memcpy(&v, slotdata + i, 8)
        return w == v
    return True


cdef inline void _store(esl_slot *slot, uint32_t h, str s, const char *p, Py_ssize_t n) noexcept:
    Py_INCREF(s)
    Py_XDECREF(slot.s)
    slot.s = <PyObject *>s
    slot.n = <uint32_t>n
    slot.h = h
    memset(slot.data, 0, SLOT_MAX)
    memcpy(slot.data, p, n)


cdef str _name_str(const char *p, Py_ssize_t n):
    """A header name as an interned ``str``, from the cache when seen before."""
    if n > SLOT_MAX:
        return PyUnicode_DecodeUTF8(p, n, "surrogateescape")
    cdef uint64_t h = _hash(p, n)
    cdef esl_slot *slot = &esl_names[h & (NAME_SLOTS - 1)]
    if _same(slot, <uint32_t>(h >> 32), p, n):
        return <str>slot.s
    s = _intern(PyUnicode_DecodeUTF8(p, n, "surrogateescape"))
    _store(slot, <uint32_t>(h >> 32), s, p, n)
    return s


cdef str _value_str(const char *p, Py_ssize_t n):
    """``_decode_value`` through the value cache."""
    if n == 0:
        return _EMPTY
    if n > SLOT_MAX:
        return _decode_value(p, n)
    cdef uint64_t h = _hash(p, n)
    cdef esl_slot *slot = &esl_values[h & (VALUE_SLOTS - 1)]
    if _same(slot, <uint32_t>(h >> 32), p, n):
        return <str>slot.s
    s = _decode_value(p, n)
    _store(slot, <uint32_t>(h >> 32), s, p, n)
    return s


cdef inline bint _starts(const char *p, Py_ssize_t n, const char *lit, Py_ssize_t k) noexcept nogil:
    return n >= k and memcmp(p, lit, k) == 0


cdef esl_line _big_line  # scratch for lines too long to cache


cdef uint32_t _line_fill(esl_line *slot, uint32_t h, const char *p, Py_ssize_t n) except 0:
    """Decode one header line into ``slot`` (name, value, flags) and return its flags."""
    cdef Py_ssize_t colon = esl_find2(p, n, 58, 58), vs
    cdef uint32_t flags = 8  # "filled"
    name = value = None
    if colon >= n or colon == 0:
        flags |= 1  # no ':' or an empty name: not a header
    else:
        vs = colon + 1
        while vs < n and p[vs] == 32:
            vs += 1
        name = _name_str(p, colon)
        value = _value_str(p + vs, n - vs)
        if colon == 10 and memcmp(p, b"Event-Name", 10) == 0:
            flags |= 2
        elif colon == 14 and memcmp(p, b"Content-Length", 14) == 0:
            flags |= 4
    Py_XDECREF(slot.name)
    Py_XDECREF(slot.value)
    Py_INCREF(name)
    Py_INCREF(value)
    slot.name = <PyObject *>name
    slot.value = <PyObject *>value
    slot.flags = flags
    slot.h = h
    if n <= LINE_MAX:
        slot.n = <uint32_t>n
        memset(slot.data, 0, LINE_MAX)
        memcpy(slot.data, p, n)
    return flags


cdef esl_line *_line_get_h(const char *p, Py_ssize_t n, uint64_t h) except NULL:
    """The cache slot of header line p[:n] (n <= LINE_MAX, hash h), filled on a miss.

    Two-way: a line lives in slot i or its neighbour i ^ 1; a new line goes to
    i and pushes what was there to the neighbour.
    """
    h32 = <uint32_t>(h >> 32)
    cdef Py_ssize_t i = <Py_ssize_t>(h & (LINE_SLOTS - 1))
    cdef esl_line *a = &esl_lines[i]
    cdef esl_line *b
    if a.flags and a.h == h32 and a.n == <uint32_t>n and _eq_padded(a.data, p, n):
        return a
    b = &esl_lines[i ^ 1]
    if b.flags and b.h == h32 and b.n == <uint32_t>n and _eq_padded(b.data, p, n):
        return b
    if a.flags:
        Py_XDECREF(b.name)
        Py_XDECREF(b.value)
        memcpy(b, a, sizeof(esl_line))  # the references move with it
        a.name = a.value = NULL
        a.flags = 0
    _line_fill(a, h32, p, n)
    return a


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


# -- decoded headers: a C array of pairs ----------------------------------------
#
# When a plain event's (or a reply's) headers are first touched, every header
# line is decoded into one C array ``_kv``: name, value, name, value... in wire
# order, owned references, mostly increfs of the strs in the line cache. The
# mapping is served from it: a lookup scans for the name (names are interned,
# so the scan is mostly pointer compares), the first match wins, the last for
# Event-Name. A real dict is built only for what needs one (iteration,
# ``.headers``, case-insensitive lookups).
#
# ``len()`` needs the number of distinct names. FreeSWITCH sends the same
# header names in the same order again and again (98% of the events in the
# real capture repeat the name sequence of an earlier event), so the count is
# kept per sequence of name objects in a small shape cache; a new shape is
# counted once with a dict.

DEF BATCH = 16          # lines hashed and prefetched ahead of their lookups
DEF SHAPE_SLOTS = 256
DEF KV_PAIRS = 128      # capacity of a new pair array (grown past it when needed)
DEF KV_SPARE = 32       # freed arrays of KV_PAIRS kept for reuse: no malloc per event

cdef struct Shape:
    uint64_t h
    Py_ssize_t n
    Py_ssize_t nuniq        # distinct names among the n
    PyObject **names        # owned references; NULL when the slot is empty

cdef Shape _shapes[SHAPE_SLOTS]


cdef PyObject **_kv_spare[KV_SPARE]
cdef int _kv_nspare = 0


cdef PyObject **_kv_new() noexcept:
    """An array for KV_PAIRS pairs (NULL when out of memory)."""
    global _kv_nspare
    if _kv_nspare:
        _kv_nspare -= 1
        return _kv_spare[_kv_nspare]
    return <PyObject **>PyMem_Malloc(2 * KV_PAIRS * sizeof(PyObject *))


cdef void _release(PyObject **kv, Py_ssize_t n) noexcept:
    """Drop the references of n pairs and free (or keep for reuse) the array."""
    global _kv_nspare
    cdef Py_ssize_t i
    for i in range(2 * n):
        Py_DECREF(<object>kv[i])
    if n <= KV_PAIRS and _kv_nspare < KV_SPARE:  # so it holds at least KV_PAIRS pairs
        _kv_spare[_kv_nspare] = kv
        _kv_nspare += 1
    else:
        PyMem_Free(kv)


cdef PyObject **_gather(const char *base, Py_ssize_t s, Py_ssize_t e, bint drop_last_cl,
                        Py_ssize_t *count, uint64_t *shape) except NULL:
    """The header lines of base[s:e] as a new array of (name, value) pairs.

    Their number goes to ``count``, the hash of their name sequence (the key
    of the shape cache) to ``shape``.

    As the twin's ``_codec.parse_header_block``: split at the first ``:``,
    skip the spaces after it, ignore lines without ``:`` or with an empty
    name. ``drop_last_cl``: the last pair is dropped when it is an exact
    ``Content-Length`` (it frames the body of a plain event).
    """
    cdef Py_ssize_t cap = KV_PAIRS, n = 0, ls = s, le, nb, i
    cdef Py_ssize_t starts[BATCH]
    cdef Py_ssize_t lens[BATCH]
    cdef uint64_t hashes[BATCH]
    cdef uint32_t last_flags = 0
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL, prev_h = h
    cdef esl_line *slot
    cdef PyObject **kv = _kv_new()
    cdef PyObject **grown
    if kv == NULL:
        raise MemoryError()
    try:
        while ls < e:
            # Bounds and hashes of a batch of lines, prefetching their cache
            # slots, so the lookups below find them in cache.
            nb = 0
            while ls < e and nb < BATCH:
                le = ls + esl_find2(base + ls, e - ls, 10, 10)
                starts[nb] = ls
                lens[nb] = le - ls
                if le - ls <= LINE_MAX:
                    hashes[nb] = _hash(base + ls, le - ls)
                    esl_prefetch(&esl_lines[hashes[nb] & (LINE_SLOTS - 1)])
                nb += 1
                ls = le + 1
            for i in range(nb):
                if lens[i] <= LINE_MAX:
                    slot = _line_get_h(base + starts[i], lens[i], hashes[i])
                else:
                    _line_fill(&_big_line, 0, base + starts[i], lens[i])
                    slot = &_big_line
                if slot.flags & 1:
                    continue  # not a header line
                if n == cap:
                    grown = <PyObject **>PyMem_Realloc(kv, 4 * cap * sizeof(PyObject *))
                    if grown == NULL:
                        raise MemoryError()
                    kv = grown
                    cap *= 2
                Py_INCREF(<object>slot.name)
                Py_INCREF(<object>slot.value)
                kv[2 * n] = slot.name
                kv[2 * n + 1] = slot.value
                last_flags = slot.flags
                prev_h = h
                h = (h ^ <uint64_t>slot.name) * 0xFF51AFD7ED558CCDULL
                n += 1
    except BaseException:
        _release(kv, n)
        raise
    if drop_last_cl and n and (last_flags & 4):
        n -= 1
        Py_DECREF(<object>kv[2 * n])
        Py_DECREF(<object>kv[2 * n + 1])
        h = prev_h
    count[0] = n
    shape[0] = h ^ <uint64_t>n
    return kv


cdef inline bint _is_event_name(str name):
    return len(name) == 10 and name == _EVENT_NAME


cdef Py_ssize_t _find(PyObject **kv, Py_ssize_t n, str key) except -2:
    """The pair ``event[key]`` gives: the first whose name equals ``key``, the last for Event-Name; -1 if none."""
    cdef PyObject *k = <PyObject *>key
    cdef Py_ssize_t klen = len(key), i, found = -1
    for i in range(n):
        if kv[2 * i] == k or (len(<str>kv[2 * i]) == klen and <str>kv[2 * i] == key):
            found = i
            break
    if found >= 0 and _is_event_name(key):
        for i in range(found + 1, n):
            if kv[2 * i] == k or <str>kv[2 * i] == key:
                found = i
    return found


cdef dict _map_of(PyObject **kv, Py_ssize_t n):
    """The first-occurrence dict of n pairs (Event-Name: the last, as libesl)."""
    cdef dict first = __Pyx_PyDict_NewPresized(n)
    cdef Py_ssize_t i
    for i in range(n):
        k = <object>kv[2 * i]
        if _is_event_name(k):
            first[k] = <object>kv[2 * i + 1]
        else:
            PyDict_SetDefault(first, k, <object>kv[2 * i + 1])
    return first


cdef inline Shape *_shape_of(uint64_t h) noexcept:
    """The shape-cache slot for a name-sequence hash (see ``_gather``)."""
    return &_shapes[(h ^ (h >> 33)) & (SHAPE_SLOTS - 1)]


cdef Py_ssize_t _shape_uniq(PyObject **kv, Py_ssize_t n, uint64_t h) except -2:
    """The number of distinct names among n pairs (name-sequence hash h) when their shape was seen, else -1."""
    cdef Shape *sh = _shape_of(h)
    cdef Py_ssize_t i
    if sh.names == NULL or sh.h != h or sh.n != n:
        return -1
    for i in range(n):
        if sh.names[i] != kv[2 * i]:
            return -1
    return sh.nuniq


cdef int _shape_store(PyObject **kv, Py_ssize_t n, uint64_t h, Py_ssize_t nuniq) except -1:
    """Remember that the name sequence of these n pairs (hash h) has ``nuniq`` distinct names."""
    cdef Shape *sh = _shape_of(h)
    cdef PyObject **names = <PyObject **>PyMem_Malloc(n * sizeof(PyObject *) + 1)
    cdef Py_ssize_t i
    if names == NULL:
        raise MemoryError()
    for i in range(n):
        names[i] = kv[2 * i]
        Py_INCREF(<object>names[i])
    if sh.names != NULL:
        for i in range(sh.n):
            Py_DECREF(<object>sh.names[i])
        PyMem_Free(sh.names)
    sh.names = names
    sh.n = n
    sh.h = h
    sh.nuniq = nuniq
    return 0


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
        if len(raw) != len(outer) + 2 + (len(inner) if inner is not None else 0) or not raw.startswith(outer):
            raise ValueError("raw must be outer + b'\\n\\n' + inner")
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

    cdef void _scan_keys(self) noexcept:
        """Locate the routing keys (and, for plain, the end of the inner header block) in one pass.

        A key is the value of the first header whose name is exactly the key
        (the last one for Event-Name), else of the first one whose name
        matches it case-insensitively: the same answer as ``event.get(key)``.
        The json and xml scans give up (no ``KEYS_SCANNED``) or mark a key -2
        where only the full decode can answer as the twin does.
        """
        cdef esl_keys k
        cdef const char *base = PyBytes_AS_STRING(self._buf)
        if self._fmt == FMT_PLAIN:
            esl_scan_plain(base, self._hend + 2, self._end, &k)
            self._ihead = k.ihead
        elif self._fmt == FMT_JSON:
            if esl_scan_json(base, self._hend + 2, self._end, &k) < 0:
                return
        elif esl_scan_xml(base, self._hend + 2, self._end, &k) < 0:
            return
        self._have |= KEYS_SCANNED
        self._name_s, self._name_e = k.s[K_NAME], k.e[K_NAME]
        self._uuid_s, self._uuid_e = k.s[K_UUID], k.e[K_UUID]
        self._job_s, self._job_e = k.s[K_JOB], k.e[K_JOB]
        self._app_s, self._app_e = k.s[K_APP], k.e[K_APP]
        self._sub_s, self._sub_e = k.s[K_SUB], k.e[K_SUB]
        self._seq_s, self._seq_e = k.s[K_SEQ], k.e[K_SEQ]

    cdef object _key(self, int which):
        """Routing key ``which`` as a Python object, computed once."""
        cdef unsigned int bit = 1u << which
        cdef Py_ssize_t s = -2, e = -2
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
        if self._have & KEYS_SCANNED:
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
        if s == -1:
            value = None
        elif s >= 0:
            # json values are not percent-encoded: the raw bytes as they are
            base = PyBytes_AS_STRING(self._buf)
            if which == K_SEQ:
                if self._fmt == FMT_JSON or memchr(base + s, 37, e - s) == NULL:
                    value = _int_or_none(base + s, e - s)
                else:
                    raw = (<str>_decode_value(base + s, e - s)).encode("utf-8", "surrogateescape")
                    value = _int_or_none(PyBytes_AS_STRING(raw), len(raw))
            elif self._fmt == FMT_JSON and memchr(base + s, 37, e - s) != NULL:
                value = _to_str(base + s, e - s)  # the value cache percent-decodes
            else:
                value = _value_str(base + s, e - s)  # UUIDs repeat: shared strings
        elif which == K_SEQ:
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
        if (self._have & (KEYS_SCANNED | 1u)) == KEYS_SCANNED:
            if self._name_s == -1:
                return False
            if self._name_s >= 0:
                raw = PyBytes_AS_STRING(self._buf) + self._name_s
                k = self._name_e - self._name_s
                if self._fmt == FMT_JSON or memchr(raw, 37, k) == NULL:
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

    cdef int _plain_head(self, Py_ssize_t *hs, Py_ssize_t *he) except -1:
        """The header block to decode for plain events and other messages; 1 if a body follows."""
        if self._fmt == FMT_NONE:
            hs[0], he[0] = self._start, self._hend
            return self._has_inner and self._end > self._hend + 2
        hs[0] = self._hend + 2
        he[0] = self._ihead if self._ihead >= 0 else self._end
        return self._ihead >= 0 and self._end > self._ihead + 2

    cdef bint _uses_pairs(self) noexcept:
        """Whether the headers are read from plain header lines (plain events, replies)."""
        return self._fmt == FMT_NONE or (self._fmt == FMT_PLAIN and self._has_inner)

    cdef int _load_pairs(self) except -1:
        """Decode every header line into ``_kv`` (see "decoded headers" above), once."""
        cdef Py_ssize_t hs = 0, he = 0, n = 0, nuniq
        cdef uint64_t shape = 0
        if self._kv != NULL:
            return 0
        body = self._plain_head(&hs, &he)
        self._kv = _gather(PyBytes_AS_STRING(self._buf), hs, he, body and self._fmt == FMT_PLAIN, &n, &shape)
        self._nkv = n
        nuniq = _shape_uniq(self._kv, n, shape)
        if nuniq < 0:
            nuniq = len(self._first_map())
            _shape_store(self._kv, n, shape, nuniq)
        self._nuniq = nuniq
        return 0

    def __dealloc__(self):
        if self._kv != NULL:
            _release(self._kv, self._nkv)
            self._kv = NULL

    cdef list _decode(self):
        """Every header in wire order, decoded once: a flat list name, value, name, value...

        Flat rather than tuples, so a decoded event costs the cyclic GC one
        container (untracked: it holds only strings and is never exposed).
        """
        if self._flat is not None:
            return self._flat
        cdef Py_ssize_t i
        cdef list flat = []
        if self._uses_pairs():
            self._load_pairs()
            for i in range(2 * self._nkv):
                flat.append(<object>self._kv[i])
        elif self._fmt != FMT_PLAIN:
            pairs, self._body = _parse_event(self._inner(), _FMT_NAMES[self._fmt])
            self._have |= 1u << K_BODY
            for k, v in pairs:
                flat.append(k)
                flat.append(v)
        PyObject_GC_UnTrack(flat)
        self._flat = flat
        return flat

    cdef bytes _inner(self):
        if not self._has_inner:
            return b""
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self._buf) + self._hend + 2,
                                         self._end - self._hend - 2)

    cdef dict _first_map(self):
        """First value of each name (Event-Name: the last), as a real dict."""
        cdef dict first = self._first
        cdef list flat
        cdef Py_ssize_t i
        if first is not None:
            return first
        if self._uses_pairs():
            self._load_pairs()
            first = self._first
            if first is None:  # _load_pairs builds it for a new shape
                first = _map_of(self._kv, self._nkv)
        else:
            flat = self._decode()
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
        cdef dict first
        cdef dict lower
        cdef Py_ssize_t i
        if type(name) is str and self._uses_pairs():
            self._load_pairs()
            i = _find(self._kv, self._nkv, <str>name)
            if i >= 0:
                return <object>self._kv[2 * i + 1]
        else:
            first = self._first_map()
            try:
                return first[name]
            except KeyError:
                pass
        lower = self._lower
        if lower is None:
            lower = {}
            for k, v in self._first_map().items():
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
        if self._uses_pairs():
            self._load_pairs()
            return self._nuniq
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
        cdef const char *base
        cdef Py_ssize_t bs
        if not (self._have & (1u << K_BODY)):
            base = PyBytes_AS_STRING(self._buf)
            if self._fmt == FMT_NONE:
                bs = self._hend + 2
                self._body = _to_str(base + bs, self._end - bs) if (self._has_inner and self._end > bs) else None
            elif self._fmt == FMT_PLAIN:
                bs = self._ihead + 2
                self._body = _to_str(base + bs, self._end - bs) if (self._ihead >= 0 and self._end > bs) else None
            else:
                self._decode()
            self._have |= 1u << K_BODY
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
    if ev._kv != NULL:  # __init__ called again
        _release(ev._kv, ev._nkv)
    ev._kv = NULL
    ev._nkv = 0
    ev._nuniq = -1
    ev._flat = None
    ev._first = ev._lower = None
    fmt = _FORMATS.get(content_type)
    ev._fmt = FMT_NONE if fmt is None else <int>fmt
    if ev._fmt != FMT_NONE and has_inner:
        ev._scan_keys()
    return 0


cdef Event make_event(bytes buf, Py_ssize_t start, Py_ssize_t hend, Py_ssize_t end,
                      bint has_inner, str content_type):
    """An Event over buf[start:end]: outer headers end at ``hend``, body follows ``hend + 2``."""
    cdef Event ev = Event.__new__(Event)
    _init(ev, buf, start, hend, end, has_inner, content_type)
    return ev
