# cython: language_level=3
"""TLS on the socket: an asyncio transport that drives OpenSSL on a non-blocking descriptor.

uvloop's SSL transport feeds every record through Python's `ssl` memory BIOs (a Python-level
read, BIO write, SSLObject.read loop per readable event); here OpenSSL reads and writes the
socket itself (`SSL_set_fd`, read-ahead on) and the protocol gets one `data_received` per
readable event with everything decrypted. The event loop only tells us when the descriptor is
readable or writable (`add_reader`/`add_writer`).

Rules:
- Contexts are Python `ssl.SSLContext`s built by `meshway.proxy._tls` (policy, certificates,
  ALPN all configured there, once); `ctx_ptr` reads the `SSL_CTX *` an `ssl.SSLContext` wraps
  (the first field after the object header in CPython's `_ssl` module; `layout_ok` checks it at
  import against the options the context reports). The process's `_ssl` and this module link
  the same libssl (both the system's), which `layout_ok` also proves.
- The listener's context gets our own servername callback (`install_sni`): it calls
  `choose(name)` (Python, once per handshake), which answers an `ssl.SSLContext` to swap in or
  an alert number. That context's ALPN callback is `_ssl`'s, which reads only the context.
- Reads: SSL_read until OpenSSL has nothing buffered, into one shared buffer (one event loop
  per thread, one reader at a time), then one `data_received`. A read that leaves nothing
  pending returns to the loop without another read() for EAGAIN: level-triggered polling
  calls us again if the socket has more.
- Writes: SSL_write at once; what the socket does not take waits in `pending` and goes when it
  is writable; `pause_writing`/`resume_writing` around the high/low water marks as asyncio's.
- close(): after the pending data, a close_notify (SSL_shutdown, once, not waiting for the
  peer's), then the descriptor closes; abort(): none of it. `connection_lost` runs from the loop.
- A handshake that fails, times out or sees EOF closes the socket without creating a protocol
  (as uvloop's); `on_failed(exc)` is told. A refused SNI sends its alert first.
- End of stream (the peer's close_notify, or a TCP close without it): `eof_received`; unless it
  answers true the transport closes. `write_eof` is refused (can_write_eof() is False).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport PyObject
from libc.stdlib cimport malloc

import ssl as _ssl

from ._openssl cimport *

cdef extern from *:
    """
    /* CPython's _ssl.c: typedef struct { PyObject_HEAD SSL_CTX *ctx; ... } PySSLContext; */
    typedef struct { PyObject_HEAD void *ctx; } meshway_PySSLContext;
    static void *meshway_ctx_of(PyObject *o) { return ((meshway_PySSLContext *)o)->ctx; }
    """
    void *meshway_ctx_of(PyObject *o)

DEF READ_SIZE = 262144
cdef char *_rbuf = <char *>malloc(READ_SIZE)
cdef int _INTERNAL_ERROR = 80  # TLS alert internal_error
cdef bint _ktls = False


def use_kernel_tls(bint on):
    """Ask OpenSSL to hand the record layer to the kernel (SSL_OP_ENABLE_KTLS) on new connections:
    only when the caller found the kernel offers it (`meshway.proxy._tlsimpl.kernel_tls`)."""
    global _ktls
    _ktls = on


cdef SSL_CTX *ctx_ptr(object ctx) except NULL:
    if not isinstance(ctx, _ssl.SSLContext):
        raise TypeError("an ssl.SSLContext is needed")
    return <SSL_CTX *>meshway_ctx_of(<PyObject *>ctx)


def layout_ok():
    """Whether the `SSL_CTX *` read from an ssl.SSLContext is the context it configures."""
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
    for extra in (_ssl.OP_NO_COMPRESSION, 0):
        ctx.options = (ctx.options & ~_ssl.OP_NO_COMPRESSION) | extra
        if SSL_CTX_get_options(ctx_ptr(ctx)) != <unsigned long>int(ctx.options):
            return False
    return True


cdef int _on_servername(SSL *s, int *alert, void *arg) noexcept with gil:
    cdef TLSTransport t = <TLSTransport>SSL_get_ex_data(s, 0)
    cdef const char *raw = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name)
    try:
        name = raw.decode("utf-8", "replace") if raw != NULL else None
        t.sni = name
        chosen = t.choose(name)
        if isinstance(chosen, int):
            alert[0] = chosen
            return SSL_TLSEXT_ERR_ALERT_FATAL
        SSL_set_SSL_CTX(s, ctx_ptr(chosen))
        t.chosen = chosen  # keeps the context alive as long as the connection
        return SSL_TLSEXT_ERR_OK
    except BaseException as e:
        t.failure = e
        alert[0] = _INTERNAL_ERROR
        return SSL_TLSEXT_ERR_ALERT_FATAL


def install_sni(ctx):
    """Make `ctx` (a listener's context, used only by this module) call `choose` per handshake."""
    SSL_CTX_set_tlsext_servername_callback(ctx_ptr(ctx), _on_servername)


cdef inline void _clear_errors() noexcept:
    # OpenSSL reads the error queue to classify a failed call, so it must start empty; it
    # nearly always is, and a peek is cheaper than ERR_clear_error's walk over the queue
    if ERR_peek_error() != 0:
        ERR_clear_error()


cdef str _ssl_error(int code):
    cdef char buf[256]
    cdef unsigned long e = ERR_peek_last_error()
    if e:
        ERR_error_string_n(e, buf, sizeof(buf))
        return buf.decode("ascii", "replace")
    return f"SSL error {code}"


cdef class SSLInfo:
    """What `get_extra_info("ssl_object")` gives the protocols: the part of ssl.SSLObject they use."""
    cdef TLSTransport t
    cdef public object meshway_sni
    cdef public bint meshway_mesh

    def __cinit__(self, TLSTransport t):
        self.t = t
        self.meshway_sni = t.sni
        self.meshway_mesh = False

    def selected_alpn_protocol(self):
        cdef const unsigned char *p = NULL
        cdef unsigned int n = 0
        if self.t.ssl == NULL:
            return None
        SSL_get0_alpn_selected(self.t.ssl, &p, &n)
        return (<const char *>p)[:n].decode("ascii") if n else None

    def version(self):
        return SSL_get_version(self.t.ssl).decode("ascii") if self.t.ssl != NULL else None

    def getpeercert(self, binary_form=False):
        cdef X509 *x
        cdef unsigned char *out = NULL
        cdef int n
        if self.t.ssl == NULL:
            return None
        x = SSL_get1_peer_certificate(self.t.ssl)
        if x == NULL:
            return None
        try:
            n = i2d_X509(x, NULL)
            if n <= 0:
                return None
            der = PyBytes_FromStringAndSize(NULL, n)
            out = <unsigned char *>PyBytes_AS_STRING(der)
            i2d_X509(x, &out)
        finally:
            X509_free(x)
        if binary_form:
            return der
        raise NotImplementedError("getpeercert() of the compiled TLS transport gives DER only")


cdef class TLSTransport:
    """An asyncio transport over OpenSSL on an accepted socket (see the module's rules)."""
    cdef SSL *ssl
    cdef int fd
    cdef object loop, sock, protocol, factory, on_failed, timer, waiter
    cdef public object choose, sni, chosen, failure
    cdef object info, extra
    cdef list pending        # bytes not yet taken by SSL_write; pending[0] may be partly sent
    cdef Py_ssize_t pending_off, pending_size, high, low
    cdef bint handshaking, reading, paused_reading, writer_on, write_paused, closing, closed
    cdef bint eof, read_wants_write, write_wants_read

    def __cinit__(self):
        self.ssl = NULL
        self.fd = -1

    def __init__(self, loop, sock, ctx, factory, choose, handshake_timeout=None, on_failed=None):
        self.loop, self.sock, self.factory, self.choose, self.on_failed = loop, sock, factory, choose, on_failed
        self.fd = sock.fileno()
        self.pending = []
        self.high, self.low = 65536, 16384
        self.extra = {}
        self.ssl = SSL_new(ctx_ptr(ctx))
        if self.ssl == NULL:
            raise MemoryError("SSL_new")
        SSL_set_ex_data(self.ssl, 0, <void *>self)
        SSL_set_fd(self.ssl, self.fd)
        SSL_set_accept_state(self.ssl)
        # the context's SSL_MODE_RELEASE_BUFFERS (set by Python's ssl) stays: an idle connection
        # keeps no 16 KiB record buffers, as on the memory-BIO path and in nginx
        SSL_set_mode(self.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        # a TCP close without close_notify is an end of stream (as uvloop's ssl transport and
        # nginx take it; HTTP frames its own messages), not an error that drops a reply in flight
        SSL_set_options(self.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF | (SSL_OP_ENABLE_KTLS if _ktls else 0))
        SSL_set_read_ahead(self.ssl, 1)
        self.handshaking = True
        self.reading = True
        if handshake_timeout:
            self.timer = loop.call_later(handshake_timeout, self._handshake_timeout)
        loop.add_reader(self.fd, self._readable)
        self._handshake()

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)
            self.ssl = NULL

    # -- handshake
    def _handshake_timeout(self):
        self.timer = None
        if self.handshaking:
            self._fail(TimeoutError("TLS handshake timed out"))

    cdef _handshake(self):
        _clear_errors()
        cdef int r = SSL_do_handshake(self.ssl)
        cdef int err
        if r == 1:
            self.handshaking = False
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self._set_writer(False)
            self._start()
            return
        err = SSL_get_error(self.ssl, r)
        if err == SSL_ERROR_WANT_READ:
            self._set_writer(False)
        elif err == SSL_ERROR_WANT_WRITE:
            self._set_writer(True)
        elif self.failure is not None:
            self._fail(self.failure)
        elif err == SSL_ERROR_SYSCALL and r == 0:
            self._fail(ConnectionResetError("EOF during the TLS handshake"))
        else:
            self._fail(_ssl.SSLError(err, _ssl_error(err)))

    cdef _fail(self, exc):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.handshaking = False
        self._teardown()
        if self.on_failed is not None:
            self.on_failed(exc)

    cdef _start(self):
        self.info = SSLInfo(self)
        self.protocol = self.factory()
        self.protocol.connection_made(self)
        if not self.closing and self.reading:
            self._read()  # records that came with the client's Finished

    # -- events
    def _readable(self):
        if self.handshaking:
            self._handshake()
        elif self.write_wants_read:
            self.write_wants_read = False
            self._flush()
            if self.closed or self.write_wants_read:
                return
            if self.reading:
                self._read()
            else:
                self.loop.remove_reader(self.fd)  # added only for the write
        elif self.reading:
            self._read()

    def _writable(self):
        if self.handshaking:
            self._handshake()
            return
        if self.read_wants_write:
            self.read_wants_write = False
            self._set_writer(bool(self.pending))
            self._read()
        if self.pending and not self.closed:
            self._flush()

    cdef _set_writer(self, bint on):
        if on and not self.writer_on and self.fd >= 0:
            self.loop.add_writer(self.fd, self._writable)
            self.writer_on = True
        elif not on and self.writer_on:
            self.loop.remove_writer(self.fd)
            self.writer_on = False

    cdef _read(self):
        cdef int n, err = SSL_ERROR_NONE
        cdef Py_ssize_t got
        while self.reading and not self.closed:
            got = 0
            _clear_errors()
            while got < READ_SIZE:
                n = SSL_read(self.ssl, _rbuf + got, READ_SIZE - got)
                if n <= 0:
                    err = SSL_get_error(self.ssl, n)
                    break
                got += n
                err = SSL_ERROR_NONE
                if not SSL_has_pending(self.ssl):
                    break
            if got:
                self.protocol.data_received(PyBytes_FromStringAndSize(_rbuf, got))
            if err == SSL_ERROR_NONE:
                if SSL_has_pending(self.ssl):
                    continue
                return
            if err == SSL_ERROR_WANT_READ:
                return
            if err == SSL_ERROR_WANT_WRITE:  # a key update or similar: go on when writable
                self.read_wants_write = True
                self._set_writer(True)
                return
            if err == SSL_ERROR_ZERO_RETURN or (err == SSL_ERROR_SYSCALL and n == 0):
                self._eof()
                return
            self._lost(ConnectionResetError(_ssl_error(err)) if err == SSL_ERROR_SYSCALL
                       else _ssl.SSLError(err, _ssl_error(err)))
            return

    cdef _eof(self):
        self.eof = True
        self._stop_reading()
        keep = False
        try:
            keep = self.protocol.eof_received()
        except BaseException as e:
            self._lost(e)
            return
        if not keep and not self.closing:
            self.close()

    # -- asyncio.Transport
    def get_extra_info(self, name, default=None):
        if name == "ssl_object":
            return self.info
        if name == "socket":
            return self.sock
        if name == "peername" or name == "sockname":
            if name not in self.extra:
                try:
                    self.extra[name] = self.sock.getpeername() if name == "peername" else self.sock.getsockname()
                except OSError:
                    self.extra[name] = None
            return self.extra[name] if self.extra[name] is not None else default
        if name == "sslcontext":
            return self.chosen
        return default

    def get_protocol(self):
        return self.protocol

    def set_protocol(self, protocol):
        self.protocol = protocol

    def is_closing(self):
        return self.closing

    def is_reading(self):
        return self.reading and not self.closing

    cdef _stop_reading(self):
        if self.reading:
            self.reading = False
            if self.fd >= 0 and not self.write_wants_read:
                self.loop.remove_reader(self.fd)

    def pause_reading(self):
        if self.closing:
            return
        self._stop_reading()

    def resume_reading(self):
        if self.reading or self.closing or self.eof:
            return
        self.reading = True
        if not self.write_wants_read:
            self.loop.add_reader(self.fd, self._readable)
        if SSL_has_pending(self.ssl):  # decrypted or read-ahead bytes the socket will not announce
            self.loop.call_soon(self._read_soon)

    def _read_soon(self):
        if self.reading and not self.closed:
            self._read()

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 65536 if low is None else 4 * low
        if low is None:
            low = high // 4
        self.high, self.low = high, low
        self._check_high()

    def get_write_buffer_limits(self):
        return (self.low, self.high)

    def get_write_buffer_size(self):
        return self.pending_size

    def can_write_eof(self):
        return False

    def write_eof(self):
        raise NotImplementedError("a TLS transport cannot half-close")

    def write(self, data):
        if self.closing or self.closed:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        if not data:
            return
        self.pending.append(data)
        self.pending_size += PyBytes_GET_SIZE(data)
        if len(self.pending) == 1 and not self.writer_on and not self.write_wants_read:
            self._flush()
        if self.pending:
            self._check_high()

    def writelines(self, lines):
        self.write(b"".join(lines))

    cdef _check_high(self):
        if not self.write_paused and self.pending_size > self.high and self.protocol is not None:
            self.write_paused = True
            self.protocol.pause_writing()

    cdef _flush(self):
        cdef bytes head
        cdef int n, err
        cdef Py_ssize_t left
        while self.pending:
            head = self.pending[0]
            left = PyBytes_GET_SIZE(head) - self.pending_off
            _clear_errors()
            n = SSL_write(self.ssl, PyBytes_AS_STRING(head) + self.pending_off,
                          <int>min(left, 1 << 30))
            if n > 0:
                self.pending_size -= n
                if n == left:
                    self.pending.pop(0)
                    self.pending_off = 0
                else:
                    self.pending_off += n
                continue
            err = SSL_get_error(self.ssl, n)
            if err == SSL_ERROR_WANT_WRITE:
                self._set_writer(True)
                break
            if err == SSL_ERROR_WANT_READ:
                self.write_wants_read = True
                if not self.reading:
                    self.loop.add_reader(self.fd, self._readable)
                break
            self._lost(BrokenPipeError(_ssl_error(err)) if err == SSL_ERROR_SYSCALL
                       else _ssl.SSLError(err, _ssl_error(err)))
            return
        if not self.pending:
            self._set_writer(self.read_wants_write)
        if self.write_paused and self.pending_size <= self.low:
            self.write_paused = False
            self.protocol.resume_writing()
        if self.closing and not self.pending and not self.closed:
            self._shutdown()
            self._lost(None)

    def close(self):
        if self.closing:
            return
        self.closing = True
        self._stop_reading()
        if not self.pending:
            self._shutdown()
            self._lost(None)

    def abort(self):
        self.closing = True
        self._lost(None)

    cdef _shutdown(self):
        if self.ssl != NULL and not self.handshaking and SSL_is_init_finished(self.ssl):
            _clear_errors()
            SSL_shutdown(self.ssl)  # our close_notify; not waiting for the peer's

    cdef _teardown(self):
        if self.fd >= 0:
            if self.reading or self.write_wants_read or self.handshaking:
                self.loop.remove_reader(self.fd)
            if self.writer_on:
                self.loop.remove_writer(self.fd)
            self.writer_on = False
            self.reading = False
            self.fd = -1
        self.closed = True
        self.closing = True
        self.pending = []
        self.pending_size = 0
        try:
            self.sock.close()
        except OSError:
            pass

    cdef _lost(self, exc):
        if self.closed:
            return
        self._teardown()
        if self.protocol is not None:
            self.loop.call_soon(self._call_lost, exc)

    def _call_lost(self, exc):
        protocol, self.protocol = self.protocol, None
        try:
            protocol.connection_lost(exc)
        finally:
            self.info = None
