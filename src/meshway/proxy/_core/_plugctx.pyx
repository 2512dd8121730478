# cython: language_level=3, boundscheck=False, wraparound=False
"""Steps of the plugin Context (`proxy/_context.py`) in C, for what plugins do on every request.

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

__all__ = ["first_pairs"]

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
