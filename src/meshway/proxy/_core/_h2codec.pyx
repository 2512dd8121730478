# cython: language_level=3, boundscheck=False, wraparound=False
"""The HTTP/2 server connection's per-request codec in C: frames, HPACK, request heads.

Each function is byte for byte (or field for field, error for error) its Python twin, which
stays the reference and the pure path (`http2_impl = python`):
- `new_stream_frames`: `_h2conn.FastH2Connection._new_stream_frames` (a read that is only
  HEADERS frames each opening a client stream in one frame);
- `header_frames`: `_hpack.FastEncoder.encode` + `_h2conn._header_frames` (HPACK without the
  dynamic table or Huffman coding, framed as HEADERS + CONTINUATION);
- `data_frame`: a DATA frame's 9-byte head added to the connection's output buffer;
- `response_fields`: `_headers.encode_response` (it returns None for a field list the Python
  cleaner must handle: a connection-specific or pseudo name, a field that is not two bytes);
- `decode_request`: `_headers.decode_request` (RFC 9113 8.2/8.3 checks, the same messages);
- `first_value`: the first value of a header named (in any case) `low`.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.string cimport memcmp, memcpy, memmove

from hpack.table import HeaderTable

__all__ = ["data_frame", "decode_request", "first_value", "header_frames", "new_stream_frames", "response_fields"]

# -- frames --------------------------------------------------------------------------------

cdef inline void _head(char* out, Py_ssize_t length, int kind, int flags, unsigned long sid) noexcept:
    out[0] = <char>((length >> 16) & 0xFF)
    out[1] = <char>((length >> 8) & 0xFF)
    out[2] = <char>(length & 0xFF)
    out[3] = <char>kind
    out[4] = <char>flags
    out[5] = <char>((sid >> 24) & 0xFF)
    out[6] = <char>((sid >> 16) & 0xFF)
    out[7] = <char>((sid >> 8) & 0xFF)
    out[8] = <char>(sid & 0xFF)


def data_frame(bytearray buf, Py_ssize_t size, bint end, unsigned long sid):
    """Append a DATA frame's head (`size` payload bytes, END_STREAM if `end`) to `buf`."""
    cdef Py_ssize_t at = PyByteArray_GET_SIZE(buf)
    PyByteArray_Resize(buf, at + 9)
    _head(PyByteArray_AS_STRING(buf) + at, size, 0x0, 0x1 if end else 0x0, sid)


def new_stream_frames(bytes data, long long last, Py_ssize_t limit, dict streams):
    """(stream id, END_STREAM, payload start, payload end) per frame when `data` is whole HEADERS
    frames each opening a new client stream in one frame (END_HEADERS, no padding or priority);
    None for anything else."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data), at = 0, length
    cdef unsigned long long sid
    cdef int flags
    cdef list out = []
    while at < size:
        if size - at < 9:
            return None
        length = (<Py_ssize_t>s[at] << 16) | (<Py_ssize_t>s[at + 1] << 8) | s[at + 2]
        flags = s[at + 4]
        sid = ((<unsigned long long>s[at + 5] << 24) | (<unsigned long long>s[at + 6] << 16)
               | (<unsigned long long>s[at + 7] << 8) | s[at + 8])
        if (s[at + 3] != 0x1 or flags & 0xFA or not flags & 0x4 or length > limit or size - at - 9 < length
                or not sid & 1 or <long long>sid <= last):
            return None
        if PyDict_GetItem(streams, sid) != NULL:
            return None
        out.append((sid, bool(flags & 0x1), at + 9, at + 9 + length))
        last = <long long>sid
        at += 9 + length
    return out or None


# -- HPACK (encoder: no dynamic table, no Huffman; `_hpack`'s rules) ------------------------

cdef dict _FULL = {}
cdef dict _NAME = {}
for _i, _entry in reversed(list(enumerate(HeaderTable.STATIC_TABLE, 1))):
    _FULL[_entry] = _i
    _NAME[_entry[0]] = _i
cdef dict _FIELDS = {}  # encoded fields by (name, value): the same in every block
DEF _CACHE_MAX = 4096
DEF _CACHED_FIELD_MAX = 256


cdef inline Py_ssize_t _int(char* out, Py_ssize_t at, Py_ssize_t value, int bits, int flags) noexcept:
    cdef Py_ssize_t limit = (1 << bits) - 1
    if value < limit:
        out[at] = <char>(flags | value)
        return at + 1
    out[at] = <char>(flags | limit)
    at += 1
    value -= limit
    while value >= 128:
        out[at] = <char>((value & 0x7F) | 0x80)
        at += 1
        value >>= 7
    out[at] = <char>value
    return at + 1


cdef inline Py_ssize_t _literal(char* out, Py_ssize_t at, bytes data) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    at = _int(out, at, n, 7, 0)
    memcpy(out + at, PyBytes_AS_STRING(data), n)
    return at + n


cdef bytes _encode_field(bytes name, bytes value):
    cdef object idx = _FULL.get((name, value))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 24)
    cdef char* o = PyBytes_AS_STRING(out)
    cdef Py_ssize_t at
    if idx is not None:
        at = _int(o, 0, idx, 7, 0x80)
    else:
        idx = _NAME.get(name)
        if idx is not None:
            at = _literal(o, _int(o, 0, idx, 4, 0x00), value)
        else:
            o[0] = 0
            at = _literal(o, _literal(o, 1, name), value)
    return out[:at]


cdef bytes _field(object field):
    """The field's encoding, cached; None when it is not a pair of bytes."""
    cdef PyObject* hit = PyDict_GetItem(_FIELDS, field) if isinstance(field, tuple) else NULL
    if hit != NULL:
        return <bytes>hit
    if len(field) != 2:
        return None
    name, value = field[0], field[1]
    if type(name) is not bytes or type(value) is not bytes:
        return None
    cdef bytes out = _encode_field(name, value)
    if PyBytes_GET_SIZE(out) <= _CACHED_FIELD_MAX:
        if len(_FIELDS) >= _CACHE_MAX:
            _FIELDS.clear()
        _FIELDS[(name, value)] = out
    return out


def header_frames(list headers, unsigned long sid, bint end, Py_ssize_t max_size, bint announce):
    """HEADERS (+ CONTINUATION) frames of the block for `headers` (a size update to 0 first if
    `announce`); None when a field is not a pair of bytes (the caller's Python path)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(headers), i, total = 1 if announce else 0, at, chunk, frames
    cdef list parts = [None] * n
    cdef bytes enc
    for i in range(n):
        enc = _field(<object>PyList_GET_ITEM(headers, i))
        if enc is None:
            return None
        parts[i] = enc
        total += PyBytes_GET_SIZE(enc)
    frames = 1 if total <= max_size else (total + max_size - 1) // max_size
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total + 9 * frames)
    cdef char* o = PyBytes_AS_STRING(out)
    cdef char* block = o + 9 * frames  # the block is written at the end, then moved into frames
    at = 0
    if announce:
        block[0] = 0x20
        at = 1
    for i in range(n):
        enc = <bytes>PyList_GET_ITEM(parts, i)
        memcpy(block + at, PyBytes_AS_STRING(enc), PyBytes_GET_SIZE(enc))
        at += PyBytes_GET_SIZE(enc)
    if frames == 1:
        _head(o, total, 0x1, 0x4 | (0x1 if end else 0x0), sid)
        return out
    # Frame i's payload starts at 9*(i+1) + i*max_size; its bytes sit at 9*frames + i*max_size.
    # Moving front to back never overwrites bytes not yet moved (destination <= source; they may overlap).
    at = 0
    for i in range(frames):
        chunk = max_size if i < frames - 1 else total - i * max_size
        if i == 0:
            _head(o, chunk, 0x1, 0x1 if end else 0x0, sid)
        else:
            _head(o + at, chunk, 0x9, 0x4 if i == frames - 1 else 0x0, sid)
        memmove(o + at + 9, block + i * max_size, chunk)
        at += 9 + chunk
    return out


# -- response fields (`_headers.encode_response`) -------------------------------------------

cdef inline bint _is(const char* s, Py_ssize_t n, const char* lit, Py_ssize_t m) noexcept:
    return n == m and memcmp(s, lit, n) == 0


cdef bint _connection_specific(const char* s, Py_ssize_t n) noexcept:
    """`_headers.CONNECTION_SPECIFIC` membership of a lowercase name."""
    return (_is(s, n, b"te", 2) or _is(s, n, b"host", 4) or _is(s, n, b"upgrade", 7)
            or _is(s, n, b"keep-alive", 10) or _is(s, n, b"connection", 10)
            or _is(s, n, b"content-length", 14) or _is(s, n, b"proxy-connection", 16)
            or _is(s, n, b"transfer-encoding", 17))


cdef bytes _lower(bytes name):
    """`name.lower()` (ASCII), the same object when it has no capital."""
    cdef const char* s = PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name), i, j
    cdef bytes out
    cdef char* o
    for i in range(n):
        if 65 <= s[i] <= 90:
            out = PyBytes_FromStringAndSize(s, n)
            o = PyBytes_AS_STRING(out)
            for j in range(i, n):
                if 65 <= o[j] <= 90:
                    o[j] = o[j] + 32
            return out
    return name


cdef inline bint _splits(bytes value) noexcept:
    """A CR, LF or NUL in the value (never framed: outbound validation is off)."""
    cdef const char* s = PyBytes_AS_STRING(value)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(value)):
        if s[i] == 10 or s[i] == 13 or s[i] == 0:
            return True
    return False


cdef object _pair(object field):
    """(name, value) of a 2-item tuple or list of bytes, else None."""
    if type(field) is tuple or type(field) is list:
        if len(field) == 2:
            name, value = field[0], field[1]
            if type(name) is bytes and type(value) is bytes:
                return name, value
    return None


def response_fields(long long status, object headers, object extra, object content_length):
    """`encode_response(status, headers, extra, content_length)`; None when `headers` is not a
    list of byte pairs or holds a connection-specific or pseudo name (the Python cleaner then
    runs: one implementation of the Connection rule)."""
    cdef list out = [(b":status", b"%d" % status)]
    cdef bytes low
    if type(headers) is not list:
        return None
    for field in <list>headers:
        pair = _pair(field)
        if pair is None:
            return None
        low = _lower(<bytes>pair[0])
        if (PyBytes_GET_SIZE(low) and PyBytes_AS_STRING(low)[0] == 58) or _connection_specific(
                PyBytes_AS_STRING(low), PyBytes_GET_SIZE(low)):
            return None
        if _splits(<bytes>pair[1]):
            continue
        out.append((low, pair[1]) if low is not pair[0] or type(field) is not tuple else field)
    for field in extra:
        name, value = field
        out.append((name.lower(), value))
    if content_length is not None:
        out.append((b"content-length", content_length))
    return out


def first_value(object headers, bytes low):
    """`next((v for k, v in headers if k.lower() == low), None)` for byte names (`low`: lowercase)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(low), i
    cdef const char* want = PyBytes_AS_STRING(low)
    cdef const char* s
    cdef char c
    for field in headers:
        name, value = field
        if type(name) is not bytes or PyBytes_GET_SIZE(name) != n:
            if type(name) is not bytes:
                if name.lower() == low:
                    return value
            continue
        s = PyBytes_AS_STRING(name)
        for i in range(n):
            c = s[i]
            if 65 <= c <= 90:
                c = c + 32
            if c != want[i]:
                break
        else:
            return value
    return None


# -- request heads (`_headers.decode_request`) ----------------------------------------------

cdef class RequestHead:
    """`_headers.RequestHead`, filled in C."""
    cdef public object method, scheme, authority, url, headers, content_length, content_type, te_trailers, referer, ua
    version = "2.0"  # for the access log

    def __init__(self):
        self.method = "GET"
        self.scheme = "http"
        self.authority = None
        self.url = b"/"
        self.headers = []
        self.content_length = None
        self.content_type = None
        self.te_trailers = False
        self.referer = b"-"
        self.ua = b"-"


cdef object Malformed = None


def bind(malformed):
    """The exception class of `_headers` (`Malformed`), raised as the Python decoder raises it."""
    global Malformed
    Malformed = malformed


# Bytes allowed in a field name (`[!#$%&'*+\-.^_`|~0-9a-z]`) and in a token (the same with A-Z).
cdef unsigned char _NAMECH[256]
cdef unsigned char _TOKENCH[256]
for _c in range(256):
    _NAMECH[_c] = (chr(_c) in "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
    _TOKENCH[_c] = _NAMECH[_c] or (65 <= _c <= 90)


cdef bint _token(bytes b, unsigned char* table) noexcept:
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b), i
    if n == 0:
        return False
    for i in range(n):
        if not table[s[i]]:
            return False
    return True


cdef bint _value_bad(bytes b) noexcept:
    """`_VALUE_BAD`: NUL, CR or LF anywhere, space or tab first or last."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b), i
    if n == 0:
        return False
    if s[0] == 32 or s[0] == 9 or s[n - 1] == 32 or s[n - 1] == 9:
        return True
    for i in range(n):
        if s[i] == 0 or s[i] == 10 or s[i] == 13:
            return True
    return False


cdef bint _target_bad(bytes b) noexcept:
    """`_TARGET_BAD`: a control character, a space or DEL."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(b)):
        if s[i] <= 0x20 or s[i] == 0x7f:
            return True
    return False


cdef bint _digits(bytes b) noexcept:
    """`bytes.isdigit()`."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b), i
    if n == 0:
        return False
    for i in range(n):
        if not 48 <= s[i] <= 57:
            return False
    return True


DEF _P_METHOD = 1
DEF _P_SCHEME = 2
DEF _P_AUTHORITY = 4
DEF _P_PATH = 8

cdef dict _METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}


cdef int _pseudo_of(bytes name) noexcept:
    cdef const char* s = PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    if _is(s, n, b":method", 7):
        return _P_METHOD
    if _is(s, n, b":path", 5):
        return _P_PATH
    if _is(s, n, b":scheme", 7):
        return _P_SCHEME
    if _is(s, n, b":authority", 10):
        return _P_AUTHORITY
    return 0


cdef object _pseudo(RequestHead head, int which, bytes value):
    cdef object method
    if which == _P_METHOD:
        method = _METHODS.get(value)
        if method is None:
            if not _token(value, _TOKENCH):
                raise Malformed("invalid :method")
            method = value.decode("latin-1")
        head.method = method
    elif which == _P_PATH:
        if _target_bad(value):
            raise Malformed("control character or space in :path or :authority")
        head.url = value
    elif which == _P_AUTHORITY:
        if _target_bad(value):
            raise Malformed("control character or space in :path or :authority")
        head.authority = value.decode("latin-1")
    else:
        if value == b"https":
            head.scheme = "https"
        elif value == b"http":
            head.scheme = "http"
        elif not _token(value, _TOKENCH):
            raise Malformed("invalid :scheme")
        else:
            head.scheme = value.decode("latin-1")


cdef object _check_field(bytes name, bytes value):
    if not _token(name, _NAMECH):
        raise Malformed(f"invalid field name {name[:64]!r}")
    if _value_bad(value):
        raise Malformed(f"invalid value in field {name[:64]!r}")
    cdef const char* s = PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    if (_is(s, n, b"connection", 10) or _is(s, n, b"keep-alive", 10) or _is(s, n, b"proxy-connection", 16)
            or _is(s, n, b"transfer-encoding", 17) or _is(s, n, b"upgrade", 7)):
        raise Malformed(f"connection-specific field {name!r}")
    if _is(s, n, b"te", 2) and value != b"trailers":
        raise Malformed("te other than trailers")


def decode_request(object block):
    """`_headers.decode_request(block)`: the same head, or the same exception and message."""
    cdef RequestHead head = RequestHead.__new__(RequestHead)
    head.method, head.scheme, head.authority, head.url = "GET", "http", None, b"/"
    head.content_length = head.content_type = None
    head.te_trailers = False
    head.referer = head.ua = b"-"
    cdef list headers = []
    head.headers = headers
    cdef list cookies = None
    cdef object host = None
    cdef int seen = 0, which
    cdef bint regular = False
    cdef bytes name, value
    cdef const char* s
    cdef Py_ssize_t n
    for field in block:
        name, value = field  # as the Python loop unpacks (a TypeError for what is not bytes)
        s = PyBytes_AS_STRING(name)
        n = PyBytes_GET_SIZE(name)
        if n and s[0] == 58:  # ':'
            which = _pseudo_of(name)
            if regular or not which or seen & which:
                raise Malformed(f"misplaced, repeated or unknown pseudo-header {name!r}")
            seen |= which
            _pseudo(head, which, value)
            continue
        regular = True
        _check_field(name, value)
        if _is(s, n, b"cookie", 6):
            if cookies is None:
                cookies = []
            cookies.append(value)
            continue
        if _is(s, n, b"host", 4):
            host = value.decode("latin-1")
        elif _is(s, n, b"content-length", 14):
            if not _digits(value) or (head.content_length is not None and head.content_length != int(value)):
                raise Malformed("invalid content-length")
            head.content_length = int(value)
        elif _is(s, n, b"content-type", 12):
            head.content_type = value
        elif _is(s, n, b"te", 2):
            head.te_trailers = True
        elif _is(s, n, b"user-agent", 10):
            head.ua = value
        elif _is(s, n, b"referer", 7):
            head.referer = value
        headers.append((name, value))
    if head.method == "CONNECT" or head.method == "TRACE":  # 405, as on HTTP/1.1
        raise ValueError(f"{head.method} is not supported")
    if seen & (_P_METHOD | _P_SCHEME | _P_PATH) != (_P_METHOD | _P_SCHEME | _P_PATH) or not head.url:
        raise Malformed("missing :method, :scheme or :path")
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if head.authority is None:
        head.authority = host
    return head
