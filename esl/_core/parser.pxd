from esl._core.event cimport Lend

cdef class Parser:
    cdef public Py_ssize_t max_size
    cdef bytearray _pend        # the start of a message not yet complete
    cdef bint _in_body          # _pend holds a whole header block; waiting for the body
    cdef Py_ssize_t _hlen       # length of that header block
    cdef Py_ssize_t _tlen       # length of its terminator (2 for \n\n, 3 for \n\r\n)
    cdef Py_ssize_t _need       # its Content-Length
    cdef str _ctype
    cdef object _error
    cdef Lend *_lend            # events framed in place from the last chunk (see _settle)

    cdef Py_ssize_t _fields(self, const char *p, Py_ssize_t s, Py_ssize_t e) except -2
    cdef int _settle(self) except -1
    cdef int _check_pending(self, const char *p, Py_ssize_t n) except -1
    cdef Py_ssize_t _resume(self, bytes data, list out) except -2
    cdef int _run(self, bytes data, Py_ssize_t pos, list out) except -1
