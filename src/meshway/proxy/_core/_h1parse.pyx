# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""HTTP/1.1 head parsers in C over llhttp: one Python call per message head instead of one per
parser event.

httptools (the pure path's parser) calls its protocol once per event: message begin, each URL
span, each header, headers complete, then four getters. That is ~10 Python calls per request
head and ~12 per response head; here llhttp's callbacks run in C, collect the head, apply the
checks that must happen while the head arrives (the request-line and header-size limits), and
call the protocol once:

- requests: `on_head(url, headers, head_left, method, version, keep_alive, upgrade, host,
  host_count, special)`; `on_message_begin()` only when a head is still incomplete at the end
  of a read (so the header timeout and the head-size accounting start as with httptools);
  trailer fields of a chunked body go to `on_header(name, value)` as with httptools;
- responses: `on_head(status, keep_alive, headers, reason)`;
- both: `on_body(bytes)` and `on_message_complete()`.

Everything else keeps httptools' semantics exactly (same llhttp version and settings, same
header assembly, same exceptions and messages, same upgrade handling), so the Python code
around it is shared with the pure path (`meshway.proxy._core` picks one).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_GET_SIZE, PyBytes_AS_STRING
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.list cimport PyList_Append
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.string cimport memcmp

from httptools.parser.errors import (HttpParserCallbackError, HttpParserError, HttpParserInvalidMethodError,
                                     HttpParserInvalidStatusError, HttpParserInvalidURLError, HttpParserUpgrade)

__all__ = ["RequestParser", "ResponseParser"]

_METHOD_NAMES = {}  # llhttp method number -> str, as httptools' get_method().decode("latin-1")


cdef str _method_name(int method):
    name = _METHOD_NAMES.get(method)
    if name is None:
        name = _METHOD_NAMES[method] = (<bytes>llhttp_method_name(method)).decode("latin-1")
    return name


cdef str _version(llhttp_t* p):
    if p.http_major == 1:
        if p.http_minor == 1:
            return "1.1"
        if p.http_minor == 0:
            return "1.0"
    return "{}.{}".format(p.http_major, p.http_minor)


cdef int _lower_eq(bytes name, const char* low, Py_ssize_t n) noexcept:
    """`name.lower() == low` for ASCII `low` of length n."""
    cdef const char* s = PyBytes_AS_STRING(name)
    cdef Py_ssize_t i
    cdef char c
    if PyBytes_GET_SIZE(name) != n:
        return 0
    for i in range(n):
        c = s[i]
        if 65 <= c <= 90:
            c = c + 32
        if c != low[i]:
            return 0
    return 1


cdef class _Parser:
    cdef llhttp_t p
    cdef llhttp_settings_t s
    cdef object proto
    cdef object name   # the header field being assembled (bytes) or None, as httptools
    cdef object value
    cdef list headers
    cdef bint in_head
    cdef object last_error
    cdef object on_body_cb
    cdef object on_complete_cb
    cdef object on_head_cb
    cdef Py_buffer buf

    cdef _setup(self, proto, llhttp_type_t kind):
        llhttp_settings_init(&self.s)
        self.s.on_message_begin = cb_message_begin
        self.s.on_header_field = cb_header_field
        self.s.on_header_value = cb_header_value
        self.s.on_headers_complete = cb_headers_complete
        self.s.on_body = cb_body
        self.s.on_message_complete = cb_message_complete
        self.s.on_chunk_header = cb_chunk_header
        self.s.on_chunk_complete = cb_chunk_complete
        self.proto = proto
        self.on_head_cb = proto.on_head
        self.on_body_cb = proto.on_body
        self.on_complete_cb = proto.on_message_complete
        self.name = self.value = None
        self.headers = []
        self.in_head = False
        self.last_error = None

    cdef int _begin(self) except -1:
        self.headers = []
        self.in_head = True
        return 0

    cdef int _field_done(self) except -1:
        """A header field is complete (the next one began, or the head or a chunk ended)."""
        if self.value is None:
            return 0
        name, value = self.name, self.value
        self.name = self.value = None
        return self._header(name, value)

    cdef int _header(self, bytes name, bytes value) except -1:
        cdef tuple pair = (name, value)
        PyList_Append(self.headers, pair)
        return 0

    cdef int _head_done(self) except -1:
        return 0

    cdef int _after_feed(self) except -1:
        return 0

    def feed_data(self, data):
        """httptools' `feed_data`: same errors (classes and messages), same upgrade exception."""
        cdef llhttp_errno_t err
        cdef const char* pos
        PyObject_GetBuffer(data, &self.buf, PyBUF_SIMPLE)
        try:
            err = llhttp_execute(&self.p, <const char*>self.buf.buf, <size_t>self.buf.len)
            if self.p.upgrade == 1 and err == HPE_PAUSED_UPGRADE:
                pos = llhttp_get_error_pos(&self.p)
                llhttp_resume_after_upgrade(&self.p)
                raise HttpParserUpgrade(pos - <const char*>self.buf.buf)
        finally:
            PyBuffer_Release(&self.buf)
        if err != HPE_OK:
            ex = _error(&self.p, err)
            if isinstance(ex, HttpParserCallbackError) and self.last_error is not None:
                ex.__context__ = self.last_error
                self.last_error = None
            raise ex
        self._after_feed()

    def should_keep_alive(self):
        return bool(llhttp_should_keep_alive(&self.p))

    def should_upgrade(self):
        return bool(self.p.upgrade)

    def get_http_version(self):
        return _version(&self.p)


cdef object _error(llhttp_t* p, llhttp_errno_t err):
    cdef bytes reason = llhttp_get_error_reason(p)
    if err in (HPE_CB_MESSAGE_BEGIN, HPE_CB_HEADERS_COMPLETE, HPE_CB_MESSAGE_COMPLETE, HPE_CB_CHUNK_HEADER,
               HPE_CB_CHUNK_COMPLETE, HPE_USER):
        cls = HttpParserCallbackError
    elif err == HPE_INVALID_STATUS:
        cls = HttpParserInvalidStatusError
    elif err == HPE_INVALID_METHOD:
        cls = HttpParserInvalidMethodError
    elif err == HPE_INVALID_URL:
        cls = HttpParserInvalidURLError
    else:
        cls = HttpParserError
    return cls(reason.decode("latin-1"))


cdef class RequestParser(_Parser):
    """The client side: `proto` is an `_http1.H1Server`; `reject(status, message)` builds the
    exception the limits raise (its `_Reject`), `limit` is `large_client_header_buffers`."""

    cdef object url
    cdef object reject
    cdef object on_begin_cb
    cdef object on_header_cb
    cdef Py_ssize_t limit
    cdef Py_ssize_t head_limit
    cdef Py_ssize_t head_left
    cdef bint py_begun
    cdef object host
    cdef int host_count
    cdef bint special

    def __init__(self, proto, reject, Py_ssize_t limit):
        self._setup(proto, HTTP_REQUEST)
        self.s.on_url = cb_url
        self.reject = reject
        self.limit = limit
        self.head_limit = 4 * limit
        self.on_begin_cb = proto.on_message_begin
        self.on_header_cb = proto.on_header
        self.url = b""
        llhttp_init(&self.p, HTTP_REQUEST, &self.s)
        self.p.data = <void*>self

    cdef int _begin(self) except -1:
        self.headers = []
        self.in_head = True
        self.py_begun = False
        self.url = b""
        self.head_left = self.head_limit
        self.host = None
        self.host_count = 0
        self.special = False
        return 0

    cdef int _url(self, bytes part) except -1:
        url = self.url = self.url + part if self.url else part
        if PyBytes_GET_SIZE(url) > self.limit:
            raise self.reject(414, "request line too long")
        return 0

    cdef int _header(self, bytes name, bytes value) except -1:
        cdef Py_ssize_t n
        cdef Py_ssize_t size
        if not self.in_head:  # a trailer of a chunked body: the protocol's own on_header, as httptools
            self.on_header_cb(name, value)
            return 0
        PyList_Append(self.headers, (name, value))
        n = PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value)
        self.head_left -= n
        if self.head_left < 0 or n > self.limit:
            raise self.reject(431, "request header section too long" if self.head_left < 0
                              else "request header too long")
        size = PyBytes_GET_SIZE(name)
        if size == 4 and _lower_eq(name, b"host", 4):
            self.host_count += 1
            self.host = value
        elif size in (6, 7, 10, 14, 17) and (
                _lower_eq(name, b"content-length", 14) or _lower_eq(name, b"transfer-encoding", 17)
                or _lower_eq(name, b"expect", 6) or _lower_eq(name, b"user-agent", 10)
                or _lower_eq(name, b"referer", 7)):
            self.special = True
        return 0

    cdef int _head_done(self) except -1:
        self.in_head = False
        p = &self.p
        self.on_head_cb(self.url, self.headers, self.head_left, _method_name(p.method), _version(p),
                        bool(llhttp_should_keep_alive(p)), bool(p.upgrade), self.host, self.host_count,
                        self.special, None if p.upgrade else encode_request_headers(self.headers))
        return 0

    cdef int _after_feed(self) except -1:
        if self.in_head and not self.py_begun:  # a head split over reads: start its clock now
            self.py_begun = True
            self.on_begin_cb()
        return 0

    def get_method(self):
        return llhttp_method_name(self.p.method)


cdef class ResponseParser(_Parser):
    """The upstream side: `proto` is an `_upstream.UpstreamConn`."""

    cdef object reason

    def __init__(self, proto):
        self._setup(proto, HTTP_RESPONSE)
        self.s.on_status = cb_status
        self.reason = b""
        llhttp_init(&self.p, HTTP_RESPONSE, &self.s)
        self.p.data = <void*>self

    cdef int _begin(self) except -1:
        self.headers = []
        self.in_head = True
        self.reason = b""
        return 0

    cdef int _head_done(self) except -1:
        self.in_head = False
        self.on_head_cb(self.p.status_code, bool(llhttp_should_keep_alive(&self.p)), self.headers, self.reason,
                        encode_response_headers(self.headers))
        return 0

    def get_status_code(self):
        return self.p.status_code


# -- llhttp callbacks: C, calling Python only through the methods above ------------------------
cdef int cb_message_begin(llhttp_t* p) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        self._begin()
    except BaseException as e:
        self.last_error = e
        return -1
    return 0


cdef int cb_url(llhttp_t* p, const char* at, size_t n) noexcept:
    cdef RequestParser self = <RequestParser>p.data
    try:
        self._url(PyBytes_FromStringAndSize(at, n))
    except BaseException as e:
        llhttp_set_error_reason(p, "`on_url` callback error")
        self.last_error = e
        return HPE_USER
    return 0


cdef int cb_status(llhttp_t* p, const char* at, size_t n) noexcept:
    cdef ResponseParser self = <ResponseParser>p.data
    try:
        part = PyBytes_FromStringAndSize(at, n)
        self.reason = self.reason + part if self.reason else part
    except BaseException as e:
        llhttp_set_error_reason(p, "`on_status` callback error")
        self.last_error = e
        return HPE_USER
    return 0


cdef int cb_header_field(llhttp_t* p, const char* at, size_t n) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        self._field_done()
        part = PyBytes_FromStringAndSize(at, n)
        self.name = part if self.name is None else self.name + part
    except BaseException as e:
        llhttp_set_error_reason(p, "`on_header_field` callback error")
        self.last_error = e
        return HPE_USER
    return 0


cdef int cb_header_value(llhttp_t* p, const char* at, size_t n) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        part = PyBytes_FromStringAndSize(at, n)
        self.value = part if self.value is None else self.value + part
    except BaseException as e:
        llhttp_set_error_reason(p, "`on_header_value` callback error")
        self.last_error = e
        return HPE_USER
    return 0


cdef int cb_headers_complete(llhttp_t* p) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        self._field_done()
        self._head_done()
    except BaseException as e:
        self.last_error = e
        return -1
    return 1 if p.upgrade else 0


cdef int cb_body(llhttp_t* p, const char* at, size_t n) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        self.on_body_cb(PyBytes_FromStringAndSize(at, n))
    except BaseException as e:
        llhttp_set_error_reason(p, "`on_body` callback error")
        self.last_error = e
        return HPE_USER
    return 0


cdef int cb_message_complete(llhttp_t* p) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        self.on_complete_cb()
    except BaseException as e:
        self.last_error = e
        return -1
    return 0


cdef int cb_chunk_header(llhttp_t* p) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        if self.value is not None or self.name is not None:
            raise HttpParserError("invalid headers state")
    except BaseException as e:
        self.last_error = e
        return -1
    return 0


cdef int cb_chunk_complete(llhttp_t* p) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        self._field_done()
    except BaseException as e:
        self.last_error = e
        return -1
    return 0


# -- response header policy for the common case (`_headers.encode_response_headers`, no tunnel) --
cdef enum:
    _KEEP = 0
    _CONNECTION = 1
    _LENGTH = 2
    _DROP = 3
    _ODD = 4


cdef int _response_kind(bytes name) noexcept:
    """What `_headers._classify(name.lower(), _RESPONSE_DROP)` says, for a response that is not a tunnel."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    if n == 10:
        if _lower_eq(name, b"connection", 10):
            return _CONNECTION
        if _lower_eq(name, b"keep-alive", 10):
            return _DROP
    elif n == 14:
        if _lower_eq(name, b"content-length", 14):
            return _LENGTH
    elif n == 5:
        if _lower_eq(name, b"close", 5):
            return _ODD
    elif n == 7:
        if _lower_eq(name, b"upgrade", 7) or _lower_eq(name, b"trailer", 7):
            return _DROP
    elif n == 2:
        if _lower_eq(name, b"te", 2):
            return _DROP
    elif n == 17:
        if _lower_eq(name, b"transfer-encoding", 17):
            return _DROP
    if n >= 6 and _lower_prefix(name, b"proxy-", 6):
        return _DROP
    return _KEEP


cdef int _lower_prefix(bytes name, const char* low, Py_ssize_t n) noexcept:
    cdef const char* s = PyBytes_AS_STRING(name)
    cdef Py_ssize_t i
    cdef char c
    for i in range(n):
        c = s[i]
        if 65 <= c <= 90:
            c = c + 32
        if c != low[i]:
            return 0
    return 1


cdef inline bint _space(char c) noexcept:
    return c == 32 or c == 9 or c == 10 or c == 13 or c == 11 or c == 12


cdef bint _simple_token(const char* s, Py_ssize_t a, Py_ssize_t b) noexcept:
    """s[a:b].strip().lower() in {keep-alive, close, upgrade} (`_headers._simple_connection`)."""
    cdef Py_ssize_t i, n
    cdef char c
    cdef const char* want
    while a < b and _space(s[a]):
        a += 1
    while b > a and _space(s[b - 1]):
        b -= 1
    n = b - a
    if n == 10:
        want = b"keep-alive"
    elif n == 5:
        want = b"close"
    elif n == 7:
        want = b"upgrade"
    else:
        return False
    for i in range(n):
        c = s[a + i]
        if 65 <= c <= 90:
            c = c + 32
        if c != want[i]:
            return False
    return True


cdef bint _simple_connection(bytes value) noexcept:
    cdef const char* s = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    cdef Py_ssize_t a = 0, i
    for i in range(n + 1):
        if i == n or s[i] == 44:  # ','
            if not _simple_token(s, a, i):
                return False
            a = i + 1
    return True


cpdef object encode_response_headers(list headers):
    """`_headers.encode_response_headers(headers, tunnel=False)`: (wire lines, Content-Length
    value or None); None when the answer needs the general function (a Connection header that
    names other headers), which the caller then runs: one implementation of that rule."""
    cdef list parts = []
    cdef int kind
    cdef bint odd = False
    length = None
    conn = None
    for pair in headers:
        name = (<tuple>pair)[0]
        value = (<tuple>pair)[1]
        kind = _response_kind(name)
        if kind == _KEEP:
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
        elif kind == _LENGTH:
            length = value
        elif kind == _CONNECTION:
            conn = value if conn is None else conn + b"," + value
        elif kind == _ODD:
            odd = True
    if odd or (conn is not None and not _simple_connection(conn)):
        return None
    return b"".join(parts), length


# -- request header policy for the common case (`_headers.encode_request_headers`, no tunnel) ---
cdef enum:
    _XFF = 5


cdef int _request_kind(bytes name) noexcept:
    """What `_headers._classify(name.lower(), _REQUEST_SPECIAL)` says for a request that is not a
    tunnel, or _ODD for what is left to the Python function (`_` in a name: that depends on
    `underscores_in_headers` and is logged there; a header named `close`)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    cdef const char* s = PyBytes_AS_STRING(name)
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] == 95:  # '_'
            return _ODD
    if n == 4 and _lower_eq(name, b"host", 4):
        return _DROP
    if n == 9 and _lower_eq(name, b"x-real-ip", 9):
        return _DROP
    if n >= 15 and _lower_prefix(name, b"x-forwarded-", 12):
        if n == 15 and _lower_eq(name, b"x-forwarded-for", 15):
            return _XFF
        if _lower_eq(name, b"x-forwarded-proto", 17) or _lower_eq(name, b"x-forwarded-host", 16) \
                or _lower_eq(name, b"x-forwarded-port", 16) or _lower_eq(name, b"x-forwarded-path", 16) \
                or _lower_eq(name, b"x-forwarded-prefix", 18):
            return _DROP
        return _KEEP
    return _response_kind(name)  # the hop-by-hop names: the same on both sides


cpdef object encode_request_headers(list headers):
    """The part of `_headers.encode_request_headers` that depends on the request alone, for an
    untrusted client and no tunnel: (the kept header lines, the client's X-Forwarded-For list or
    None); None when the request needs the Python function (a Connection header naming other
    headers, `_` in a name, a header named `close`)."""
    cdef list parts = []
    cdef int kind
    xff = None
    conn = None
    for pair in headers:
        name = (<tuple>pair)[0]
        value = (<tuple>pair)[1]
        kind = _request_kind(name)
        if kind == _KEEP:
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
        elif kind == _XFF:
            xff = value if xff is None else xff + b", " + value
        elif kind == _CONNECTION:
            conn = value if conn is None else conn + b"," + value
        elif kind == _ODD:
            return None
    if conn is not None and not _simple_connection(conn):
        return None
    return b"".join(parts), xff
