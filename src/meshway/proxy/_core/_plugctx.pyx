# cython: language_level=3, boundscheck=False, wraparound=False
"""Steps of the plugin Context (`proxy/_context.py`) in C, for what plugins do on every request.

`may_name_identity` is the check `Context.authenticate` makes before it strips client-sent
identity headers (`_context._without_identity`, which stays the one filter): True when a
request header's name is one of them in any case (or is not bytes).

`first_pairs` is `Context.set_response_headers` on a Context whose response headers are still
empty (rate-limiting's five headers in its access phase): the same pairs as the Python loop,
without its per-pair search of what it appended. It returns None, having changed nothing, for
anything unusual (a name not yet encoded, a value that is not printable ASCII text, a name given
twice): the general path (`_h1parse.set_header_pairs`, or the Python loop on the pure path)
then does it, so every rule has one implementation. tests/unit/proxy/test_plugctx.py compares
it with the Python loop on random pairs.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL

__all__ = ["first_pairs", "may_name_identity"]

DEF _MAX = 16  # pairs taken here; more go to the general path


cpdef object first_pairs(list pairs, dict names):
    """The response headers for `pairs` ((str name, str value), in order) set on an empty list:
    (raw name, value bytes) each, names from the `names` cache (str -> (raw, lowercased));
    None for the general path (see the module's docstring)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(pairs), i, j, size, k
    cdef PyObject* found
    cdef PyObject* lows[_MAX]
    cdef const unsigned char* s
    cdef list out = []
    if n > _MAX:
        return None
    for i in range(n):
        pair = <object>PyList_GET_ITEM(pairs, i)
        if type(pair) is not tuple or PyTuple_GET_SIZE(pair) != 2:
            return None
        name = <object>PyTuple_GET_ITEM(pair, 0)
        value = <object>PyTuple_GET_ITEM(pair, 1)
        if type(name) is not str or type(value) is not str or not PyUnicode_IS_ASCII(value):
            return None
        found = PyDict_GetItem(names, name)
        if found is NULL:
            return None
        low = (<tuple>found)[1]
        for j in range(i):
            if <object>lows[j] == low:  # the same name twice: the general path replaces the first
                return None
        lows[i] = <PyObject*>low  # kept alive by `names`
        s = <const unsigned char*>PyUnicode_AsUTF8AndSize(value, &size)  # an ASCII str's own buffer
        for k in range(size):
            if s[k] < 0x20 or s[k] > 0x7e:
                return None
        out.append(((<tuple>found)[0], PyBytes_FromStringAndSize(<const char*>s, size)))
    return out


cdef inline bint _is(const unsigned char* s, const char* want, Py_ssize_t n) noexcept:
    """`s` (n bytes) lowercased is `want` (lowercase ASCII, n bytes)."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = s[i]
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned char>want[i]:
            return False
    return True


cpdef bint may_name_identity(list headers):
    """Whether a (name, value) pair of `headers` is named X-Consumer-ID, X-Consumer-Custom-ID,
    X-Consumer-Username, X-Credential-Identifier or X-Anonymous-Consumer (any case)."""
    cdef Py_ssize_t i, n
    cdef const unsigned char* s
    for i in range(PyList_GET_SIZE(headers)):
        pair = <object>PyList_GET_ITEM(headers, i)
        if type(pair) is not tuple or PyTuple_GET_SIZE(pair) < 1:
            return True
        name = <object>PyTuple_GET_ITEM(pair, 0)
        if type(name) is not bytes:
            return True
        n = len(<bytes>name)
        s = <const unsigned char*>(<char*>(<bytes>name))
        if n == 13:
            if _is(s, b"x-consumer-id", 13):
                return True
        elif n == 19:
            if _is(s, b"x-consumer-username", 19):
                return True
        elif n == 20:
            if _is(s, b"x-consumer-custom-id", 20) or _is(s, b"x-anonymous-consumer", 20):
                return True
        elif n == 23:
            if _is(s, b"x-credential-identifier", 23):
                return True
    return False
