# The compiled Event: what parser.pyx and router.pyx may touch directly.

from cpython.ref cimport PyObject
from libc.stdint cimport int32_t

cdef enum Fmt:
    FMT_NONE = 0
    FMT_PLAIN = 1
    FMT_JSON = 2
    FMT_XML = 3


# The events a parser framed in place from its last chunk: borrowed pointers,
# cleared by an event when it goes away, so the parser can give the survivors
# their own frame at the next feed (see parser.pyx).
cdef struct Lend:
    Py_ssize_t refs             # the parser's reference plus one per event in slots
    Py_ssize_t n, cap
    PyObject **slots

cdef class Event:
    cdef readonly str content_type
    cdef bytes _buf             # the frame's own bytes (copied out of the socket read)
    cdef Py_ssize_t _start      # frame start in _buf
    cdef Py_ssize_t _hend       # end of the outer header block (before its terminator)
    cdef Py_ssize_t _bs         # body start (after "\n\n" or "\n\r\n")
    cdef Py_ssize_t _end        # frame end; the body is [_bs, _end) when _has_inner
    cdef bint _has_inner
    cdef int _fmt
    cdef Py_ssize_t _ihead      # end of the inner header block (first "\n\n"), -1 if none
    # located keys (routing keys and channel fields): absolute [start, end) in _buf,
    # start -1 when absent, -2 when only the full decode knows (json/xml); valid when
    # _have has the bit KEYS_SCANNED
    cdef int32_t _ks[16]     # 32-bit: keys are scanned only in frames under 2 GiB
    cdef int32_t _ke[16]
    cdef unsigned int _have     # which cached values below are computed, and KEYS_SCANNED
    cdef object _name, _uuid, _job, _app, _sub, _seq, _raw
    cdef PyObject **_kv         # decoded headers: name, value, name, value... (owned), or NULL
    cdef Py_ssize_t _nkv        # number of pairs in _kv
    cdef Py_ssize_t _nuniq      # number of distinct names (len of the mapping)
    cdef list _seen             # values looked up without a full decode: name, value, name, value...
    cdef Lend *_lend            # the parser's record while the frame lies in its last chunk, else NULL
    cdef Py_ssize_t _lend_i     # this event's slot there
    cdef list _flat             # _kv as a list, for getall / items_all
    cdef dict _first
    cdef dict _lower
    cdef object _body
    cdef void *_ents            # json/xml: where its pairs lie (a block, while in the parser's chunk), or NULL
    cdef Py_ssize_t _nents
    cdef Py_ssize_t _ents_bs    # the body start their offsets were taken at

    cdef void _scan_keys(self) noexcept
    cdef object _key(self, int which)
    cdef object _field(self, int which)
    cdef int _plain_head(self, Py_ssize_t *hs, Py_ssize_t *he) except -1
    cdef bint _uses_pairs(self) noexcept
    cdef int _load_pairs(self) except -1
    cdef object _lookup(self, str name)
    cdef object _find_line(self, str name)
    cdef object _find_pair(self, str name)
    cdef list _decode(self)
    cdef bytes _inner(self)
    cdef dict _first_map(self)
    cdef bint _name_is(self, const char *lit, Py_ssize_t n) except -1

cdef int own_frame(Event ev) except -1
cdef Lend *lend_new() except NULL
cdef int lend_add(Lend *rec, Event ev) except -1
cdef int lend_settle(Lend *rec) except -1
cdef void lend_release(Lend *rec) noexcept

cdef Event make_event(bytes buf, Py_ssize_t start, Py_ssize_t hend, Py_ssize_t bs, Py_ssize_t end,
                      bint has_inner, str content_type)
