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

`ContextMaker(cls, args, constants, fresh).new(...)` makes a `Context` (a class with `__slots__`)
without running its Python `__init__`: the positional arguments go to the slots `args` names, in
order; every other slot gets its value from `constants` or, for the names in `fresh`, a new
empty list. `_context` builds the maker from a Context made by `__init__` itself (its defaults
are the constants), so `__init__` stays the one definition of a new Context; the maker refuses a
class whose slots it would not all fill. tests/unit/proxy/test_plugctx.py compares both.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    int T_OBJECT_EX
    int READONLY
    object PyType_GenericAlloc(type t, Py_ssize_t n)
    PyObject* PyList_New(Py_ssize_t n) except NULL

__all__ = ["ContextMaker", "first_pairs", "may_name_identity"]

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


DEF _ARGS = 12  # Context(request_id, client_ip, method, scheme, host, path, query, headers, route, service,
                #         captures, started_at)
DEF _SLOTS = 64


cdef Py_ssize_t _slot_offset(type cls, str name) except -1:
    """Where slot `name` of `cls` lives in its instances (its member descriptor's offset)."""
    descr = cls.__dict__.get(name)
    if type(descr).__name__ != "member_descriptor" or getattr(descr, "__objclass__", None) is not cls:
        raise TypeError(f"{cls.__name__}.{name} is not a slot of that class")
    cdef PyMemberDef* member = (<PyMemberDescrObject*><PyObject*>descr).d_member
    if member.type != T_OBJECT_EX or member.flags & READONLY:
        raise TypeError(f"{cls.__name__}.{name} is not a plain object slot")
    return member.offset


cdef class ContextMaker:
    """Makes instances of one slotted class with every slot set (see the module's docstring)."""

    cdef object cls
    cdef Py_ssize_t arg_at[_ARGS]
    cdef Py_ssize_t const_at[_SLOTS]
    cdef PyObject* const_value[_SLOTS]
    cdef Py_ssize_t nconst
    cdef Py_ssize_t fresh_at[_SLOTS]
    cdef Py_ssize_t nfresh
    cdef tuple constants_kept  # owns the constants' references

    def __cinit__(self, type cls, tuple args, dict constants, tuple fresh):
        cdef Py_ssize_t i
        if cls.__base__ is not object or cls.__dictoffset__ != 0:
            raise TypeError(f"{cls.__name__}: only a class with __slots__ (and no __dict__) directly over object")
        slots = tuple(cls.__slots__)
        named = list(args) + list(constants) + list(fresh)
        if len(args) != _ARGS or sorted(named) != sorted(slots) or len(slots) > _SLOTS:
            raise TypeError(f"{cls.__name__}: the arguments, constants and fresh lists must name each slot once")
        self.cls = cls
        for i in range(_ARGS):
            self.arg_at[i] = _slot_offset(cls, args[i])
        values = []
        self.nconst = 0
        for name, value in constants.items():
            self.const_at[self.nconst] = _slot_offset(cls, name)
            self.const_value[self.nconst] = <PyObject*>value
            values.append(value)
            self.nconst += 1
        self.constants_kept = tuple(values)
        self.nfresh = 0
        for name in fresh:
            self.fresh_at[self.nfresh] = _slot_offset(cls, name)
            self.nfresh += 1

    def new(self, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11):
        """A new instance: the arguments in the `args` slots, the constants, fresh empty lists."""
        obj = PyType_GenericAlloc(<type>self.cls, 0)  # every slot NULL; GC-tracked
        cdef char* base = <char*><PyObject*>obj
        cdef Py_ssize_t i
        cdef PyObject* v
        cdef PyObject* given[_ARGS]
        given[0] = <PyObject*>a0; given[1] = <PyObject*>a1; given[2] = <PyObject*>a2; given[3] = <PyObject*>a3
        given[4] = <PyObject*>a4; given[5] = <PyObject*>a5; given[6] = <PyObject*>a6; given[7] = <PyObject*>a7
        given[8] = <PyObject*>a8; given[9] = <PyObject*>a9; given[10] = <PyObject*>a10; given[11] = <PyObject*>a11
        for i in range(_ARGS):
            v = given[i]
            Py_INCREF(<object>v)
            (<PyObject**>(base + self.arg_at[i]))[0] = v
        for i in range(self.nconst):
            v = self.const_value[i]
            Py_INCREF(<object>v)
            (<PyObject**>(base + self.const_at[i]))[0] = v
        for i in range(self.nfresh):
            (<PyObject**>(base + self.fresh_at[i]))[0] = PyList_New(0)
        return obj
