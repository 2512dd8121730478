"""The compiled HTTP/1.1 parser (`meshway.proxy._core._h1parse`) against httptools, which the
pure-Python path drives: for every input, fed whole and split at every byte, both must produce
the same request/response heads, bodies, trailers and completions, and fail with the same
exception class and message (the proxy maps those to its 400/414/431/505 answers)."""
from __future__ import annotations

import random

import httptools
import pytest

from meshway.proxy import _core
from meshway.proxy._headers import _simple_connection, encode_request_headers, encode_response_headers
from meshway.proxy._core import _h1parse


class Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


LIMIT = 64


class PyRequest:
    """httptools' protocol, folding events the way `_http1.H1Server` does (limits included)."""

    def __init__(self) -> None:
        self.events: list = []
        self.url = b""
        self.headers: list = []
        self.left = 4 * LIMIT
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.url, self.headers, self.left = b"", [], 4 * LIMIT

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > LIMIT:
            raise Reject(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        n = len(name) + len(value)
        self.left -= n
        if self.headers is None:
            self.events.append(("trailer", name, value))
        else:
            self.headers.append((name, value))
        if self.left < 0 or n > LIMIT:
            raise Reject(431, "section" if self.left < 0 else "field")

    def on_headers_complete(self) -> None:
        p = self.parser
        self.events.append(("head", self.url, self.headers, p.get_method().decode(), p.get_http_version(),
                            p.should_keep_alive(), p.should_upgrade()))
        self.headers = None

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_message_complete(self) -> None:
        self.events.append(("complete",))


class CRequest:
    """The compiled parser's protocol: one `on_head` per head."""

    def __init__(self) -> None:
        self.events: list = []
        self.begun = 0
        self.parser = _h1parse.RequestParser(self, lambda status, why: Reject(status, {
            "request header section too long": "section", "request header too long": "field"}.get(why, why)), LIMIT)

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_head(self, url, headers, head_left, method, version, keep_alive, upgrade, host, host_count, special,
                kept, plain, complete) -> None:
        self.events.append(("head", url, headers, method, version, keep_alive, upgrade))
        if complete:  # no body: the parser will not call on_message_complete
            self.events.append(("complete",))
        assert kept == (None if upgrade else _h1parse.encode_request_headers(headers))
        hosts = [v for k, v in headers if k.lower() == b"host"]
        assert host_count == len(hosts) and host == (hosts[-1].decode("latin-1") if hosts else None)
        assert head_left == 4 * LIMIT - sum(len(k) + len(v) for k, v in headers)
        names = {k.lower() for k, _ in headers}
        # `plain` promises that none of `H1Server._validate`'s checks can fail
        assert plain == (len(hosts) == 1 and version in ("1.0", "1.1") and method not in ("CONNECT", "TRACE")
                         and not names & {b"content-length", b"transfer-encoding", b"expect", b"user-agent",
                                          b"referer"})

    def on_header(self, name: bytes, value: bytes) -> None:
        self.events.append(("trailer", name, value))

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_message_complete(self) -> None:
        self.events.append(("complete",))


def _run(proto, pieces: list[bytes]) -> tuple[list, tuple | None]:
    try:
        for piece in pieces:
            proto.parser.feed_data(piece)
    except Exception as e:  # noqa: BLE001 - compared below
        ctx = e.__context__
        return _merge(proto.events), (type(e).__name__, str(e), getattr(ctx, "status", None))
    return _merge(proto.events), None


def _merge(events: list) -> list:
    """Body pieces joined: how llhttp cuts a body depends on the reads, not on the parser."""
    out: list = []
    for ev in events:
        if ev[0] == "body" and out and out[-1][0] == "body":
            out[-1] = ("body", out[-1][1] + ev[1])
        else:
            out.append(ev)
    return out


REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nUser-Agent: curl\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: b\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframe",
    b"GET / HTTP/1.1\r\nhOsT: a\r\nHost: b\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/3.0\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    b"GET /" + b"a" * 80 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 70 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Many: 123456789012345678901234567890\r\n" * 8 + b"\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"FOO / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n Folded: x\r\n\r\n",
]


@pytest.mark.parametrize("data", REQUESTS, ids=range(len(REQUESTS)))
def test_request_parser_matches_httptools(data: bytes) -> None:
    for cut in [None, *range(1, len(data))]:
        pieces = [data] if cut is None else [data[:cut], data[cut:]]
        assert _run(CRequest(), pieces) == _run(PyRequest(), pieces), (data, cut)


def test_begin_called_only_for_a_head_split_over_reads() -> None:
    proto = CRequest()
    proto.parser.feed_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHo")
    assert proto.begun == 1 and [e[0] for e in proto.events] == ["head", "complete"]
    proto.parser.feed_data(b"st: b\r\n\r\n")
    assert proto.begun == 1 and proto.events[-2][1] == b"/2"


class PyResponse:
    def __init__(self) -> None:
        self.events: list = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.headers, self.reason = [], b""

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.events.append(("head", p.get_status_code(), p.should_keep_alive(), self.headers, self.reason))

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_message_complete(self) -> None:
        self.events.append(("complete",))


class CResponse(PyResponse):
    def __init__(self) -> None:
        self.events = []
        self.parser = _h1parse.ResponseParser(self)

    def on_head(self, status, keep_alive, headers, reason, encoded) -> None:
        self.events.append(("head", status, keep_alive, headers, reason))
        assert encoded == encode_response_headers(headers)


RESPONSES = [
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
    b"HTTP/1.1 404 Not Found Here\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nX: y\r\n\r\nclose-delimited",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
]


@pytest.mark.parametrize("data", RESPONSES, ids=range(len(RESPONSES)))
def test_response_parser_matches_httptools(data: bytes) -> None:
    for cut in [None, *range(1, len(data))]:
        pieces = [data] if cut is None else [data[:cut], data[cut:]]
        assert _run(CResponse(), pieces) == _run(PyResponse(), pieces), (data, cut)


def test_http1_impl_selects_the_parser() -> None:
    assert _core.available(), "the compiled core is not built: run scripts/install.sh (it needs gcc and the Python headers)"
    try:
        _core.select("python")
        assert isinstance(_core.request_parser(CRequest(), Reject, LIMIT), httptools.HttpRequestParser)
        _core.select("auto")
        assert isinstance(_core.request_parser(CRequest(), Reject, LIMIT), _h1parse.RequestParser)
        assert isinstance(_core.response_parser(CResponse()), _h1parse.ResponseParser)
    finally:
        _core.select("auto")


NAMES = [b"Server", b"content-length", b"Content-Length", b"Connection", b"CONNECTION", b"Keep-Alive", b"TE",
         b"Trailer", b"Transfer-Encoding", b"Upgrade", b"Proxy-Authenticate", b"proxy-x", b"Host", b"close",
         b"X-Forwarded-For", b"X_Under", b"Set-Cookie", b"Proxy", b"Date", b"X-Custom"]
VALUES = [b"1", b"keep-alive", b"close", b"Keep-Alive, Upgrade", b" close ,keep-alive", b"keep-alive,",
          b"X-Custom", b"close, Server", b"\tupgrade\x0b", b"chunked", b"a b"]


def test_response_header_encoder_matches_the_python_policy() -> None:
    """What the compiled parser hands the relay is the Python function's answer, or None where
    the relay runs the Python function (a Connection header naming other headers)."""
    rnd = random.Random(17)
    general = 0
    for _ in range(5000):
        headers = [(rnd.choice(NAMES), rnd.choice(VALUES)) for _ in range(rnd.randrange(0, 7))]
        got = _h1parse.encode_response_headers(headers)
        if got is None:
            general += 1
            conn = [v for k, v in headers if k.lower() == b"connection"]
            assert any(k.lower() == b"close" for k, _ in headers) or not _simple_connection(b",".join(conn))
            continue
        assert got == encode_response_headers(headers), headers
    assert 0 < general < 5000


def test_response_header_pairs_and_lines_match_the_python_policy() -> None:
    """What plugins get to see and change of a response head (`downstream_response_headers`)
    and the lines their result becomes (`_relay._wire`), made in C: the Python functions'
    answers, or None where the Python function runs."""
    from meshway.proxy._headers import downstream_response_headers
    from meshway.proxy._relay import _wire

    rnd = random.Random(19)
    general = 0
    for _ in range(5000):
        headers = [(rnd.choice(NAMES), rnd.choice(VALUES)) for _ in range(rnd.randrange(0, 7))]
        got = _h1parse.response_header_pairs(headers)
        if got is None:
            general += 1
            assert _h1parse.encode_response_headers(headers) is None
            continue
        assert got == downstream_response_headers(headers), headers
        assert _h1parse.header_lines(got) == _wire(got)
    assert 0 < general < 5000
    assert _h1parse.header_lines([]) == b""
    with pytest.raises(TypeError):  # a plugin's str value: the same error as the Python join
        _h1parse.header_lines([(b"X-A", "text")])


REQUEST_NAMES = NAMES + [b"X-Forwarded-Proto", b"x-forwarded-host", b"X-Forwarded-Port", b"X-Forwarded-Path",
                         b"X-Forwarded-Prefix", b"X-Real-IP", b"x-forwarded-server", b"HOST", b"Accept", b"Cookie"]


def test_request_header_encoder_matches_the_python_policy() -> None:
    """The upstream request head the exchange builds from the compiled parser's part
    (`_exchange._encode_head`) is byte for byte the Python function's."""
    rnd = random.Random(7)
    general = 0
    for _ in range(5000):
        headers = [(rnd.choice(REQUEST_NAMES), rnd.choice(VALUES)) for _ in range(rnd.randrange(0, 7))]
        got = _h1parse.encode_request_headers(headers)
        want = encode_request_headers(headers, b"up:8080", b"10.0.0.1", b"FIXED\r\n", b"DYN\r\n", via=b"1.1 mw")
        if got is None:
            general += 1
            assert any(b"_" in k or k.lower() == b"close" for k, _ in headers) or want is None
            continue
        kept, xff = got
        assert b"".join((b"Host: up:8080\r\n", kept, b"X-Forwarded-For: ", xff + b", 10.0.0.1" if xff else b"10.0.0.1",
                         b"\r\nDYN\r\nFIXED\r\nVia: 1.1 mw\r\n")) == want, headers
    assert 0 < general < 5000


def test_request_head_in_c_matches_the_python_join() -> None:
    """The upstream request head made in one C buffer is `Exchange._encode_head`'s Python join of
    the same parts (None for a method outside ASCII, which the join then takes)."""
    from meshway.proxy._relay import _via_line

    rnd = random.Random(23)
    for _ in range(3000):
        method = rnd.choice(["GET", "POST", "PROPFIND", "M\u00e9"])
        path, host = rnd.choice([b"/", b"/a/b?q=1", b"/" + b"x" * 300]), rnd.choice([b"up:8080", b"[::1]:80"])
        kept = b"".join(b"%s: %s\r\n" % (rnd.choice(REQUEST_NAMES), rnd.choice(VALUES)) for _ in range(rnd.randrange(4)))
        xff, ip = rnd.choice([None, b"", b"1.2.3.4", b"1.2.3.4, 5.6.7.8"]), rnd.choice([b"127.0.0.1", b"::1"])
        dyn, fixed = b"X-Forwarded-Host: h\r\nX-Forwarded-Path: /\r\n", b"X-Forwarded-Proto: http\r\n"
        via, length = rnd.choice([None, b"1.1 meshway/0.1.0"]), rnd.choice([-1, -2, 0, 5, 1 << 40])
        got = _h1parse.request_head(method, path, host, kept, xff, ip, dyn, fixed, via, length)
        if not method.isascii():
            assert got is None
            continue
        framing = (b"Content-Length: %d\r\n\r\n" % length if length >= 0 else
                   b"Transfer-Encoding: chunked\r\n\r\n" if length == -2 else b"\r\n")
        want = b"".join((method.encode("latin-1"), b" ", path, b" HTTP/1.1\r\n", b"Host: ", host, b"\r\n", kept,
                         b"X-Forwarded-For: ", xff + b", " + ip if xff else ip, b"\r\n", dyn, fixed,
                         b"" if via is None else _via_line(via), framing))
        assert got == want


def test_access_line_in_c_matches_the_python_format() -> None:
    """The compiled access-log line is the Python format's bytes, and leaves lines with bytes to
    escape (or over 2 KiB) to it."""
    from meshway.proxy._accesslog import _py_line
    from meshway.proxy._core import _fmt

    rnd = random.Random(3)
    texts = [b"/", b"/a?b=c", b"-", b"curl/8.0", b"Mozilla/5.0 (X11)", b'say "hi"', b"back\\slash", b"\xff\x00",
             b"x" * 3000, b"http://ref/"]
    left = 0
    for _ in range(3000):
        t0 = rnd.uniform(0, 1e6)
        t_sent = rnd.choice([0.0, t0 + rnd.uniform(0, 2)])
        t_headers = rnd.choice([0.0, (t_sent or t0) + rnd.uniform(0, 5)])
        fields = (rnd.choice([b"127.0.0.1", b"::1"]), b"07/Dec/2026:06:40:00 +0000", rnd.choice([b"GET", b"POST"]),
                  rnd.choice(texts), rnd.choice([b"1.1", b"1.0", b"2"]), rnd.choice([200, 404, 499, 502]),
                  rnd.choice([0, 5, 1 << 40]), rnd.choice(texts), rnd.choice(texts), t0, t_sent, t_headers,
                  max(t0, t_sent, t_headers) + rnd.uniform(0, 0.5), rnd.choice([b"", b" mtls=yes peer=spiffe://a/b"]))
        got = _fmt.access_line(*fields)
        if not fields[-1]:  # the HTTP/1.1 exchange's form: method and version as str, no mesh field
            h1 = list(fields[:-1])
            h1[2], h1[4] = h1[2].decode(), h1[4].decode()
            assert _fmt.access_line_h1(*h1) == got
        if got is None:
            left += 1
            assert any(t in fields for t in (b'say "hi"', b"back\\slash", b"\xff\x00", b"x" * 3000))
        else:
            assert got == _py_line(*fields), fields
    assert 0 < left < 3000


def test_get_header_in_c_matches_the_python_context() -> None:
    """`Context.get_header` in C (`header_value`) finds what the pure path finds: the first
    header of that name in any case, None when absent, latin-1 text; a name a plugin added as
    text (not bytes) is compared as the Python loop compares it."""
    from meshway.proxy._context import Context

    present = [b"Host", b"apikey", b"APIKEY", b"X-Api-Key", b"Authorization", b"x-\xe9", b"", b"api-key"]
    asked = ["apikey", "ApiKey", "x-api-key", "authorization", "x-\xe9", "api_key", "", "host", "X Bad:Name"]
    rnd = random.Random(29)
    try:
        for _ in range(3000):
            headers = [(rnd.choice(present), b"v%d\xff" % i) for i in range(rnd.randrange(0, 6))]
            if rnd.random() < 0.1:
                headers.append(("apikey", b"text-name"))
            name = rnd.choice(asked)
            results = []
            for core in (_h1parse, None):
                _core.compiled = core
                ctx = Context(None, "10.0.0.1", "GET", "http", "h", "/", "", list(headers), None, None, {}, 0.0)
                results.append(ctx.get_header(name))
            assert results[0] == results[1], (headers, name)
    finally:
        _core.select("auto")


def test_set_header_pairs_matches_the_python_context() -> None:
    """`Context.set_response_headers` in C (`set_header_pairs`) gives the pure path's list: each
    name replaces its headers in any case, and values are checked and escaped alike (control
    characters, text beyond latin-1, numbers)."""
    from meshway.proxy._context import Context

    existing = [b"Server", b"x-ratelimit-limit-minute", b"RATELIMIT-RESET", b"Content-Type", b"Vary"]
    names = ["X-RateLimit-Limit-Minute", "ratelimit-reset", "Vary", "X-New", "X Bad:Name", "Ünïcode", "x-new"]
    values = ["5", "", "a\tb", "line\r\nSplit: 1", "é", "日本", 7, -1, 2.5, None, "~" * 70, "\x7f", "\x00x"]
    rnd = random.Random(23)
    try:
        for _ in range(3000):
            upstream = [(rnd.choice(existing), b"v%d" % i) for i in range(rnd.randrange(0, 5))]
            calls = [[(rnd.choice(names), rnd.choice(values)) for _ in range(rnd.randrange(1, 6))]
                     for _ in range(rnd.randrange(1, 3))]
            results = []
            for core in (_h1parse, None):
                _core.compiled = core
                ctx = Context(None, "10.0.0.1", "GET", "http", "h", "/", "", [], None, None, {}, 0.0)
                ctx.response_headers = list(upstream)
                for pairs in calls:
                    ctx.set_response_headers(pairs)
                results.append(ctx.response_headers)
            assert results[0] == results[1], (upstream, calls)
    finally:
        _core.select("auto")
