"""Differential fuzz (issue 18): the origin never sees a request the client did not send.

Seeded, bounded mutations of requests (paths with encoded and raw control bytes, dot segments,
double slashes, odd Hosts, header name and value tricks, chunked bodies, pipelining) go through a
real worker, over HTTP/1.1 and HTTP/2, to a byte-logging origin that parses what it got with h11
(a parser independent of the proxy's llhttp). For each client connection the origin's requests
must be, in order, a subsequence of the client's: same method, the target the client sent after
the proxy's documented rewrites (`normalize_path` then `escape_path`, query as sent), every
forwarded header one the client sent with the same value (plus the proxy's own: Host, framing,
X-Forwarded-*, X-Real-IP, Via), the same body. Any extra request, any unparseable byte, any
header the client did not send fails the test. Runs in well under 30 s.
"""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time

import h11
import hpack
import httptools
import pytest

from meshway.proxy._paths import escape_path, escape_query, normalize_path
from tests.integration.http2.h2_for_test import H2Worker
from tests.integration.proxy.proxy_for_test import pass_through_snapshot_for_test

ADDED = {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-path",
         "x-real-ip", "via", "content-length", "transfer-encoding"}
SEGMENTS = ["a", "b", "admin", "..", ".", "", "%2e%2e", "%2E", "%2F", "%2f..", "%0d%0a", "%0D%0AHost:%20x", "%00",
            "%20", "%3F", "%23", "%25", "%252e", "%zz", "%C3%A9", "~u", "%7e", "x%09y", "%e2%80%a8", ";p=1", "a:b",
            "%0aGET%20/smuggled%20HTTP/1.1"]
HOSTS = [b"h.test", b"h.test:8000", b"[::1]:80", b"", b"a..b", b"a/b", b"H.TEST.", b"x\\y", b"127.0.0.1"]
NAMES = [b"X-Ok", b"X_Under", b"x-ok", b"X-Forwarded-Host", b"Accept", b"Cookie", b"X-Forwarded-For", b"Via",
         b"Proxy-Thing", b"Connection", b"Te", b"Keep-Alive", b"X-Dup"]
VALUES = [b"v", b"a b", b"\tpadded\t", b"\x01ctl", b"\xff\xfe", b"x=1; y=2", b"close", b"X-Ok", b"trailers",
          b"a\"b", b"%0d%0aInjected: 1"]
NASTY = [b"\r", b"\n", b"\x00", b" ", b"\t", b"\r\n", b"%0d%0a", b"/../", b"//", b"_", b"\xff", b"Host: y\r\n",
         b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n", b"\r\n\r\nGET /x HTTP/1.1\r\nHost: z\r\n\r\n"]


# -- the byte-logging origin ------------------------------------------------------------------
class _Conn(asyncio.Protocol):
    def __init__(self, origin: "LoggingOrigin"):
        self.origin = origin
        self.h11 = h11.Connection(h11.SERVER)
        self.raw = bytearray()
        self.current: dict | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.raw += data
        self.origin.raw.append(data)
        self.h11.receive_data(data)
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                ev = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                self.origin.events.append({"error": f"{e!r} after {bytes(self.raw[-300:])!r}"})
                self.transport.close()
                return
            if ev is h11.NEED_DATA or ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
                if ev is h11.PAUSED and self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                    continue
                return
            if isinstance(ev, h11.Request):
                self.current = {"method": ev.method.decode(), "target": ev.target.decode("latin-1"),
                                "headers": [(k.decode(), v) for k, v in ev.headers.raw_items()], "body": b""}
            elif isinstance(ev, h11.Data):
                self.current["body"] += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                self.origin.events.append(self.current)
                self.transport.write(self.h11.send(h11.Response(status_code=200, headers=[("Content-Length", "2")])))
                if self.current["method"] != "HEAD":
                    self.transport.write(self.h11.send(h11.Data(data=b"ok")))
                self.transport.write(self.h11.send(h11.EndOfMessage()))


class LoggingOrigin:
    """An HTTP/1.1 origin on 127.0.0.1 (own thread) that keeps every byte and every parsed request."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.raw: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(self.loop.create_server(lambda: _Conn(self), "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(5)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2)


# -- what the client sent ---------------------------------------------------------------------
class _ClientModel:
    """The client's requests as an HTTP/1.1 parser sees them (the complete ones, up to an error)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def on_message_begin(self) -> None:
        self.cur = {"url": b"", "headers": [], "body": b""}

    def on_url(self, url: bytes) -> None:
        self.cur["url"] += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.cur["headers"].append((name.decode("latin-1"), value))

    def on_body(self, body: bytes) -> None:
        self.cur["body"] += body

    def on_message_complete(self) -> None:
        self.cur["method"] = self.parser.get_method().decode()
        self.requests.append(self.cur)


def client_requests(data: bytes) -> list[dict]:
    model = _ClientModel()
    model.parser = parser = httptools.HttpRequestParser(model)
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        pass
    for req in model.requests:
        url = req["url"].decode("latin-1")
        if not url.startswith("/"):
            rest = url.partition("://")[2]
            cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0] or [len(rest)])
            url = rest[cut:] if rest[cut:].startswith("/") else "/" + rest[cut:]
        path, sep, query = url.partition("?")
        req["target"] = escape_path(normalize_path(path)) + sep + query  # the documented rewrite
    return model.requests


def _tag(headers: list) -> bytes | None:
    for k, v in headers:
        if k.lower() == "x-case":
            return v.strip(b" \t")
    return None


def check_all(origin: "LoggingOrigin", cases: list[tuple[bytes, list[dict]]], ordered: bool = True) -> int:
    """Check every request the origin got against what the clients sent; returns how many.

    Each generated request carries `X-Case: <n>`, which the proxy forwards as is: an origin
    request is looked up among the client requests with the same tag (`ordered`: in order, as one
    HTTP/1.1 connection's; an HTTP/2 connection's streams are concurrent and may reach the origin
    in any order), or, when a mutation ate the tag, among all untagged ones. Matching by tag and
    not by arrival time: the proxy may answer a client (and the next case start) before the
    origin has parsed what was forwarded."""
    time.sleep(0.3)
    pools: dict[bytes | None, list[tuple[dict, bytes]]] = {}
    for data, sent in cases:
        for req in sent:
            pools.setdefault(_tag(req["headers"]), []).append((req, data))
    events = list(origin.events)
    assert all("error" not in e for e in events), [e for e in events if "error" in e]
    for event in events:
        pool = pools.get(_tag(event["headers"]), [])
        for i, (req, _) in enumerate(pool):
            if _same(req, event):
                if _tag(event["headers"]) is None or not ordered:
                    del pool[i]
                else:
                    del pool[:i + 1]  # one connection's requests arrive in order
                break
        else:
            raise AssertionError(f"the origin saw a request no client sent:\n{event}\ncandidates with its tag: {pool[:3]}")
    return len(events)


def _same(s: dict, g: dict) -> bool:
    if s["method"] != g["method"] or s["target"] != g["target"] or s["body"] != g["body"]:
        return False
    sent = {(k.lower(), v.strip(b" \t")) for k, v in s["headers"]}  # OWS is not part of a value
    return all(k.lower() in ADDED or (k.lower(), v.strip(b" \t")) in sent for k, v in g["headers"])


# -- request generators -----------------------------------------------------------------------
def random_path(rng: random.Random) -> str:
    path = "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(1, 5)))
    if rng.random() < 0.3:
        path += "?" + rng.choice(["a=1", "a=%0d%0a", "q=%20&r=..%2F", "x"])
    return path


def h1_request(rng: random.Random, case: int) -> bytes:
    method = rng.choice([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS"])
    target = random_path(rng).encode()
    if rng.random() < 0.1:
        target = b"http://" + rng.choice(HOSTS) + target
    lines = [method + b" " + target + b" HTTP/1.1", b"X-Case: %d" % case]
    if rng.random() < 0.95:
        lines.append(b"Host: " + rng.choice(HOSTS))
    for _ in range(rng.randint(0, 4)):
        lines.append(rng.choice(NAMES) + b": " + rng.choice(VALUES))
    body = b""
    if method in (b"POST", b"PUT"):
        payload = bytes(rng.randrange(32, 127) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.5:
            lines.append(b"Content-Length: %d" % len(payload))
            body = payload
        else:
            lines.append(b"Transfer-Encoding: chunked")
            half = len(payload) // 2
            ext = rng.choice([b"", b";ext=1", b";x=\"y\""])
            body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in (payload[:half], payload[half:]) if p)
            body += b"0\r\n" + rng.choice([b"", b"X-Trailer: t\r\n"]) + b"\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(b) + 1)
        op = rng.randrange(4)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = rng.choice(NASTY)
        elif op == 2:
            del b[pos:pos + rng.randint(1, 6)]
        else:
            b[pos:pos] = b[max(0, pos - 12):pos]
    return bytes(b)


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    origin = LoggingOrigin()
    worker = H2Worker(pass_through_snapshot_for_test(port=origin.port), tmp_path_factory.mktemp("difffuzz"),
                      env={"MESHWAY_CLIENT_HEADER_TIMEOUT": "2", "MESHWAY_CLIENT_BODY_TIMEOUT": "2"})
    yield worker, origin
    worker.stop()
    origin.close()


def test_http1_origin_never_sees_a_request_the_client_did_not_send(gw):
    worker, origin = gw
    rng = random.Random(18_2026_1)
    cases = []
    before = len(origin.events)
    for case in range(800):
        data = b"".join(h1_request(rng, case) for _ in range(rng.choice([1, 1, 1, 2, 3])))
        if rng.random() < 0.5:
            data = mutate(rng, data)
        cases.append((data, client_requests(data)))
        exchange(worker.plain, data)
        assert worker.alive(), data
    del origin.events[:before]
    reached = check_all(origin, cases)
    assert reached > 250  # most cases reach the origin: the check is not vacuous
    assert "Traceback" not in worker.error_log()


# -- HTTP/2 -------------------------------------------------------------------------------------
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + payload


def h2_requests(rng: random.Random, case: int) -> tuple[bytes, list[dict]]:
    """A connection with 1-3 requests (pseudo-headers and fields with tricks), and the requests
    as the client meant them (HTTP/2 has no framing ambiguity: each is what it is)."""
    enc = hpack.Encoder()
    out, sent = [PREFACE, _frame(4, 0, 0, b"")], []
    for n in range(rng.randint(1, 3)):
        sid = 1 + 2 * n
        method = rng.choice([b"GET", b"POST", b"DELETE"] if rng.random() < 0.9 else [b"GE T", b"TRACE", b"get"])
        path = random_path(rng).encode()
        if rng.random() < 0.15:
            path = path.replace(b"%0d%0a", rng.choice([b"\r\n", b" ", b"\x00", b"\x7f", b"\xc3\xa9"]))
        fields = [(b":method", method), (b":scheme", b"http"), (b":path", path),
                  (b":authority", rng.choice(HOSTS[:3] if rng.random() < 0.7 else HOSTS + [b"a b", b"a\r\nb"])),
                  (b"x-case", b"%d" % case)]
        for _ in range(rng.randint(0, 3)):
            name = rng.choice([b"x-ok", b"x_under", b"accept", b"x-forwarded-host", b"cookie", b"X-Upper", b"x-ok"])
            bad = [b"a\r\nb", b"a\nInjected: 1", b"\x00", b"\tpadded\t"]
            fields.append((name, rng.choice(VALUES[:1] + VALUES[5:] if rng.random() < 0.8 else bad)))
        body = bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 30))) if method == b"POST" else b""
        out.append(_frame(1, 0x4 | (0 if body else 0x1), sid, enc.encode(fields, huffman=rng.random() < 0.5)))
        if body:
            out.append(_frame(0, 0x1, sid, body))
        req_path = path.decode("latin-1")
        p, sep, q = req_path.partition("?")
        if not req_path.isascii() or "#" in q:  # documented: such a query goes on encoded
            q = escape_query(q)
        headers = [(k.decode("latin-1"), v) for k, v in fields if not k.startswith(b":")]
        cookies = [v for k, v in fields if k == b"cookie"]
        if cookies:
            headers = [h for h in headers if h[0] != "cookie"] + [("cookie", b"; ".join(cookies))]
        sent.append({"method": method.decode("latin-1"), "target": escape_path(normalize_path(p)) + sep + q,
                     "headers": headers, "body": body})
    return b"".join(out), sent


def h2_exchange(port: int, data: bytes, streams: int) -> None:
    """Send, then read frames until every stream ended or was reset (or GOAWAY, or a close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        buf, done = b"", set()
        while len(done) < streams:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                size, kind, flags, sid = int.from_bytes(buf[:3], "big"), buf[3], buf[4], \
                    int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                buf = buf[9 + size:]
                if kind == 7:
                    return
                if (kind in (0, 1) and flags & 0x1) or kind == 3:
                    done.add(sid)


def test_http2_origin_never_sees_a_request_the_client_did_not_send(gw):
    worker, origin = gw
    rng = random.Random(18_2026_2)
    cases = []
    before = len(origin.events)
    for case in range(400):
        data, sent = h2_requests(rng, case)
        cases.append((data, sent))
        h2_exchange(worker.plain, data, len(sent))
        assert worker.alive()
    del origin.events[:before]
    reached = check_all(origin, cases, ordered=False)  # one connection's streams are concurrent
    assert reached > 120
    assert "Traceback" not in worker.error_log()
