from esl._core.event cimport Event

cdef class Router:
    cdef dict _routes            # key -> deliver callable
    cdef dict _targets           # key -> the target as given
    cdef object _default
    cdef object _default_call
    cdef public Py_ssize_t matched
    cdef public Py_ssize_t unmatched

    cdef object _event_key(self, object event)
    cdef object _rekey(self, object event, object key)
    cdef bint _route(self, object event) except -1
