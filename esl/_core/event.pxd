# The compiled Event: what parser.pyx and router.pyx may touch directly.

from cpython.ref cimport PyObject

cdef enum Fmt:
    FMT_NONE = 0
    FMT_PLAIN = 1
    FMT_JSON = 2
    FMT_XML = 3

cdef class Event:
    cdef readonly str content_type
    cdef bytes _buf             # the bytes the frame lies in (a fed chunk or a copy)
    cdef Py_ssize_t _start      # frame start in _buf
    cdef Py_ssize_t _hend       # end of the outer header block (before "\n\n")
    cdef Py_ssize_t _end        # frame end; the body is [_hend + 2, _end) when _has_inner
    cdef bint _has_inner
    cdef int _fmt
    # routing keys: absolute [start, end) in _buf, start -1 when absent, -2 when only
    # the full decode knows (json/xml); valid when _have has the bit KEYS_SCANNED
    cdef Py_ssize_t _ihead      # end of the inner header block (first "\n\n"), -1 if none
    cdef Py_ssize_t _name_s, _name_e, _uuid_s, _uuid_e, _job_s, _job_e
    cdef Py_ssize_t _app_s, _app_e, _sub_s, _sub_e, _seq_s, _seq_e
    cdef unsigned int _have     # which cached values below are computed, and KEYS_SCANNED
    cdef object _name, _uuid, _job, _app, _sub, _seq, _raw
    cdef PyObject **_kv         # decoded headers: name, value, name, value... (owned), or NULL
    cdef Py_ssize_t _nkv        # number of pairs in _kv
    cdef Py_ssize_t _nuniq      # number of distinct names (len of the mapping)
    cdef list _flat             # _kv as a list, for getall / items_all
    cdef dict _first
    cdef dict _lower
    cdef object _body

    cdef void _scan_keys(self) noexcept
    cdef object _key(self, int which)
    cdef int _plain_head(self, Py_ssize_t *hs, Py_ssize_t *he) except -1
    cdef bint _uses_pairs(self) noexcept
    cdef int _load_pairs(self) except -1
    cdef list _decode(self)
    cdef bytes _inner(self)
    cdef dict _first_map(self)
    cdef bint _name_is(self, const char *lit, Py_ssize_t n) except -1

cdef Event make_event(bytes buf, Py_ssize_t start, Py_ssize_t hend, Py_ssize_t end,
                      bint has_inner, str content_type)
