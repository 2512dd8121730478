# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""HTTP/1.1 head parsers in C over llhttp: one Python call per message head instead of one per
parser event.

httptools (the pure path's parser) calls its protocol once per event: message begin, each URL
span, each header, headers complete, then four getters. That is ~10 Python calls per request
head and ~12 per response head; here llhttp's callbacks run in C, collect the head, apply the
checks that must happen while the head arrives (the request-line and header-size limits), and
call the protocol once:

- requests: `on_head(url, headers, head_left, method, version, keep_alive, upgrade, host,
  host_count, special, kept, plain, complete)` (`complete`: no body follows, and no
  `on_message_complete` either); `on_message_begin()` only when a head is still incomplete at the end
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
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp, memcpy
from libc.errno cimport errno, EAGAIN, EINTR
from posix.uio cimport iovec, writev

from ._bytesout cimport _dec, _lit, _put


cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL

from httptools.parser.errors import (HttpParserCallbackError, HttpParserError, HttpParserInvalidMethodError,
                                     HttpParserInvalidStatusError, HttpParserInvalidURLError, HttpParserUpgrade)

__all__ = ["RequestParser", "ResponseParser"]

# A body piece at least this large is written straight from the read buffer (`_send_direct`);
# smaller ones are copied and joined as before (a syscall each would cost more than the copy).
DEF _DIRECT_MIN = 16384
DEF _DIRECT_IOV = 16

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

    cdef int _body(self, const char* at, size_t n) except -1:
        self.on_body_cb(PyBytes_FromStringAndSize(at, n))
        return 0

    cdef int _complete(self) except -1:
        self.on_complete_cb()
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
    cdef bint skip_complete  # the head went to Python as complete: no on_message_complete

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
        self.skip_complete = False
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
        # `plain`: none of what `H1Server._validate` checks can fail (one Host, no framing or
        # Expect header, HTTP/1.0 or 1.1, not CONNECT or TRACE); it then skips those checks.
        cdef bint plain = (not self.special and self.host_count == 1 and p.http_major == 1 and p.http_minor <= 1
                           and p.method != HTTP_CONNECT and p.method != HTTP_TRACE)
        # `complete`: no body follows (llhttp's `llhttp__after_headers_complete` answers 0 for a
        # request that is no upgrade, not chunked, without Transfer-Encoding and with no or a zero
        # Content-Length): the message ends with its head, so llhttp's message-complete callback,
        # which comes next, is not passed on (`_complete`).
        cdef bint complete = (not p.upgrade and not (p.flags & (F_CHUNKED | F_TRANSFER_ENCODING))
                              and p.content_length == 0)
        host = self.host
        self.skip_complete = complete
        self.on_head_cb(self.url, self.headers, self.head_left, _method_name(p.method), _version(p),
                        bool(llhttp_should_keep_alive(p)), bool(p.upgrade),
                        None if host is None else (<bytes>host).decode("latin-1"), self.host_count,
                        self.special, None if p.upgrade else encode_request_headers(self.headers), plain, complete)
        return 0

    cdef int _complete(self) except -1:
        if self.skip_complete:
            self.skip_complete = False
            return 0
        self.on_complete_cb()
        return 0

    cdef int _after_feed(self) except -1:
        if self.in_head and not self.py_begun:  # a head split over reads: start its clock now
            self.py_begun = True
            self.on_begin_cb()
        return 0

    def get_method(self):
        return llhttp_method_name(self.p.method)


cdef class ResponseParser(_Parser):
    """The upstream side: `proto` is an `_upstream.UpstreamConn`.

    Relaying (`relay()`, armed by an HTTP/1.1 exchange whose plugins do not look at the response
    head or body, i.e. have no `response` or `body` phase): the
    client's response head is encoded here (`_relay.ResponseRelay._encode_response_head`'s
    bytes: status line, the upstream's kept headers, Via, latency headers, framing, Connection),
    body bytes are framed and queued on the exchange's `out` list here, and the exchange is
    called once, at the end (`_complete`). What the Python relay would have stored on the
    exchange at the head (status, times, framing) is stored the same. A head this cannot encode
    (an interim 1xx, a Connection header naming others) goes to the Python relay as without
    relaying; so does everything once the connection left the exchange. With a plugin Context
    (`ctx`), the head is made from the client-visible pairs (`response_header_pairs`) with the
    headers the plugins set before the response (`ctx.response_headers`) each replacing those
    of its name, as `ResponseRelay._response_phase` does, and the Context gets the pairs and the
    status for its `log` phase."""

    cdef object reason
    cdef object rx        # the exchange relayed to, or None
    cdef list rout        # its `out` list
    cdef double r_t0, r_tsent
    cdef bint r_keep, r_v11, r_latency, r_on, r_chunked
    cdef object r_via     # worker.via: bytes or None
    cdef object clock     # the loop's time()
    cdef object r_ctx     # the plugin Context of the exchange relayed to, or None
    cdef Py_ssize_t r_sent
    cdef Py_ssize_t r_framing  # chunk framing bytes queued (the log serializer's response.size)
    cdef int r_fd         # the client's socket for direct writes (`_send_direct`): -2 not looked up yet, -1 none

    def __init__(self, proto):
        self._setup(proto, HTTP_RESPONSE)
        self.s.on_status = cb_status
        self.reason = b""
        self.rx = None
        self.r_ctx = None
        self.clock = None
        llhttp_init(&self.p, HTTP_RESPONSE, &self.s)
        self.p.data = <void*>self

    def relay(self, ex, list out, double t0, double t_sent, bint keep, bint v11, via, bint latency, ctx=None):
        """Relay the next response to `ex` (see the class): `out` its write queue, `t0` / `t_sent`
        its start and request-sent times, `keep` the client's keep-alive (not an upgrade), `v11`
        an HTTP/1.1 client (chunked framing allowed), `via` and `latency` the worker's settings,
        `ctx` the plugin Context whose preset response headers apply (None: no plugin reads
        or changes the response head)."""
        if self.clock is None:
            self.clock = self.proto.loop.time
        self.rx = ex
        self.rout = out
        self.r_t0 = t0
        self.r_tsent = t_sent
        self.r_keep = keep
        self.r_v11 = v11
        self.r_via = via
        self.r_latency = latency
        self.r_ctx = ctx
        self.r_sent = 0
        self.r_framing = 0
        self.r_fd = -2

    cdef int _begin(self) except -1:
        self.headers = []
        self.in_head = True
        self.reason = b""
        self.r_on = False
        return 0

    cdef int _head_done(self) except -1:
        self.in_head = False
        encoded = encode_response_headers(self.headers)
        keep_alive = bool(llhttp_should_keep_alive(&self.p))
        ex = self.rx
        if ex is not None:
            if self.p.status_code >= 200 and encoded is not None and self.proto.exchange is ex \
                    and self._relay_head(ex, keep_alive, <tuple>encoded):
                return 0
            if self.p.status_code >= 200:  # the Python relay takes this response
                self._disarm()
        self.on_head_cb(self.p.status_code, keep_alive, self.headers, self.reason, encoded)
        return 0

    cdef _disarm(self):
        self.rx = None
        self.rout = None
        self.r_ctx = None
        self.r_on = False

    cdef int _relay_head(self, ex, bint keep_alive, tuple encoded) except -1:
        """Encode and queue the client's head; 0 when it is left to the Python relay."""
        cdef int status = self.p.status_code
        cdef double t_headers
        cdef bytes lines = encoded[0]
        cdef list pairs = None
        length = encoded[1]
        ctx = self.r_ctx
        if ctx is not None:
            pairs = response_header_pairs(self.headers)
            if pairs is None:  # a Connection header naming others: the Python relay's policy
                return 0
            pairs = _preset(pairs, ctx.response_headers)
            if pairs is None:  # something else than (bytes, bytes) pairs: as the Python relay
                return 0
            lines = header_lines(pairs)
            ctx.response_status = status
            ctx.response_headers = pairs
        t_headers = self.clock()
        reason = self.reason
        if not reason:
            reason = _reason(status)
        cdef bint no_body = status == 204 or status == 304
        cdef bint chunked = False, close = False
        if length is None and not no_body:
            if self.r_v11:
                chunked = True
            else:
                close = True
        head = _response_head(status, reason, lines, self.r_via, self.r_latency,
                              <long long>((t_headers - self.r_tsent) * 1000), <long long>((self.r_tsent - self.r_t0) * 1000),
                              length, chunked, self.r_keep and not close)
        self.rout.append(head)
        if ctx is not None:  # plugins may log it: Kong's response.size counts the head ($bytes_sent)
            ex.head_bytes = ex.head_bytes + PyBytes_GET_SIZE(head)
        # What `ResponseRelay.on_up_headers` stores that the exchange reads later (not the reason,
        # which only its head encoder reads; the headers only for a chunked relay, which
        # `upstream_lost` checks): each store from C is a generic setattr (~200 instructions).
        ex.t_headers = t_headers
        ex.status = status
        ex.up_keep_alive = keep_alive
        ex.response_started = True
        if chunked:
            ex.up_headers = self.headers
            ex.resp_chunked = True
        if close:
            ex.resp_close = True
        self.r_chunked = chunked
        self.r_on = True
        return 1

    cdef int _body(self, const char* at, size_t n) except -1:
        cdef char size[24]
        cdef int k
        cdef char* w
        if not self.r_on:
            self.on_body_cb(PyBytes_FromStringAndSize(at, n))
            return 0
        ex = self.rx
        if self.proto.exchange is not ex:  # it left the exchange: as without relaying
            self._disarm()
            self.on_body_cb(PyBytes_FromStringAndSize(at, n))
            return 0
        if ex.done:  # `on_up_body`: nothing more goes out
            return 0
        self.r_sent += n
        ex.sent_bytes = self.r_sent
        if n >= _DIRECT_MIN and self.r_fd != -1:
            if self.r_fd == -2:
                self.r_fd = _client_fd(ex)
            if self.r_fd >= 0 and self._send_direct(ex, at, n):
                return 0
        if not self.r_chunked:
            self.rout.append(PyBytes_FromStringAndSize(at, n))
            return 0
        k = _hex(size, n)  # b"%x\r\n%s\r\n" % (len(body), body) in one allocation
        chunk = PyBytes_FromStringAndSize(NULL, k + 2 + n + 2)
        w = PyBytes_AS_STRING(chunk)
        memcpy(w, size, k)
        w[k] = 13
        w[k + 1] = 10
        memcpy(w + k + 2, at, n)
        w[k + 2 + n] = 13
        w[k + 3 + n] = 10
        self.rout.append(chunk)
        self.r_framing += k + 4
        return 0

    cdef int _send_direct(self, ex, const char* at, size_t n) except -1:
        """Write what is queued for the client (`rout`: the head, earlier small pieces) and this body
        piece (framed when chunked) straight from the read buffer with one writev on the client's
        socket, when nothing waits in its transport (else the order would break): no copy of the
        body into a bytes object, no join. What the socket does not take now is copied into one
        bytes object and queued on `rout` for the transport (`flush`), whose write buffer and
        pause/resume flow control then work as without this. 0: not written (the client closed or
        is closing, the transport holds data, or an error the transport's own write should meet
        and report)."""
        cdef iovec iov[_DIRECT_IOV]
        cdef char size[24]
        cdef int cnt = 0, k = 0, i
        cdef Py_ssize_t total = 0, wrote, skip, left
        cdef list out = self.rout
        cdef Py_ssize_t queued = len(out)
        cdef char* w
        if queued + 3 > _DIRECT_IOV:
            return 0
        server = ex.server
        transport = server.transport
        # Closing: its socket may be closed (and its number reused) before the close completes
        if server.closed or transport.is_closing() or transport.get_write_buffer_size():
            return 0
        for item in out:
            if type(item) is not bytes:
                return 0
            iov[cnt].iov_base = <void*>PyBytes_AS_STRING(<bytes>item)
            iov[cnt].iov_len = PyBytes_GET_SIZE(<bytes>item)
            total += iov[cnt].iov_len
            cnt += 1
        if self.r_chunked:
            k = _hex(size, n)
            size[k] = 13
            size[k + 1] = 10
            iov[cnt].iov_base = <void*>size
            iov[cnt].iov_len = k + 2
            total += k + 2
            cnt += 1
        iov[cnt].iov_base = <void*>at
        iov[cnt].iov_len = n
        total += n
        cnt += 1
        if self.r_chunked:
            iov[cnt].iov_base = <void*><const char*>b"\r\n"
            iov[cnt].iov_len = 2
            total += 2
            cnt += 1
            self.r_framing += k + 4
        wrote = writev(self.r_fd, iov, cnt)
        if wrote < 0:
            if errno != EAGAIN and errno != EINTR:  # (EWOULDBLOCK is EAGAIN on Linux)
                if self.r_chunked:
                    self.r_framing -= k + 4
                return 0
            wrote = 0
        if wrote < total:  # the rest, copied, goes through the transport
            rest = PyBytes_FromStringAndSize(NULL, total - wrote)
            w = PyBytes_AS_STRING(rest)
            skip = wrote
            for i in range(cnt):
                if skip >= <Py_ssize_t>iov[i].iov_len:
                    skip -= iov[i].iov_len
                    continue
                left = iov[i].iov_len - skip
                memcpy(w, <char*>iov[i].iov_base + skip, left)
                w += left
                skip = 0
            out.clear()
            out.append(rest)
        else:
            out.clear()
        return 1

    cdef int _complete(self) except -1:
        if not self.r_on:
            self.on_complete_cb()
            return 0
        ex = self.rx
        if self.r_ctx is not None and self.r_framing:  # the chunk framing, for the log serializer
            ex.head_bytes = ex.head_bytes + self.r_framing
        self._disarm()  # before the exchange ends: the next request may take this connection now
        conn = self.proto
        if conn.exchange is not ex:
            self.on_complete_cb()
        elif not ex.done:  # `on_up_complete`
            ex._relayed_end(conn)
        return 0

    def get_status_code(self):
        return self.p.status_code



_TCPTransport = None  # uvloop's plain TCP transport class, once looked up (`_client_fd`)


cdef int _client_fd(ex) except -2:
    """The client's socket when its transport is uvloop's plain TCP transport (not TLS, not an
    in-process or bridged stand-in), else -1."""
    global _TCPTransport
    if _TCPTransport is None:
        try:
            from uvloop.loop import TCPTransport
        except ImportError:
            TCPTransport = False
        _TCPTransport = TCPTransport
    transport = ex.server.transport
    if _TCPTransport is False or type(transport) is not _TCPTransport:
        return -1
    sock = transport.get_extra_info("socket")
    if sock is None:
        return -1
    return sock.fileno()


cdef list _preset(list pairs, object preset):
    """Each (name, value) a plugin set before the response, in order, replaces the headers of
    that name (any case) and is appended (`ResponseRelay._response_phase`)."""
    cdef bytes low
    for pair in preset:
        if type(pair) is not tuple or len(<tuple>pair) != 2 or type((<tuple>pair)[0]) is not bytes \
                or type((<tuple>pair)[1]) is not bytes:
            return None
        low = (<bytes>(<tuple>pair)[0]).lower()
        for old in pairs:
            if _lower_eq(<bytes>(<tuple>old)[0], PyBytes_AS_STRING(low), PyBytes_GET_SIZE(low)):
                pairs = [o for o in pairs if (<bytes>(<tuple>o)[0]).lower() != low]
                break
        pairs.append(pair)
    return pairs


_REASONS = None


cdef object _reason(int status):
    """`_errors.REASONS.get(status, b"")` (imported on first use: `_errors` imports the proxy)."""
    global _REASONS
    if _REASONS is None:
        from meshway.proxy._errors import REASONS
        _REASONS = REASONS
    return _REASONS.get(status, b"")


cdef int _hex(char* out, size_t n) noexcept:
    """`b"%x" % n` into out; its length."""
    cdef char tmp[20]
    cdef int k = 0, i
    while True:
        tmp[k] = b"0123456789abcdef"[n & 15]
        k += 1
        n >>= 4
        if n == 0:
            break
    for i in range(k):
        out[i] = tmp[k - 1 - i]
    return k


cdef bytes _response_head(int status, bytes reason, bytes lines, object via, bint latency, long long up_ms,
                          long long px_ms, object length, bint chunked, bint keep):
    """`ResponseRelay._encode_response_head` for a response that is not a tunnel, without a body
    phase, to a request that is not HEAD: the same bytes, in one buffer."""
    cdef Py_ssize_t cap = 9 + 24 + PyBytes_GET_SIZE(reason) + 2 + PyBytes_GET_SIZE(lines) + 2 * (30 + 24) + 28 + 28
    cdef Py_ssize_t at = 0
    cdef char stack[2048]
    cdef char* out = stack
    if via is not None:
        cap += 7 + PyBytes_GET_SIZE(<bytes>via)
    if length is not None:
        cap += 18 + PyBytes_GET_SIZE(<bytes>length)
    if cap > 2048:
        out = <char*>malloc(cap)
        if out == NULL:
            raise MemoryError()
    try:
        at = _lit(out, at, b"HTTP/1.1 ", 9)
        at = _dec(out, at, status)
        out[at] = 32
        at = _put(out, at + 1, reason)
        at = _lit(out, at, b"\r\n", 2)
        at = _put(out, at, lines)
        if via is not None:
            at = _lit(out, at, b"Via: ", 5)
            at = _put(out, at, <bytes>via)
            at = _lit(out, at, b"\r\n", 2)
        if latency:
            at = _lit(out, at, b"X-Meshway-Upstream-Latency: ", 28)
            at = _dec(out, at, up_ms)
            at = _lit(out, at, b"\r\nX-Meshway-Proxy-Latency: ", 27)
            at = _dec(out, at, px_ms)
            at = _lit(out, at, b"\r\n", 2)
        if length is not None:
            at = _lit(out, at, b"Content-Length: ", 16)
            at = _put(out, at, <bytes>length)
            at = _lit(out, at, b"\r\n", 2)
        elif chunked:
            at = _lit(out, at, b"Transfer-Encoding: chunked\r\n", 28)
        if keep:
            at = _lit(out, at, b"Connection: keep-alive\r\n\r\n", 26)
        else:
            at = _lit(out, at, b"Connection: close\r\n\r\n", 21)
        return PyBytes_FromStringAndSize(out, at)
    finally:
        if out != stack:
            free(out)


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
        self._body(at, n)
    except BaseException as e:
        llhttp_set_error_reason(p, "`on_body` callback error")
        self.last_error = e
        return HPE_USER
    return 0


cdef int cb_message_complete(llhttp_t* p) noexcept:
    cdef _Parser self = <_Parser>p.data
    try:
        self._complete()
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


cpdef object response_header_pairs(list headers):
    """`_headers.downstream_response_headers(headers)` for a response that is not a tunnel: the
    pairs a client may see (for plugins to read and change); None when a Connection header
    names other headers (or a header is named `close`), which the Python function then takes."""
    cdef list out = []
    cdef int kind
    conn = None
    for pair in headers:
        name = (<tuple>pair)[0]
        kind = _response_kind(name)
        if kind == _KEEP:
            out.append(pair)
        elif kind == _CONNECTION:
            value = (<tuple>pair)[1]
            conn = value if conn is None else conn + b"," + value
        elif kind == _ODD:
            return None
    if conn is not None and not _simple_connection(conn):
        return None
    return out


cpdef bytes header_lines(list headers):
    """`b"".join(name + b": " + value + b"\r\n" for name, value in headers)` in one buffer
    (`_relay._wire`); pairs of anything but bytes go to the Python join, which says what is wrong."""
    cdef Py_ssize_t size = 0, at = 0
    cdef bytes name, value
    cdef char* w
    for pair in headers:
        if type(pair) is not tuple or len(<tuple>pair) != 2 or type((<tuple>pair)[0]) is not bytes \
                or type((<tuple>pair)[1]) is not bytes:
            return b"".join([n + b": " + v + b"\r\n" for n, v in headers])
        size += PyBytes_GET_SIZE((<tuple>pair)[0]) + PyBytes_GET_SIZE((<tuple>pair)[1]) + 4
    out = PyBytes_FromStringAndSize(NULL, size)
    w = PyBytes_AS_STRING(out)
    for pair in headers:
        name = (<tuple>pair)[0]
        value = (<tuple>pair)[1]
        at = _put(w, at, name)
        w[at] = 58  # ':'
        w[at + 1] = 32
        at = _put(w, at + 2, value)
        w[at] = 13
        w[at + 1] = 10
        at += 2
    return out


cpdef bytes response_head(int status, bytes reason, list pairs, object via, bint latency, double up_s, double px_s,
                          object length, bint chunked, bint keep):
    """`ResponseRelay._encode_response_head` for the head of a route with plugins (`pairs`: the
    headers as its plugins left them), when it is not a tunnel, has no body phase and does not
    answer HEAD: the same bytes in one buffer, as the relay writes them for routes without
    plugins. `up_s`, `px_s`: the upstream and proxy latencies in seconds."""
    if not reason:
        reason = _reason(status)
    return _response_head(status, reason, header_lines(pairs), via, latency, <long long>(up_s * 1000),
                          <long long>(px_s * 1000), length, chunked, keep)


cdef inline bint _printable_ascii(str text) noexcept:
    """`text.isascii() and text.isprintable()`: every character 0x20-0x7e."""
    cdef Py_ssize_t n, i
    cdef const unsigned char* s
    if not PyUnicode_IS_ASCII(text):
        return False
    s = <const unsigned char*>PyUnicode_AsUTF8AndSize(text, &n)  # an ASCII str's own buffer
    for i in range(n):
        if s[i] < 0x20 or s[i] > 0x7e:
            return False
    return True


cpdef object header_value(list headers, bytes low):
    """`Context.get_header`'s search: the value of the first (name, value) pair whose name is
    `low` (lowercased ASCII) in any case, or None; lengths first, as the Python loop."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(low)
    cdef const char* want = PyBytes_AS_STRING(low)
    for pair in headers:
        k = (<tuple>pair)[0]
        if type(k) is bytes:
            if _lower_eq(<bytes>k, want, n):
                return (<tuple>pair)[1]
        elif len(k) == n and k.lower() == low:
            return (<tuple>pair)[1]
    return None


cpdef list set_header_pairs(list hdrs, object pairs, dict names, object name_of, object value_of):
    """`Context.set_response_headers`: each (name, value) of `pairs`, in order, replaces the
    headers of that name (any case) and is appended. Names are encoded by the `names` cache
    (str -> (raw, lowercased)) or `name_of`; a value that is printable ASCII text is its own
    bytes, anything else goes to `value_of` (the checks and escapes of `_context._value`).
    Appends go to `hdrs`; a replacement makes a new list (as the Python code): the list to keep."""
    cdef bytes low, raw
    cdef Py_ssize_t n
    cdef bint seen
    for pair in pairs:
        name, value = pair
        found = names.get(name)
        if found is None:
            found = name_of(name)
        raw = (<tuple>found)[0]
        low = (<tuple>found)[1]
        n = PyBytes_GET_SIZE(low)
        seen = False
        for old in hdrs:
            k = (<tuple>old)[0]
            if type(k) is bytes:
                if _lower_eq(<bytes>k, PyBytes_AS_STRING(low), n):
                    seen = True
                    break
            elif k.lower() == low:
                seen = True
                break
        if seen:
            hdrs = [old for old in hdrs if (<tuple>old)[0].lower() != low]
        if type(value) is str and _printable_ascii(<str>value):
            encoded = PyBytes_FromStringAndSize(PyUnicode_AsUTF8AndSize(value, &n), n)
        else:
            encoded = value_of(value)
        hdrs.append((raw, encoded))
    return hdrs


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


cpdef object request_head(str method, bytes path, bytes host, bytes kept, object xff, bytes ip, bytes dyn,
                          bytes fixed, object via, long long length):
    """The request head an upstream gets (`_exchange.Exchange._encode_head` for headers the C
    encoder kept): request line, Host, the kept lines, X-Forwarded-For (the client's list `xff`,
    or None, then `ip`), the forwarded lines `dyn` and `fixed`, Via (`via`: bytes or None), and
    the framing: `length` >= 0 a Content-Length, -2 chunked, -1 none. None for a method that is
    not ASCII (a plugin's), which the Python join then encodes."""
    cdef Py_ssize_t nm, size, at = 0
    cdef const char* m
    cdef char* w
    cdef char digits[24]
    cdef int nd = 0
    if not PyUnicode_IS_ASCII(method):
        return None
    m = PyUnicode_AsUTF8AndSize(method, &nm)
    size = (nm + 1 + PyBytes_GET_SIZE(path) + 11 + 6 + PyBytes_GET_SIZE(host) + 2 + PyBytes_GET_SIZE(kept) + 17
            + PyBytes_GET_SIZE(ip) + 2 + PyBytes_GET_SIZE(dyn) + PyBytes_GET_SIZE(fixed))
    if xff is not None and PyBytes_GET_SIZE(<bytes>xff) == 0:
        xff = None  # an empty X-Forwarded-For list: as absent (the Python join's `if xff`)
    if xff is not None:
        size += PyBytes_GET_SIZE(<bytes>xff) + 2
    if via is not None:
        size += 5 + PyBytes_GET_SIZE(<bytes>via) + 2
    if length >= 0:
        nd = <int>(_dec(digits, 0, length))
        size += 16 + nd + 4
    elif length == -2:
        size += 30
    else:
        size += 2
    out = PyBytes_FromStringAndSize(NULL, size)
    w = PyBytes_AS_STRING(out)
    at = _lit(w, at, m, nm)
    w[at] = 32
    at = _put(w, at + 1, path)
    at = _lit(w, at, b" HTTP/1.1\r\nHost: ", 17)
    at = _put(w, at, host)
    at = _lit(w, at, b"\r\n", 2)
    at = _put(w, at, kept)
    at = _lit(w, at, b"X-Forwarded-For: ", 17)
    if xff is not None:
        at = _put(w, at, <bytes>xff)
        at = _lit(w, at, b", ", 2)
    at = _put(w, at, ip)
    at = _lit(w, at, b"\r\n", 2)
    at = _put(w, at, dyn)
    at = _put(w, at, fixed)
    if via is not None:
        at = _lit(w, at, b"Via: ", 5)
        at = _put(w, at, <bytes>via)
        at = _lit(w, at, b"\r\n", 2)
    if length >= 0:
        at = _lit(w, at, b"Content-Length: ", 16)
        at = _lit(w, at, digits, nd)
        at = _lit(w, at, b"\r\n\r\n", 4)
    elif length == -2:
        at = _lit(w, at, b"Transfer-Encoding: chunked\r\n\r\n", 30)
    else:
        at = _lit(w, at, b"\r\n", 2)
    if at != size:
        raise SystemError("request_head: size mismatch")
    return out
