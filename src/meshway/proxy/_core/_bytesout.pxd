# The byte writers of the compiled core's encoders (`_h1parse`: heads; `_fmt`: the access
# line), one source for both: each writes into a buffer the caller sized and returns the new end.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy


cdef inline Py_ssize_t _put(char* out, Py_ssize_t at, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(out + at, PyBytes_AS_STRING(b), n)
    return at + n


cdef inline Py_ssize_t _lit(char* out, Py_ssize_t at, const char* s, Py_ssize_t n) noexcept:
    memcpy(out + at, s, n)
    return at + n


cdef inline Py_ssize_t _dec(char* out, Py_ssize_t at, long long v) noexcept:
    """`b"%d" % v` (at most 20 bytes)."""
    cdef char tmp[24]
    cdef int n = 0
    cdef unsigned long long u
    if v < 0:
        out[at] = 45  # '-'
        at += 1
        u = <unsigned long long>(-(v + 1)) + 1
    else:
        u = <unsigned long long>v
    while True:
        tmp[n] = 48 + <char>(u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    while n:
        n -= 1
        out[at] = tmp[n]
        at += 1
    return at
