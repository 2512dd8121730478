# cython: language_level=3, boundscheck=False, wraparound=False
"""The access-log line in C (`_accesslog.AccessLog.line`): one buffer, no `%` formatting.

Byte for byte the Python format of `_accesslog` (`_py_line`), which stays the reference: this
returns None for what it leaves to it (a URL, Referer or User-Agent with a byte to escape, a
line over 2 KiB), so escaping has one implementation.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL
from libc.string cimport memcpy

from ._bytesout cimport _dec, _lit, _put

__all__ = ["access_line", "access_line_h1"]

DEF _MAX = 2048


cdef inline bint _safe(bytes b) noexcept:
    """No byte `_accesslog._escape` would rewrite (outside 0x20-0x7e, `"`, `\\`)."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(PyBytes_GET_SIZE(b)):
        c = s[i]
        if c < 0x20 or c > 0x7e or c == 34 or c == 92:
            return False
    return True


cdef inline long long _ms(double seconds) noexcept:
    """`int(seconds * 1000)` as `b"%d" % (seconds * 1000)` truncates it."""
    return <long long>(seconds * 1000)


def access_line(bytes ip, bytes stamp, bytes method, bytes url, bytes version, long long status, long long sent,
                bytes ref, bytes ua, double t0, double t_sent, double t_headers, double now, bytes mesh):
    """The line for these fields, or None when the Python format must make it."""
    return _line(ip, stamp, PyBytes_AS_STRING(method), PyBytes_GET_SIZE(method), url, PyBytes_AS_STRING(version),
                 PyBytes_GET_SIZE(version), status, sent, ref, ua, t0, t_sent, t_headers, now, mesh)


def access_line_h1(bytes ip, bytes stamp, str method, bytes url, str version, long long status, long long sent,
                   bytes ref, bytes ua, double t0, double t_sent, double t_headers, double now):
    """`access_line` with the method and version as the HTTP/1.1 request holds them (str),
    without a mesh field (`_accesslog.AccessLog.h1_line`)."""
    cdef Py_ssize_t nm, nv
    cdef const char* m
    cdef const char* v
    if not (PyUnicode_IS_ASCII(method) and PyUnicode_IS_ASCII(version)):
        return None
    m = PyUnicode_AsUTF8AndSize(method, &nm)  # an ASCII str's own buffer: no copy
    v = PyUnicode_AsUTF8AndSize(version, &nv)
    return _line(ip, stamp, m, nm, url, v, nv, status, sent, ref, ua, t0, t_sent, t_headers, now, b"")


cdef object _line(bytes ip, bytes stamp, const char* method, Py_ssize_t nm, bytes url, const char* version,
                  Py_ssize_t nv, long long status, long long sent, bytes ref, bytes ua, double t0, double t_sent,
                  double t_headers, double now, bytes mesh):
    cdef char out[_MAX]
    cdef Py_ssize_t at = 0
    if not (_safe(url) and _safe(ref) and _safe(ua)):
        return None
    if (PyBytes_GET_SIZE(ip) + PyBytes_GET_SIZE(stamp) + nm + PyBytes_GET_SIZE(url)
            + nv + PyBytes_GET_SIZE(ref) + PyBytes_GET_SIZE(ua) + PyBytes_GET_SIZE(mesh)
            + 40 + 5 * 21) > _MAX:
        return None
    at = _put(out, at, ip)
    at = _lit(out, at, b" - - [", 6)
    at = _put(out, at, stamp)
    at = _lit(out, at, b"] \"", 3)
    at = _lit(out, at, method, nm)
    out[at] = 32
    at = _put(out, at + 1, url)
    at = _lit(out, at, b" HTTP/", 6)
    at = _lit(out, at, version, nv)
    at = _lit(out, at, b"\" ", 2)
    at = _dec(out, at, status)
    out[at] = 32
    at = _dec(out, at + 1, sent)
    at = _lit(out, at, b" \"", 2)
    at = _put(out, at, ref)
    at = _lit(out, at, b"\" \"", 3)
    at = _put(out, at, ua)
    at = _lit(out, at, b"\" ", 2)
    at = _dec(out, at, _ms((t_sent if t_sent else now) - t0))
    out[at] = 32
    at += 1
    if t_headers:
        at = _dec(out, at, _ms(t_headers - t_sent))
    else:
        out[at] = 45  # '-'
        at += 1
    out[at] = 32
    at = _dec(out, at + 1, _ms(now - t0))
    at = _put(out, at, mesh)
    out[at] = 10
    return PyBytes_FromStringAndSize(out, at + 1)
