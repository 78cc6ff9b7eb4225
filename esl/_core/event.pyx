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
from cpython.list cimport PyList_New
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memmove, memset

from collections.abc import Mapping as _Mapping
from sys import intern as _intern

from esl import _codec

cdef extern from *:
    dict __Pyx_PyDict_NewPresized(Py_ssize_t n)

cdef extern from "strings.h" nogil:
    int strncasecmp(const char *a, const char *b, size_t n)

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    void PyObject_GC_UnTrack(object o)
    PyObject* PyDict_SetDefault(object d, object key, object default) except NULL
    PyObject **PySequence_Fast_ITEMS(object o)

cdef enum:
    K_NAME = 0
    K_UUID = 1
    K_JOB = 2
    K_APP = 3
    K_SUB = 4
    K_SEQ = 5
    K_BODY = 6              # in _have: _body is computed
    NKEYS = 16              # located keys: the routing keys above, then the channel fields
    KEYS_SCANNED = 1 << 7   # in _have: the key offsets are valid

# The channel fields located with the routing keys (indices 6-15 of the scan).
cdef tuple _KEY_NAMES = (
    "Event-Name", "Unique-ID", "Job-UUID", "Application-UUID", "Event-Subclass", "Event-Sequence",
    "Channel-State", "Channel-State-Number", "Channel-Call-State", "Answer-State", "Hangup-Cause",
    "Other-Leg-Unique-ID", "DTMF-Digit", "Application", "Application-Response", "Application-Data",
)
cdef dict _KEY_INDEX = {name: i for i, name in enumerate(_KEY_NAMES)}

cdef dict _FORMATS = {"text/event-plain": FMT_PLAIN, "text/event-json": FMT_JSON,
                      "text/event-xml": FMT_XML}
cdef tuple _FMT_NAMES = (None, "plain", "json", "xml")
cdef object _parse_event = _codec.parse_event
cdef object _split_array = _codec.split_array
cdef object _xml_value = _codec.xml_value
cdef object _xml_body = _codec.xml_body
from json.decoder import scanstring as _scanstring  # the C string scanner of the json module
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


# Large values (a channel variable of tens of KB) repeat in every event of their
# channel, and decoding them is most of what a full decode of such an event
# costs (UTF-8 text of mixed widths decodes at about a byte per ns). A few
# recent ones are kept, checked byte for byte on a hit: at most BIG_SLOTS
# values of up to BIG_MAX bytes each.
DEF BIG_SLOTS = 16
DEF BIG_MIN = 1024
DEF BIG_MAX = 1 << 17
cdef list _big = [None] * BIG_SLOTS   # (kind, raw bytes, decoded str) per slot


cdef inline Py_ssize_t _big_slot(const char *p, Py_ssize_t n) noexcept nogil:
    """A slot for p[:n] from its length and 16 words sampled across it."""
    cdef uint64_t h = <uint64_t>n * 0x9E3779B97F4A7C15ULL, w
    cdef Py_ssize_t i, step = (n - 8) // 15
    for i in range(16):
        memcpy(&w, p + i * step, 8)
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL
    return <Py_ssize_t>((h ^ (h >> 32)) & (BIG_SLOTS - 1))


cdef object _big_get(int kind, const char *p, Py_ssize_t n, Py_ssize_t *slot):
    """The cached decode of p[:n] as ``kind``, or None (then ``slot`` is where to store it)."""
    cdef Py_ssize_t i = _big_slot(p, n)
    slot[0] = i
    entry = _big[i]
    if entry is not None and (<tuple>entry)[0] == kind:
        raw = (<tuple>entry)[1]
        if PyBytes_GET_SIZE(raw) == n and memcmp(PyBytes_AS_STRING(raw), p, n) == 0:
            return (<tuple>entry)[2]
    return None


cdef inline void _big_put(Py_ssize_t slot, int kind, const char *p, Py_ssize_t n, str value):
    _big[slot] = (kind, PyBytes_FromStringAndSize(p, n), value)


cdef str _decode_value(const char *p, Py_ssize_t n):
    """Percent-decode a header value (a malformed ``%`` stays, ``+`` stays) then ``_to_str``."""
    cdef Py_ssize_t slot
    if BIG_MIN <= n <= BIG_MAX:
        value = _big_get(0, p, n, &slot)
        if value is None:
            value = _decode_value_now(p, n)
            _big_put(slot, 0, p, n, value)
        return value
    return _decode_value_now(p, n)


cdef str _decode_value_now(const char *p, Py_ssize_t n):
    cdef const char *pct = <const char *>memchr(p, 37, n)
    if pct == NULL:
        return PyUnicode_DecodeUTF8(p, n, "surrogateescape")
    cdef char stackbuf[512]
    cdef char *out = stackbuf
    if n > 512:
        out = <char *>PyMem_Malloc(n)
        if out == NULL:
            raise MemoryError()
    cdef Py_ssize_t m = pct - p
    memcpy(out, p, m)
    m += esl_unescape(pct, n - m, out + m)
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
    esl_line esl_pairs[4096]
    # routing keys: [s, e) per key, -1 when absent, -2 when unsure (json/xml)
    ctypedef struct esl_keys:
        int32_t s[16]
        int32_t e[16]
        Py_ssize_t ihead
    Py_ssize_t esl_find2(const char *p, Py_ssize_t n, char a, char b)
    const signed char esl_hexv[256]
    int esl_has_high(const char *p, Py_ssize_t n)
    Py_ssize_t esl_unescape(const char *p, Py_ssize_t n, char *out)
    int esl_find_header(const char *p, Py_ssize_t s, Py_ssize_t e, const char *key, Py_ssize_t klen, int last,
                        Py_ssize_t *ls_out, Py_ssize_t *le_out)
    int esl_has_kelvin(const char *p, Py_ssize_t s, Py_ssize_t e)
    void esl_scan_plain(const char *base, Py_ssize_t bs, Py_ssize_t e, esl_keys *k)
    ctypedef struct esl_ent:
        int32_t ks, ke, vs, ve
        uint8_t kind, esc
    ctypedef struct esl_ents:
        esl_ent *ent
        Py_ssize_t n, cap
    int esl_scan_json(const char *p, Py_ssize_t i, Py_ssize_t n, esl_keys *k, esl_ents *o)
    int esl_scan_xml(const char *p, Py_ssize_t i, Py_ssize_t n, esl_keys *k, esl_ents *o)
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
        if n > vs and p[n - 1] == 13:  # a CRLF line: the CR is not part of the value
            value = _value_str(p + vs, n - 1 - vs)
        else:
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


cdef object _int_text(object text):
    """``int`` of a header value's bytes (ASCII digits, as the twin), ``None`` when absent or not a number."""
    if text is None:
        return None
    raw = (<str>text).encode("utf-8", "surrogatepass")  # a lone surrogate is just not a number
    return _int_or_none(PyBytes_AS_STRING(raw), len(raw))


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
DEF SHAPE_SLOTS = 1024
DEF SHAPE_SEED = 0x9E3779B97F4A7C15ULL  # the name-sequence hash of no names
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
    cdef uint64_t h = SHAPE_SEED, prev_h = h
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
                h = _shape_step(h, slot.name)
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


cdef object _ABSENT = object()  # _lookup: no such header
cdef object _SLOW = object()    # _lookup: only the full decode can answer


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


cdef inline uint64_t _shape_step(uint64_t h, PyObject *name) noexcept:
    """The name-sequence hash (the shape cache's key) after one more name object."""
    return (h ^ <uint64_t>name) * 0xFF51AFD7ED558CCDULL


cdef Py_ssize_t _shape_count(Event ev, PyObject **kv, Py_ssize_t n, uint64_t h) except -1:
    """The number of distinct names among the event's n pairs kv (name-sequence hash h): from the
    shape cache, else counted with the event's mapping once and remembered."""
    cdef Py_ssize_t nuniq = _shape_uniq(kv, n, h)
    if nuniq < 0:
        nuniq = len(ev._first_map())
        _shape_store(kv, n, h, nuniq)
    return nuniq


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


# -- json and xml events: the full decode in C ---------------------------------
#
# When the key scan found the exact shape FreeSWITCH writes (a flat cJSON
# object of strings and arrays of strings; switch_event_xmlize's <headers>),
# the same scan is run again recording where every pair lies, and the pairs
# are decoded from those offsets: names and short values through the string
# caches, json strings with escapes by the json module's C scanner, xml values
# with entities by the twin's codec. Anything else takes the twin's decode.

cdef inline int _hex4(const char *p) noexcept:
    """The value of four hex digits (the scan checked them)."""
    cdef int v = 0, i
    for i in range(4):
        v = (v << 4) | esl_hexv[<unsigned char>p[i]]
    return v


cdef str _json_unescape(const char *p, Py_ssize_t n):
    """The text of a json string's bytes p[:n] (escapes checked by the scan), as json.loads reads it
    from the payload decoded with ``surrogateescape``: escapes resolved on the bytes, then UTF-8. A
    lone surrogate escape has no UTF-8 form: the json module's scanner decides those."""
    cdef char stackbuf[512]
    cdef char *out = stackbuf
    cdef Py_ssize_t i = 0, m = 0, run
    cdef int cp, lo
    cdef char c
    if n > 512:
        out = <char *>PyMem_Malloc(n)
        if out == NULL:
            raise MemoryError()
    try:
        while i < n:
            run = esl_find2(p + i, n - i, 92, 92)
            memcpy(out + m, p + i, run)
            m += run
            i += run
            if i >= n:
                break
            c = p[i + 1]
            i += 2
            if c == 117:  # u: four hex digits, a surrogate pair as one code point
                cp = _hex4(p + i)
                i += 4
                if 0xD800 <= cp <= 0xDFFF:
                    if cp >= 0xDC00 or i + 6 > n or p[i] != 92 or p[i + 1] != 117:
                        return _scanstring(_to_str(p - 1, n + 2), 1, False)[0]
                    lo = _hex4(p + i + 2)
                    if not (0xDC00 <= lo <= 0xDFFF):
                        return _scanstring(_to_str(p - 1, n + 2), 1, False)[0]
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                    i += 6
                # UTF-8 is never longer than the escape it comes from (6 or 12 bytes)
                if cp < 0x80:
                    out[m] = <char>cp
                    m += 1
                elif cp < 0x800:
                    out[m] = <char>(0xC0 | (cp >> 6))
                    out[m + 1] = <char>(0x80 | (cp & 0x3F))
                    m += 2
                elif cp < 0x10000:
                    out[m] = <char>(0xE0 | (cp >> 12))
                    out[m + 1] = <char>(0x80 | ((cp >> 6) & 0x3F))
                    out[m + 2] = <char>(0x80 | (cp & 0x3F))
                    m += 3
                else:
                    out[m] = <char>(0xF0 | (cp >> 18))
                    out[m + 1] = <char>(0x80 | ((cp >> 12) & 0x3F))
                    out[m + 2] = <char>(0x80 | ((cp >> 6) & 0x3F))
                    out[m + 3] = <char>(0x80 | (cp & 0x3F))
                    m += 4
            else:  # b f n r t, or the character itself (" \\ /)
                out[m] = 8 if c == 98 else 12 if c == 102 else 10 if c == 110 else 13 if c == 114 else \
                    9 if c == 116 else c
                m += 1
        return PyUnicode_DecodeUTF8(out, m, "surrogateescape")
    finally:
        if out != stackbuf:
            PyMem_Free(out)


cdef inline str _json_str(const char *base, esl_ent *e):
    """A json string value (the bytes between its quotes) as the json module reads it."""
    cdef Py_ssize_t n = e.ve - e.vs, slot
    if e.esc:
        if BIG_MIN <= n <= BIG_MAX:
            value = _big_get(1, base + e.vs, n, &slot)
            if value is None:
                value = _json_unescape(base + e.vs, n)
                _big_put(slot, 1, base + e.vs, n, value)
            return value
        return _json_unescape(base + e.vs, n)
    if memchr(base + e.vs, 37, n) == NULL:
        return _value_str(base + e.vs, n)  # no '%': the cached decode is the plain one
    return _to_str(base + e.vs, n)


DEF PAIR_SLOTS = 4096


cdef inline esl_line *_pair_slot(const char *p, Py_ssize_t n, uint32_t kind, uint64_t *h) noexcept:
    """The pair-cache slot for the raw pair p[:n] (n <= LINE_MAX) of ``kind``; its hash in ``h``."""
    h[0] = _hash(p, n) ^ kind
    return &esl_pairs[h[0] & (PAIR_SLOTS - 1)]


cdef inline bint _pair_hit(esl_line *slot, const char *p, Py_ssize_t n, uint32_t kind, uint64_t h) noexcept:
    return (slot.flags == kind and slot.h == <uint32_t>(h >> 32) and slot.n == <uint32_t>n
            and _eq_padded(slot.data, p, n))


cdef inline void _pair_store(esl_line *slot, const char *p, Py_ssize_t n, uint32_t kind, uint64_t h,
                             object name, object value) noexcept:
    Py_INCREF(name)
    Py_INCREF(value)
    Py_XDECREF(slot.name)
    Py_XDECREF(slot.value)
    slot.name = <PyObject *>name
    slot.value = <PyObject *>value
    slot.flags = kind
    slot.h = <uint32_t>(h >> 32)
    slot.n = <uint32_t>n
    memset(slot.data, 0, LINE_MAX)
    memcpy(slot.data, p, n)


cdef inline object _xml_str(const char *base, esl_ent *e):
    """One xml header value: entities, then percent-escapes (the twin's codec when it has entities,
    or '%' beside non-ASCII bytes, which it decodes as text)."""
    cdef const char *p = base + e.vs
    cdef Py_ssize_t n = e.ve - e.vs
    cdef Py_ssize_t a = esl_find2(p, n, 38, 37)
    if a < n and (memchr(p + a, 38, n - a) != NULL or esl_has_high(p, n)):
        return _xml_value(_to_str(p, n))
    return _value_str(p, n)


cdef inline bint _same_name(const char *base, esl_ent *a, esl_ent *b) noexcept:
    return a.ke - a.ks == b.ke - b.ks and memcmp(base + a.ks, base + b.ks, a.ke - a.ks) == 0


cdef bint _has_lit(const char *p, Py_ssize_t n, const char *lit, Py_ssize_t k) noexcept:
    """Whether ``lit[:k]`` occurs in ``p[:n]``."""
    cdef const char *end = p + n
    cdef const char *q = p
    while end - q >= k:
        q = <const char *>memchr(q, lit[0], end - q)
        if q == NULL or end - q < k:
            return False
        if memcmp(q, lit, k) == 0:
            return True
        q += 1
    return False


cdef bint _json_names_hi(const char *base, esl_ent *ents, Py_ssize_t n) noexcept:
    """Whether any name of a json index holds a non-ASCII byte."""
    cdef Py_ssize_t i, j
    for i in range(n):
        if ents[i].kind != 2:
            for j in range(ents[i].ks, ents[i].ke):
                if <unsigned char>base[j] >= 0x80:
                    return True
    return False


# Where the pairs of a json or xml event lie. Its key scan (while the parser
# frames it) records them into a block of its own, kept while the event lies in
# the parser's last chunk: a handler's lookups and full decode read them there.
# An event kept past its chunk gives the block back (own_frame) and is scanned
# again, into one shared buffer, when it is next asked: nothing is kept per
# event beyond its chunk.
DEF BLOCK_ENTS = 256    # pairs a block holds; an event with more is scanned again when asked
DEF BLOCK_KEEP = 64     # spare blocks kept for the next events
cdef esl_ent *_blocks[BLOCK_KEEP]
cdef int _nblocks = 0


cdef inline esl_ent *_block_get() noexcept:
    global _nblocks
    if _nblocks:
        _nblocks -= 1
        return _blocks[_nblocks]
    return <esl_ent *>PyMem_Malloc(BLOCK_ENTS * sizeof(esl_ent))


cdef inline void _block_put(esl_ent *blk) noexcept:
    """Give a block back (to the spares, or to the allocator)."""
    global _nblocks
    if _nblocks < BLOCK_KEEP:
        _blocks[_nblocks] = blk
        _nblocks += 1
    else:
        PyMem_Free(blk)


cdef inline void _block_release(Event ev) noexcept:
    """Give the event's block back, if it has one."""
    if ev._ents != NULL:
        _block_put(<esl_ent *>ev._ents)
        ev._ents = NULL
        ev._nents = 0

DEF SCRATCH_MIN = 512
DEF SCRATCH_KEEP = 16384
cdef esl_ent *_scratch = NULL
cdef Py_ssize_t _scratch_cap = 0
# The event whose pairs the scratch holds (its key scan recorded them), their
# number and the body start they are relative to; the owner is cleared when
# the event goes away, so a new event at the same address cannot claim them.
cdef PyObject *_scratch_owner = NULL
cdef Py_ssize_t _scratch_n = 0
cdef Py_ssize_t _scratch_bs = 0
cdef bint _pairs_busy = False  # a lookup or decode is reading pairs (a block, or the shared buffer)


cdef int _doc_pairs(Event ev, esl_ent **ents, Py_ssize_t *n, const char **base) noexcept:
    """1 when the pairs of json or xml event ``ev`` are at hand (its block, or the shared buffer,
    scanned again if needed): in ``ents``, their number in ``n``, and in ``base`` the pointer their
    offsets are added to; 0 when unavailable."""
    cdef esl_keys k
    if not (ev._have & KEYS_SCANNED) or (ev._fmt != FMT_JSON and ev._fmt != FMT_XML):
        return 0
    # the offsets are from the scan, in the buffer the event had then (own_frame may have moved it)
    if ev._ents != NULL:
        ents[0] = <esl_ent *>ev._ents
        n[0] = ev._nents
        base[0] = PyBytes_AS_STRING(ev._buf) + (ev._bs - ev._ents_bs)
        return 1
    if _pairs_busy:
        return 0
    if _scratch_owner != <PyObject *>ev:
        if _scan_scratch(ev, &k) < 0 or _scratch_owner != <PyObject *>ev:
            return 0
    ents[0] = _scratch
    n[0] = _scratch_n
    base[0] = PyBytes_AS_STRING(ev._buf) + (ev._bs - _scratch_bs)
    return 1


cdef object _doc_value(int fmt, const char *base, esl_ent *ents, Py_ssize_t n, Py_ssize_t i):
    """The value of pair ``i`` as the mapping gives it (arrays as ``ARRAY::a|:b``)."""
    cdef esl_ent *e = &ents[i]
    cdef Py_ssize_t j
    cdef list run
    if fmt == FMT_JSON:
        if e.kind == 0:
            return _json_str(base, e)
        run = []
        for j in range(i + 1, i + 1 + e.vs):
            run.append(_json_str(base, &ents[j]))
        return "ARRAY::" + "|:".join(run)
    value = _xml_str(base, e)
    j = i + 1
    if j < n and _same_name(base, e, &ents[j]):  # one element per array item
        run = [value]
        while j < n and _same_name(base, e, &ents[j]):
            run.append(_xml_str(base, &ents[j]))
            j += 1
        return "ARRAY::" + "|:".join(run)
    return value


cdef inline int _scan_doc_into(Event ev, esl_keys *k, esl_ents *o) noexcept:
    """One scan of a json or xml event: its keys in ``k``, its pairs in ``o`` unless NULL."""
    cdef const char *base = PyBytes_AS_STRING(ev._buf)
    cdef int r
    if ev._fmt == FMT_JSON:
        r = esl_scan_json(base, ev._bs, ev._end, k, o)
    else:
        r = esl_scan_xml(base, ev._bs, ev._end, k, o)
    if r >= 0 and ev._fmt == FMT_XML:
        ev._ihead = k.ihead
    return r


cdef int _scan_doc(Event ev, esl_keys *k) noexcept:
    """The key scan of a json or xml event, recording where its pairs lie in a block of its own."""
    cdef esl_ents o
    cdef esl_ent *blk = _block_get()
    cdef int r
    if blk != NULL:
        o.ent = blk
        o.n = 0
        o.cap = BLOCK_ENTS
        r = _scan_doc_into(ev, k, &o)
        if r >= 0:  # (called from _init, which gave back any block the event had)
            ev._ents = blk
            ev._nents = o.n
            ev._ents_bs = ev._bs
            return r
        _block_put(blk)
        if r != -3:
            return r
    return _scan_doc_into(ev, k, NULL)  # more pairs than a block holds: the shared buffer when asked


cdef int _scan_scratch(Event ev, esl_keys *k) noexcept:
    """Scan a json or xml event again, recording where its pairs lie in the shared buffer."""
    global _scratch, _scratch_cap, _scratch_owner, _scratch_n, _scratch_bs
    cdef esl_ents o
    cdef esl_ent *grown
    cdef int r
    if _pairs_busy:  # a decode is reading the scratch (and ran code that got here): the keys alone
        return _scan_doc_into(ev, k, NULL)
    _scratch_owner = NULL
    if _scratch == NULL:
        _scratch = <esl_ent *>PyMem_Malloc(SCRATCH_MIN * sizeof(esl_ent))
        if _scratch == NULL:
            return _scan_doc_into(ev, k, NULL)
        _scratch_cap = SCRATCH_MIN
    while True:
        o.ent = _scratch
        o.n = 0
        o.cap = _scratch_cap
        r = _scan_doc_into(ev, k, &o)
        if r != -3:
            break
        grown = NULL
        if _scratch_cap < SCRATCH_KEEP:
            grown = <esl_ent *>PyMem_Realloc(_scratch, 4 * _scratch_cap * sizeof(esl_ent))
        if grown == NULL:  # too many pairs to keep: the keys alone (the twin decodes this one)
            return _scan_doc_into(ev, k, NULL)
        _scratch = grown
        _scratch_cap *= 4
    if r >= 0:
        _scratch_owner = <PyObject *>ev
        _scratch_n = o.n
        _scratch_bs = ev._bs
    return r


cdef object _fast_decode(Event ev):
    """The flat name, value... list of a json or xml event decoded from its pairs (and ``ev._body``);
    None when the twin's decode must say what it holds."""
    global _pairs_busy
    cdef Py_ssize_t n = 0, m = 0, i
    cdef const char *base = NULL
    cdef esl_ent *ents = NULL
    cdef bytes buf = ev._buf  # the frame the offsets point into stays alive, whatever runs meanwhile
    cdef bint was_busy = _pairs_busy
    cdef PyObject **kv
    cdef list flat
    if not _doc_pairs(ev, &ents, &n, &base):
        return None
    kv = <PyObject **>PyMem_Malloc((2 * n + 1) * sizeof(PyObject *))
    if kv == NULL:
        raise MemoryError()
    _pairs_busy = True
    try:
        if not _fast_decode_pairs(ev, kv, &m, base, ents, n):
            return None
        # the list is sized once: no growth, no copies
        flat = PyList_New(2 * m)
        memcpy(PySequence_Fast_ITEMS(flat), kv, 2 * m * sizeof(PyObject *))  # the list takes the references
        m = 0
        return flat
    finally:
        _pairs_busy = was_busy
        for i in range(2 * m):
            Py_DECREF(<object>kv[i])
        PyMem_Free(kv)


cdef inline void _kv_put(PyObject **kv, Py_ssize_t *m, object name, object value) noexcept:
    Py_INCREF(name)
    Py_INCREF(value)
    kv[2 * m[0]] = <PyObject *>name
    kv[2 * m[0] + 1] = <PyObject *>value
    m[0] += 1


cdef bint _fast_decode_pairs(Event ev, PyObject **kv, Py_ssize_t *m, const char *base, esl_ent *ents,
                             Py_ssize_t n) except -1:
    """The pairs of a json or xml event as new references in kv (their number in m); False: the twin's decode."""
    cdef esl_ent *e
    cdef Py_ssize_t i, cl
    cdef list run = None
    cdef esl_line *slot
    cdef uint64_t h
    body = None
    i = 0
    if ev._fmt == FMT_JSON:
        while i < n:
            e = &ents[i]
            is_body = e.ke - e.ks == 5 and memcmp(base + e.ks, b"_body", 5) == 0
            if e.kind == 0 and not is_body and e.ve - e.ks + 2 <= LINE_MAX:
                # "Name":"value" as it stands: the pair cache (names and values repeat)
                slot = _pair_slot(base + e.ks - 1, e.ve - e.ks + 2, 16, &h)
                if not _pair_hit(slot, base + e.ks - 1, e.ve - e.ks + 2, 16, h):
                    _pair_store(slot, base + e.ks - 1, e.ve - e.ks + 2, 16, h,
                                _name_str(base + e.ks, e.ke - e.ks), _json_str(base, e))
                _kv_put(kv, m, <object>slot.name, <object>slot.value)
                i += 1
                continue
            if e.kind != 0 and is_body:
                return False  # the twin says what is wrong with it
            value = _doc_value(FMT_JSON, base, ents, n, i)
            i += 1 if e.kind == 0 else 1 + e.vs
            if is_body:
                body = value
                continue
            _kv_put(kv, m, _name_str(base + e.ks, e.ke - e.ks), value)
        if body is not None:
            for cl in range(m[0] - 1, -1, -1):  # the last Content-Length is the body's: not a header
                if <object>kv[2 * cl] == _CONTENT_LENGTH:
                    Py_DECREF(<object>kv[2 * cl])
                    Py_DECREF(<object>kv[2 * cl + 1])
                    memmove(&kv[2 * cl], &kv[2 * cl + 2], 2 * (m[0] - cl - 1) * sizeof(PyObject *))
                    m[0] -= 1
                    break
            body = body or None
    else:
        for i in range(n):
            e = &ents[i]
            slot = NULL
            if e.ve - e.ks + 1 <= LINE_MAX:
                # <Name>value as it stands: the pair cache
                slot = _pair_slot(base + e.ks, e.ve - e.ks, 32, &h)
                if not _pair_hit(slot, base + e.ks, e.ve - e.ks, 32, h):
                    _pair_store(slot, base + e.ks, e.ve - e.ks, 32, h,
                                _name_str(base + e.ks, e.ke - e.ks), _xml_str(base, e))
                value = <object>slot.value
            else:
                value = _xml_str(base, e)
            if i > 0 and _same_name(base, e, &ents[i - 1]):
                if run is None:
                    run = [first_item]
                run.append(value)  # an array: one element per item
                joined = "ARRAY::" + "|:".join(run)
                Py_DECREF(<object>kv[2 * m[0] - 1])
                Py_INCREF(joined)
                kv[2 * m[0] - 1] = <PyObject *>joined
            else:
                run = None
                first_item = value
                _kv_put(kv, m, <object>slot.name if slot != NULL else _name_str(base + e.ks, e.ke - e.ks), value)
        base = PyBytes_AS_STRING(ev._buf)
        if _has_lit(base + ev._ihead, ev._end - ev._ihead, b"<body>", 6):
            body = _xml_body(_to_str(base + ev._ihead, ev._end - ev._ihead))
    ev._body = body
    return True


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
        # The twin's constructor: raw is outer + b"\n\n" (or b"\n\r\n") + (inner or b"").
        cdef Py_ssize_t tlen = len(raw) - len(outer) - (len(inner) if inner is not None else 0)
        if (tlen not in (2, 3) or not raw.startswith(outer)
                or raw[len(outer):len(outer) + tlen] != (b"\n\n" if tlen == 2 else b"\n\r\n")):
            raise ValueError("raw must be outer + b'\\n\\n' + inner")
        _init(self, raw, 0, len(outer), len(outer) + tlen, len(raw), inner is not None, content_type)

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
        """Locate the routing keys and channel fields (and, for plain, the end of the inner header block) in one pass.

        A key is the value of the first header whose name is exactly the key
        (the last one for Event-Name), else of the first one whose name
        matches it case-insensitively: the same answer as ``event.get(key)``.
        The json and xml scans give up (no ``KEYS_SCANNED``) or mark a key -2
        where only the full decode can answer as the twin does.
        """
        cdef esl_keys k
        cdef int w
        cdef const char *base = PyBytes_AS_STRING(self._buf)
        if self._end >= 0x7FFFFFFF:
            return  # past 32-bit offsets: the keys come from the full decode
        if self._fmt == FMT_PLAIN:
            esl_scan_plain(base, self._bs, self._end, &k)
            self._ihead = k.ihead
        elif _scan_doc(self, &k) < 0:
            return
        self._have |= KEYS_SCANNED
        for w in range(NKEYS):
            self._ks[w] = k.s[w]
            self._ke[w] = k.e[w]

    cdef object _field(self, int which):
        """Located key ``which`` decoded from its offsets (not cached; short values come from the value cache)."""
        cdef Py_ssize_t s, e
        cdef const char *base
        if self._have & KEYS_SCANNED:
            s = self._ks[which]
            if s == -1:
                return None
            if s >= 0:
                e = self._ke[which]
                base = PyBytes_AS_STRING(self._buf)
                # json values are not percent-encoded: the raw bytes as they are
                if self._fmt == FMT_JSON and memchr(base + s, 37, e - s) != NULL:
                    return _to_str(base + s, e - s)
                return _value_str(base + s, e - s)  # UUIDs and states repeat: shared strings
        return self.get(<str>_KEY_NAMES[which])

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
        if which == K_SEQ:
            s = self._ks[K_SEQ] if self._have & KEYS_SCANNED else -2
            if s == -1:
                value = None
            elif s >= 0:
                e = self._ke[K_SEQ]
                base = PyBytes_AS_STRING(self._buf)
                if self._fmt == FMT_JSON or memchr(base + s, 37, e - s) == NULL:
                    value = _int_or_none(base + s, e - s)
                else:
                    value = _int_text(_decode_value(base + s, e - s))
            else:
                value = _int_text(self.get("Event-Sequence"))
        else:
            value = self._field(which)
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
            if self._ks[K_NAME] == -1:
                return False
            if self._ks[K_NAME] >= 0:
                raw = PyBytes_AS_STRING(self._buf) + self._ks[K_NAME]
                k = self._ke[K_NAME] - self._ks[K_NAME]
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

    # -- channel fields (located with the routing keys) ----------------------

    @property
    def channel_state(self):
        """``Channel-State`` (``CS_EXECUTE``...)."""
        return self._field(6)

    @property
    def channel_state_number(self):
        """``Channel-State-Number`` as an int; ``None`` when absent or not a number."""
        return _int_text(self._field(7))

    @property
    def call_state(self):
        """``Channel-Call-State`` (``ACTIVE``, ``HELD``...)."""
        return self._field(8)

    @property
    def answer_state(self):
        """``Answer-State`` (``ringing``, ``early``, ``answered``, ``hangup``)."""
        return self._field(9)

    @property
    def hangup_cause(self):
        """``Hangup-Cause`` (``NORMAL_CLEARING``...)."""
        return self._field(10)

    @property
    def other_leg_uuid(self):
        """``Other-Leg-Unique-ID``: the bridged peer."""
        return self._field(11)

    @property
    def dtmf_digit(self):
        """``DTMF-Digit`` of a DTMF event."""
        return self._field(12)

    @property
    def application(self):
        """``Application`` of CHANNEL_EXECUTE(_COMPLETE)."""
        return self._field(13)

    @property
    def application_response(self):
        """``Application-Response`` of CHANNEL_EXECUTE_COMPLETE."""
        return self._field(14)

    @property
    def application_data(self):
        """``Application-Data`` of CHANNEL_EXECUTE(_COMPLETE)."""
        return self._field(15)

    # -- headers ------------------------------------------------------------

    cdef int _plain_head(self, Py_ssize_t *hs, Py_ssize_t *he) except -1:
        """The header block to decode for plain events and other messages; 1 if a body follows."""
        if self._fmt == FMT_NONE:
            hs[0], he[0] = self._start, self._hend
            return self._has_inner and self._end > self._bs
        hs[0] = self._bs
        he[0] = self._ihead if self._ihead >= 0 else self._end
        return self._ihead >= 0 and self._end > self._ihead + 2

    cdef bint _uses_pairs(self) noexcept:
        """Whether the headers are read from plain header lines (plain events, replies)."""
        return self._fmt == FMT_NONE or (self._fmt == FMT_PLAIN and self._has_inner)

    cdef int _load_pairs(self) except -1:
        """Decode every header line into ``_kv`` (see "decoded headers" above), once."""
        cdef Py_ssize_t hs = 0, he = 0, n = 0
        cdef uint64_t shape = 0
        if self._kv != NULL:
            return 0
        body = self._plain_head(&hs, &he)
        self._kv = _gather(PyBytes_AS_STRING(self._buf), hs, he, body and self._fmt == FMT_PLAIN, &n, &shape)
        self._nkv = n
        self._nuniq = _shape_count(self, self._kv, n, shape)
        return 0

    def __dealloc__(self):
        global _scratch_owner
        _unlend(self)
        if self._kv != NULL:
            _release(self._kv, self._nkv)
            self._kv = NULL
        if _scratch_owner == <PyObject *>self:
            _scratch_owner = NULL
        _block_release(self)


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
            decoded = _fast_decode(self)
            if decoded is not None:
                flat = <list>decoded
            else:
                pairs, self._body = _parse_event(self._inner(), _FMT_NAMES[self._fmt])
                for k, v in pairs:
                    flat.append(k)
                    flat.append(v)
            self._have |= 1u << K_BODY
            if not _pairs_busy:
                _block_release(self)  # the mapping answers from now on
        PyObject_GC_UnTrack(flat)
        self._flat = flat
        return flat

    cdef bytes _inner(self):
        if not self._has_inner:
            return b""
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self._buf) + self._bs, self._end - self._bs)

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

    cdef object _lookup(self, str name):
        """``self[name]`` found on the bytes, without decoding the other headers: one value decoded, cached.

        ``_ABSENT`` when there is no such header; ``_SLOW`` when only the full
        decode can answer as the twin does (a non-ASCII name asked for
        case-insensitively, a Kelvin sign that lowercases to ``k``, the json
        ``_body`` and the ``Content-Length`` beside it...).
        """
        cdef list seen = self._seen
        cdef Py_ssize_t i
        cdef int which
        if seen is not None:
            for i in range(0, len(seen), 2):
                if seen[i] is name or seen[i] == name:
                    return seen[i + 1]
        w = _KEY_INDEX.get(name)
        if w is not None and (self._have & KEYS_SCANNED) and self._ks[<int>w] != -2:
            which = <int>w
            if self._ks[which] == -1:
                return _ABSENT
            value = self._field(which)
        else:
            value = self._find_line(name) if self._uses_pairs() else self._find_pair(name)
            if value is _ABSENT or value is _SLOW:
                return value
        if seen is None:
            self._seen = [name, value]
        else:
            seen.append(name)
            seen.append(value)
        return value

    cdef object _find_line(self, str name):
        """``_lookup`` in a plain header block (``esl_find_header``)."""
        cdef Py_ssize_t hs = 0, he = 0, klen, ls = 0, le = 0, vs
        cdef const char *key
        cdef const char *base
        cdef int r
        cdef bint ascii
        ascii = PyUnicode_IS_ASCII(name)
        if ascii:
            key = <const char *>PyUnicode_DATA(name)
            klen = PyUnicode_GET_LENGTH(name)
        else:
            try:
                kb = name.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                return _SLOW
            key = PyBytes_AS_STRING(kb)
            klen = PyBytes_GET_SIZE(kb)
        if klen == 0 or memchr(key, 58, klen) != NULL:
            return _SLOW  # a name is never empty and never holds ':'; let the mapping say so
        body = self._plain_head(&hs, &he)
        if body and self._fmt == FMT_PLAIN and klen == 14 and strncasecmp(key, b"content-length", 14) == 0:
            return _SLOW  # the Content-Length line that frames the body is not a header
        base = PyBytes_AS_STRING(self._buf)
        r = esl_find_header(base, hs, he, key, klen, klen == 10 and memcmp(key, b"Event-Name", 10) == 0,
                            &ls, &le)
        if r != 1:  # no exact name: the case-insensitive answer, where bytes can give it
            if not ascii:
                return _SLOW
            if (memchr(key, 107, klen) != NULL or memchr(key, 75, klen) != NULL) and esl_has_kelvin(
                    base, hs, ls if r == 2 else he):
                return _SLOW  # a Kelvin sign in a name lowercases to 'k'
            if r == 0:
                return _ABSENT
            if le - ls > 10 and memcmp(base + ls, b"Event-Name:", 11) == 0:
                esl_find_header(base, hs, he, b"Event-Name", 10, True, &ls, &le)
        vs = ls + klen + 1
        while vs < le and base[vs] == 32:
            vs += 1
        if le > vs and base[le - 1] == 13:
            le -= 1
        value = _value_str(base + vs, le - vs)
        return value

    cdef object _find_pair(self, str name):
        """``_lookup`` among the pairs of a json or xml event (recorded by its key scan)."""
        global _pairs_busy
        cdef esl_ent *ents = NULL
        cdef esl_ent *e
        cdef const char *key
        cdef const char *base = NULL
        cdef Py_ssize_t i, j, n = 0, klen, found = -1, ci = -1
        cdef bint last, was_busy, xml = self._fmt == FMT_XML
        cdef bytes buf
        if not PyUnicode_IS_ASCII(name):
            return _SLOW
        key = <const char *>PyUnicode_DATA(name)
        klen = PyUnicode_GET_LENGTH(name)
        if klen == 0 or memchr(key, 58, klen) != NULL:
            return _SLOW
        if not xml and ((klen == 14 and strncasecmp(key, b"content-length", 14) == 0)
                        or (klen == 5 and strncasecmp(key, b"_body", 5) == 0)):
            return _SLOW
        buf = self._buf  # the frame the offsets point into stays alive, whatever runs meanwhile
        if not _doc_pairs(self, &ents, &n, &base):
            return _SLOW
        last = klen == 10 and memcmp(key, b"Event-Name", 10) == 0
        for i in range(n):
            e = &ents[i]
            if e.kind == 2 or e.ke - e.ks != klen:
                continue
            if memcmp(base + e.ks, key, klen) == 0:
                if found < 0 or not (xml and _same_name(base, e, &ents[i - 1])):
                    found = i  # for Event-Name: the start of the last one
                if not last:
                    break
            elif ci < 0 and strncasecmp(base + e.ks, key, klen) == 0:
                ci = i
        if found < 0:
            if not xml and _json_names_hi(base, ents, n):
                return _SLOW  # a name str.lower() may turn into this one (a Kelvin sign...)
            if ci < 0:
                return _ABSENT
            found = ci
            e = &ents[ci]
            if klen == 10 and memcmp(base + e.ks, b"Event-Name", 10) == 0:
                for j in range(ci + 1, n):  # the last Event-Name, as libesl
                    if (ents[j].kind != 2 and ents[j].ke - ents[j].ks == 10
                            and memcmp(base + ents[j].ks, b"Event-Name", 10) == 0
                            and not (xml and _same_name(base, &ents[j], &ents[j - 1]))):
                        found = j
        was_busy = _pairs_busy
        _pairs_busy = True
        try:
            value = _doc_value(self._fmt, base, ents, n, found)
        finally:
            _pairs_busy = was_busy
        return value

    def __getitem__(self, name):
        cdef dict first
        cdef dict lower
        cdef Py_ssize_t i
        if self._first is not None:
            value = self._first.get(name, _ABSENT)
            if value is not _ABSENT:
                return value
        elif type(name) is str and self._uses_pairs() and self._kv != NULL:
            i = _find(self._kv, self._nkv, <str>name)
            if i >= 0:
                return <object>self._kv[2 * i + 1]
        elif type(name) is str and (self._uses_pairs() or (self._flat is None and self._fmt >= FMT_JSON)):
            # one header found on the bytes, without decoding the others
            value = self._lookup(<str>name)
            if value is _ABSENT:
                raise KeyError(name)
            if value is not _SLOW:
                return value
            value = self._first_map().get(name, _ABSENT)
            if value is not _ABSENT:
                return value
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
        cdef list flat
        cdef Py_ssize_t i, n
        cdef uint64_t h = SHAPE_SEED
        cdef PyObject **kv
        if self._uses_pairs():
            self._load_pairs()
            return self._nuniq
        if self._first is not None:
            return len(self._first)
        if self._nuniq < 0:
            # json and xml: the distinct names counted once per shape, as for plain events
            flat = self._decode()
            n = len(flat) // 2
            kv = PySequence_Fast_ITEMS(flat)
            for i in range(n):
                h = _shape_step(h, kv[2 * i])
            self._nuniq = _shape_count(self, kv, n, h ^ <uint64_t>n)
        return self._nuniq

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
                bs = self._bs
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


cdef inline int _init(Event ev, bytes buf, Py_ssize_t start, Py_ssize_t hend, Py_ssize_t bs, Py_ssize_t end,
                      bint has_inner, str content_type) except -1:
    global _scratch_owner
    ev._buf = buf
    ev._start = start
    ev._hend = hend
    ev._bs = bs
    ev._end = end
    ev._has_inner = has_inner
    ev.content_type = content_type
    ev._ihead = -1
    ev._have = 0
    if ev._kv != NULL:  # __init__ called again
        _release(ev._kv, ev._nkv)
    ev._kv = NULL
    ev._nkv = 0
    ev._seen = None
    if _scratch_owner == <PyObject *>ev:  # __init__ called again
        _scratch_owner = NULL
    _block_release(ev)
    _unlend(ev)
    ev._nuniq = -1
    ev._flat = None
    ev._first = ev._lower = None
    fmt = _FORMATS.get(content_type)
    ev._fmt = FMT_NONE if fmt is None else <int>fmt
    if ev._fmt != FMT_NONE and has_inner:
        ev._scan_keys()
    return 0


cdef Lend *lend_new() except NULL:
    """A new record for a parser (one reference: the parser's)."""
    cdef Lend *rec = <Lend *>PyMem_Malloc(sizeof(Lend))
    if rec == NULL:
        raise MemoryError()
    rec.refs = 1
    rec.n = rec.cap = 0
    rec.slots = NULL
    return rec


cdef int lend_add(Lend *rec, Event ev) except -1:
    """Note ``ev`` (framed in place) in the record."""
    cdef PyObject **grown
    if rec.n == rec.cap:
        grown = <PyObject **>PyMem_Realloc(rec.slots, (2 * rec.cap + 64) * sizeof(PyObject *))
        if grown == NULL:
            raise MemoryError()
        rec.slots = grown
        rec.cap = 2 * rec.cap + 64
    rec.slots[rec.n] = <PyObject *>ev
    ev._lend = rec
    ev._lend_i = rec.n
    rec.n += 1
    rec.refs += 1
    return 0


cdef int lend_settle(Lend *rec) except -1:
    """Give every event still in the record its own frame; empty the record."""
    cdef Py_ssize_t i
    cdef PyObject *p
    for i in range(rec.n):
        p = rec.slots[i]
        if p != NULL:
            own_frame(<Event>p)
    rec.n = 0
    return 0


cdef void lend_release(Lend *rec) noexcept:
    rec.refs -= 1
    if rec.refs == 0:
        PyMem_Free(rec.slots)
        PyMem_Free(rec)


cdef inline void _unlend(Event ev) noexcept:
    if ev._lend != NULL:
        ev._lend.slots[ev._lend_i] = NULL
        lend_release(ev._lend)
        ev._lend = NULL


cdef int own_frame(Event ev) except -1:
    """Move the event onto a copy of its own frame (it pointed into a larger chunk)."""
    cdef Py_ssize_t d = ev._start, w
    cdef bytes frame
    _unlend(ev)
    if d == 0 and ev._end == PyBytes_GET_SIZE(ev._buf):
        return 0
    if ev._raw is not None:
        frame = ev._raw
    else:
        frame = PyBytes_FromStringAndSize(PyBytes_AS_STRING(ev._buf) + d, ev._end - d)
    ev._buf = frame
    ev._start = 0
    if not _pairs_busy:  # kept past its chunk: its pairs are scanned again when asked
        _block_release(ev)
    ev._hend -= d
    ev._bs -= d
    ev._end -= d
    if ev._ihead >= 0:
        ev._ihead -= d
    if ev._have & KEYS_SCANNED:
        for w in range(NKEYS):
            if ev._ks[w] >= 0:
                ev._ks[w] -= d
                ev._ke[w] -= d
    return 0


cdef Event make_event(bytes buf, Py_ssize_t start, Py_ssize_t hend, Py_ssize_t bs, Py_ssize_t end,
                      bint has_inner, str content_type):
    """An Event over buf[start:end]: outer headers end at ``hend``, the body starts at ``bs``."""
    cdef Event ev = Event.__new__(Event)
    _init(ev, buf, start, hend, bs, end, has_inner, content_type)
    return ev



DEF TALLY_SLOTS = 512     # power of two; event names are a few dozen
DEF TALLY_NAME = 48       # longer names (rare CUSTOM subclasses) go through the dict


cdef struct TallySlot:
    Py_ssize_t len          # 0: empty
    long long count
    char name[TALLY_NAME]


cdef class Tally:
    """A connection's per-event counters, kept in C: events by name, and Event-Sequence in order.

    ``count(event)`` counts the event under its name (at most ``max_names``
    names, the rest under ``"other"``; ``counts()`` gives them as a dict) and,
    while ``track`` is on, follows ``Event-Sequence``: a number equal to
    ``next`` just moves it on; a jump ahead is recorded in ``gaps`` as
    ``(next, seq)`` (``(-1, seq)`` when ``next`` is below 0: a start); a
    number below ``next`` in ``fills``. It returns True once those lists hold
    ``limit`` entries, for the connection to hand them to its
    :class:`esl.sequence.SequenceTracker`. For plain and json events the name
    and the number are read from the key scan's offsets: no Python object is
    made for them.
    """

    cdef TallySlot slots[TALLY_SLOTS]
    cdef Py_ssize_t used
    cdef dict _names
    cdef public list gaps
    cdef public list fills
    cdef public long long next
    cdef public bint track
    cdef public Py_ssize_t max_names
    cdef public Py_ssize_t limit

    def __init__(self, Py_ssize_t max_names=256, Py_ssize_t limit=4096):
        memset(self.slots, 0, sizeof(self.slots))
        self.used = 0
        self._names = {}
        self.gaps = []
        self.fills = []
        self.next = -1
        self.track = False
        self.max_names = max_names
        self.limit = limit

    cdef bint _count_raw(self, const char *p, Py_ssize_t n) noexcept:
        """Count the name p[0:n] in the C table; False when it has no room for it."""
        cdef uint64_t h = 1469598103934665603ULL
        cdef Py_ssize_t i, probe
        cdef TallySlot *slot
        if n <= 0 or n > TALLY_NAME:
            return False
        for i in range(n):
            h = (h ^ <unsigned char>p[i]) * 1099511628211ULL
        for probe in range(TALLY_SLOTS):
            slot = &self.slots[(h + probe) & (TALLY_SLOTS - 1)]
            if slot.len == n and memcmp(slot.name, p, n) == 0:
                slot.count += 1
                return True
            if slot.len == 0:
                if self.used + len(self._names) >= self.max_names or self.used >= TALLY_SLOTS // 2:
                    return False
                slot.len = n
                memcpy(slot.name, p, n)
                slot.count = 1
                self.used += 1
                return True
        return False

    cdef void _count_obj(self, object name) noexcept:
        cdef dict names = self._names
        n = names.get(name)
        if n is not None:
            names[name] = <long long>n + 1
        elif self.used + len(names) < self.max_names:
            names[name] = 1
        else:
            names["other"] = names.get("other", 0) + 1

    def count(self, Event event):
        """Count one event; True when ``gaps``/``fills`` are due to be taken."""
        cdef Py_ssize_t s, e, i
        cdef const char *base = NULL
        cdef long long v
        cdef bint fast = (event._have & KEYS_SCANNED) and (event._fmt == FMT_PLAIN or event._fmt == FMT_JSON)
        if fast:
            base = PyBytes_AS_STRING(event._buf)
            s = event._ks[K_NAME]
            e = event._ke[K_NAME]
            if s < 0 or memchr(base + s, 37 if event._fmt == FMT_PLAIN else 92, e - s) != NULL \
                    or not self._count_raw(base + s, e - s):
                self._count_obj(event._key(K_NAME))
        else:
            self._count_obj(event._key(K_NAME))
        if not self.track:
            return False
        v = -1
        if fast:
            s = event._ks[K_SEQ]
            if s >= 0:
                e = event._ke[K_SEQ]
                if 0 < e - s <= 18:
                    v = 0
                    for i in range(s, e):
                        if not (48 <= <unsigned char>base[i] <= 57):
                            v = -1
                            break
                        v = v * 10 + (base[i] - 48)
            elif s == -1:
                return False
        if v < 0:
            seq = event._key(K_SEQ)
            if seq is None:
                return False
            v = <long long>seq
        if v == self.next:
            self.next = v + 1
            return False
        if self.next < 0:
            self.gaps.append((-1, v))
            self.next = v + 1
        elif v > self.next:
            self.gaps.append((self.next, v))
            self.next = v + 1
        else:
            self.fills.append(v)
        return len(self.gaps) + len(self.fills) >= self.limit

    def counts(self):
        """Events by name so far (``None``: messages without a name; ``"other"``: past ``max_names``)."""
        cdef dict out = dict(self._names)
        cdef Py_ssize_t i
        cdef TallySlot *slot
        for i in range(TALLY_SLOTS):
            slot = &self.slots[i]
            if slot.len:
                name = PyUnicode_DecodeUTF8(slot.name, slot.len, "surrogateescape")
                out[name] = out.get(name, 0) + slot.count
        return out

    def total(self):
        """Events counted."""
        cdef long long n = 0
        cdef Py_ssize_t i
        for i in range(TALLY_SLOTS):
            n += self.slots[i].count
        for v in self._names.values():
            n += <long long>v
        return n
