"""The HTTP/1.1 proxy end to end: a standalone worker, a real origin, real clients."""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time

import httpx
import pytest

from tests.integration.proxy.proxy_for_test import (
    Origin, WorkerProcess, raw_request_for_test, route_for_test, service_for_test, snapshot_for_test,
    target_for_test, upstream_for_test,
)


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture
def start(tmp_path):
    started = []

    def run(snapshot, **kw):
        w = WorkerProcess(snapshot, tmp_path / f"w{len(started)}", **kw)
        started.append(w)
        return w

    yield run
    for w in started:
        w.stop()


def _simple(origin, **route_kw):
    svc = service_for_test(port=origin.port, **route_kw.pop("service_kw", {}))
    route = route_for_test(svc, paths=["/"], strip_path=False, **route_kw)
    return snapshot_for_test(services=[svc], routes=[route])


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_empty_config_answers_404_no_route(start):
    w = start(snapshot_for_test())
    r = httpx.get(w.url + "/anything")
    assert r.status_code == 404
    assert r.json() == {"message": "no Route matched with those values"}


def test_404_no_route_keeps_the_connection_alive_as_kong_does(start):
    w = start(snapshot_for_test())
    client = http.client.HTTPConnection("127.0.0.1", w.port, timeout=5)
    statuses = []
    for path in ("/a", "/b"):
        client.request("GET", path)
        resp = client.getresponse()
        statuses.append((resp.status, resp.getheader("Connection"), json.loads(resp.read())["message"]))
        if path == "/a":
            first_socket = client.sock
    assert statuses == [(404, "keep-alive", "no Route matched with those values")] * 2
    assert client.sock is first_socket  # both answers came over one connection


def test_404_closes_when_the_client_asked_or_more_than_a_mib_of_body_is_still_to_come(start):
    w = start(snapshot_for_test())
    asked = raw_request_for_test(w.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    big = raw_request_for_test(w.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
    for raw in (asked, big):  # raw_request_for_test returns once the proxy closed
        assert raw.startswith(b"HTTP/1.1 404 ") and b"\r\nConnection: close\r\n" in raw


def _read_answer(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, read from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_404_before_the_body_ends_keeps_the_connection_once_the_body_is_read(start, framing):
    """As nginx does for its own answers: the rest of the body is read and dropped, and the next
    request on the connection is served."""
    w = start(snapshot_for_test())
    with socket.create_connection(("127.0.0.1", w.port), timeout=5) as s:
        if framing == "length":
            s.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n" + b"x" * 1000)
        else:
            s.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"x" * 1000 + b"\r\n")
        first = _read_answer(s)  # the answer comes before the body is complete
        assert first.startswith(b"HTTP/1.1 404 ") and b"\r\nConnection: keep-alive\r\n" in first
        rest = b"x" * 299000 if framing == "length" else b"%x\r\n%s\r\n0\r\n\r\n" % (299000, b"x" * 299000)
        s.sendall(rest + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        second = _read_answer(s)
        assert second.startswith(b"HTTP/1.1 404 ") and b"no Route matched" in second


def test_404_to_an_expect_100_continue_request_closes_as_the_body_may_never_come(start):
    w = start(snapshot_for_test())
    raw = raw_request_for_test(w.port, b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                       b"Content-Length: 5\r\n\r\n")  # returns once the proxy closed
    assert raw.startswith(b"HTTP/1.1 404 ") and b"\r\nConnection: close\r\n" in raw
    assert b"100 Continue" not in raw


def test_a_body_that_stops_after_the_answer_is_cut_at_client_body_timeout(start):
    w = start(snapshot_for_test(), env={"MESHWAY_CLIENT_BODY_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", w.port), timeout=5) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert _read_answer(s).startswith(b"HTTP/1.1 404 ")
        t0 = time.monotonic()
        assert s.recv(65536) == b""  # closed, without a second (408) answer after the 404
        assert 0.5 < time.monotonic() - t0 < 4


def test_proxies_with_forwarded_headers_and_without_hop_by_hop(start, origin):
    w = start(_simple(origin))
    r = httpx.get(w.url + "/hello?x=1", headers={"Connection": "keep-alive, X-Drop", "X-Drop": "1", "TE": "trailers",
                                                  "Proxy-Authorization": "p", "X-Forwarded-For": "10.0.0.9",
                                                  "X-Keep": "yes"})
    assert r.status_code == 200
    got = r.json()
    assert got["url"] == "/hello?x=1"
    h = {k.lower(): v for k, v in got["headers"]}
    assert h["host"] == f"127.0.0.1:{origin.port}"
    assert h["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "127.0.0.1"
    assert h["x-forwarded-port"] == str(w.port)
    assert h["x-forwarded-path"] == "/hello"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["via"].startswith("1.1 meshway/")
    assert h["x-keep"] == "yes"
    for gone in ("x-drop", "te", "proxy-authorization", "connection"):
        assert gone not in h
    assert r.headers["via"].startswith("1.1 meshway/")
    assert int(r.headers["x-meshway-upstream-latency"]) >= 0
    assert int(r.headers["x-meshway-proxy-latency"]) >= 0
    assert r.headers["x-origin"] == "yes"


def test_upstream_connections_are_reused_across_clients(start, origin):
    w = start(_simple(origin))
    with httpx.Client() as c:
        conns = {c.get(w.url + "/a").json()["conn"] for _ in range(10)}
    for _ in range(5):
        with httpx.Client() as c:
            conns.add(c.get(w.url + "/b").json()["conn"])
    assert conns == {1}
    assert origin.connections == 1


def test_response_streams_before_upstream_finishes(start, origin):
    w = start(_simple(origin))
    with socket.create_connection(("127.0.0.1", w.port), timeout=3) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"first" not in got:
            got += s.recv(4096)
        assert b"rest" not in got  # the origin has not sent the rest yet
        origin.release.set()
        while not got.endswith(b"0\r\n\r\n"):
            got += s.recv(4096)
    assert b"Transfer-Encoding: chunked" in got and b"rest" in got


def test_connect_failure_is_502_with_kong_body(start):
    svc = service_for_test(port=_dead_port(), retries=1)
    w = start(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])]))
    r = httpx.get(w.url + "/")
    assert r.status_code == 502
    assert r.json() == {"message": "An invalid response was received from the upstream server"}


def test_read_timeout_is_504(start, origin):
    w = start(_simple(origin, service_kw={"read_timeout": 300}))
    r = httpx.get(w.url + "/sleep/2")
    assert r.status_code == 504
    assert r.json() == {"message": "The upstream server is timing out"}


@pytest.mark.parametrize("impl", ["compiled", "python"])
def test_connect_timeout_is_504(start, impl):
    # an upstream whose accept queue is full: the kernel drops further SYNs, so a connect hangs
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    queued = [socket.create_connection(full.getsockname(), timeout=2)]  # listen(0) queues one
    svc = service_for_test(port=full.getsockname()[1], connect_timeout=300, retries=0)
    env = {"MESHWAY_HTTP1_IMPL": "python"} if impl == "python" else {}
    try:
        w = start(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])]), env=env)
        t0 = time.monotonic()
        r = httpx.get(w.url + "/", timeout=10)
        assert r.status_code == 504
        assert r.json() == {"message": "The upstream server is timing out"}
        assert 0.25 < time.monotonic() - t0 < 5
        assert w.alive()
    finally:
        for c in queued:
            c.close()
        full.close()


@pytest.mark.parametrize("path", ["/garbage", "/reset"])
def test_bad_upstream_is_502_and_worker_lives(start, origin, path):
    w = start(_simple(origin))
    r = httpx.get(w.url + path)
    assert r.status_code == 502
    assert r.json()["message"] == "An invalid response was received from the upstream server"
    assert httpx.get(w.url + "/ok").status_code == 200


def test_retries_go_to_the_next_peer(start, origin):
    up = upstream_for_test("backend.internal")
    targets = [target_for_test(up, f"127.0.0.1:{_dead_port()}"), target_for_test(up, f"127.0.0.1:{origin.port}")]
    svc = service_for_test(host="backend.internal", port=80, retries=3)
    w = start(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])], upstreams=[up],
                                targets=targets))
    for _ in range(4):
        r = httpx.get(w.url + "/x")
        assert r.status_code == 200
        # as Kong: the Host sent is the chosen target's (upstream.host_header overrides it)
        assert r.json()["headers"][0] == ["Host", f"127.0.0.1:{origin.port}"]


def test_no_peer_is_503(start):
    up = upstream_for_test("empty.internal")
    svc = service_for_test(host="empty.internal")
    w = start(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])], upstreams=[up]))
    r = httpx.get(w.url + "/")
    assert r.status_code == 503
    assert r.json() == {"message": "failure to get a peer from the ring-balancer"}


def test_strip_path_and_service_path(start, origin):
    svc = service_for_test(port=origin.port, path="/base")
    routes = [route_for_test(svc, paths=["/api"], strip_path=True),
              route_for_test(svc, paths=["~/users/(?P<uid>\\d+)"], strip_path=False, name="users")]
    w = start(snapshot_for_test(services=[svc], routes=routes))
    assert httpx.get(w.url + "/api/items?q=1").json()["url"] == "/base/items?q=1"
    assert httpx.get(w.url + "/api").json()["url"] == "/base"
    assert httpx.get(w.url + "/users/42/x").json()["url"] == "/base/users/42/x"


def test_https_only_route_answers_426_or_redirect(start, origin):
    svc = service_for_test(port=origin.port)
    routes = [route_for_test(svc, paths=["/secure"], protocols=["https"]),
              route_for_test(svc, paths=["/moved"], protocols=["https"], https_redirect_status_code=301)]
    w = start(snapshot_for_test(services=[svc], routes=routes))
    r = httpx.get(w.url + "/secure")
    assert r.status_code == 426 and r.json() == {"message": "Please use HTTPS protocol"}
    r = httpx.get(w.url + "/moved/x?a=b", headers={"Host": "example.com:8000"})
    assert r.status_code == 301
    assert r.headers["location"] == "https://example.com/moved/x?a=b"


def test_request_bodies_content_length_and_chunked(start, origin):
    w = start(_simple(origin))
    r = httpx.post(w.url + "/up", content=b"a" * 100_000)
    assert r.json()["body_len"] == 100_000

    def gen():
        for _ in range(10):
            yield b"b" * 1000

    r = httpx.post(w.url + "/up", content=gen())
    assert r.json()["body_len"] == 10_000
    assert ["Transfer-Encoding", "chunked"] in r.json()["headers"]


def test_expect_100_continue_with_curl(start, origin):
    w = start(_simple(origin))
    out = subprocess.run(["curl", "-sv", "-H", "Expect: 100-continue", "--data-binary", "x" * 2000,
                          w.url + "/up"], capture_output=True, timeout=10)
    assert b"HTTP/1.1 100 Continue" in out.stderr
    body = json.loads(out.stdout)
    assert body["body_len"] == 2000
    assert not any(k.lower() == "expect" for k, _ in body["headers"])


def test_close_delimited_upstream_is_rechunked_for_http11_and_closes_http10(start, origin):
    w = start(_simple(origin))
    r = httpx.get(w.url + "/close")
    assert r.text == "until-close"
    assert r.headers["transfer-encoding"] == "chunked"
    raw = raw_request_for_test(w.port, b"GET /close HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"until-close")
    assert b"Connection: close" in raw


def test_pipelined_requests_answer_in_order(start, origin):
    w = start(_simple(origin))
    raw = raw_request_for_test(w.port, b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n"
                                       b"Connection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200") == 2
    assert raw.index(b'"/one"') < raw.index(b'"/two"')


def test_websocket_is_tunnelled(start, tmp_path):
    import asyncio
    import threading

    import websockets
    from websockets.sync.client import connect

    ready = threading.Event()
    box = {}

    def serve():
        async def echo(ws):
            async for msg in ws:
                await ws.send("echo:" + msg)

        async def main():
            async with websockets.serve(echo, "127.0.0.1", 0) as server:
                box["port"] = server.sockets[0].getsockname()[1]
                box["loop"] = asyncio.get_running_loop()
                box["stop"] = asyncio.Event()
                ready.set()
                await box["stop"].wait()

        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ready.wait(5)
    svc = service_for_test(port=box["port"])
    w = start(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/ws"], strip_path=False)]))
    with connect(f"ws://127.0.0.1:{w.port}/ws") as ws:
        for i in range(3):
            ws.send(f"m{i}")
            assert ws.recv(timeout=3) == f"echo:m{i}"
    box["loop"].call_soon_threadsafe(box["stop"].set)
    t.join(3)


def test_access_log_written(start, origin):
    w = start(_simple(origin))
    httpx.get(w.url + "/logged", headers={"User-Agent": "ua-test"})
    deadline = time.monotonic() + 3
    path = w.prefix / "logs" / "access.log"
    while time.monotonic() < deadline and not (path.exists() and b"/logged" in path.read_bytes()):
        time.sleep(0.1)
    line = path.read_text().strip().splitlines()[-1]
    assert '"GET /logged HTTP/1.1" 200' in line and '"ua-test"' in line


def test_head_and_no_body_statuses(start, origin):
    w = start(_simple(origin))
    with httpx.Client() as c:
        r = c.head(w.url + "/x")
        assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0
        r = c.get(w.url + "/status/204")
        assert r.status_code == 204 and r.content == b""
        assert c.get(w.url + "/after-head").json()["url"] == "/after-head"  # the connection is still usable


def test_write_timeout_is_504(start):
    import threading

    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(8)  # never accepted, never read: the kernel buffers fill, then writes stall
    svc = service_for_test(port=sink.getsockname()[1], write_timeout=300, retries=0)
    w = start(snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])]))
    s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
    size = 64 << 20
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)

    def pump():
        try:
            chunk = b"z" * 65536
            for _ in range(size // len(chunk)):
                s.sendall(chunk)
        except OSError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    data = s.recv(4096)
    s.close()
    sink.close()
    assert data.startswith(b"HTTP/1.1 504")
    assert b"The upstream server is timing out" in data


def test_proxy_bind_sets_the_upstream_source_address(start, origin):
    w = start(_simple(origin), env={"MESHWAY_PROXY_BIND": "127.0.0.2"})
    assert httpx.get(w.url + "/src").json()["peer"] == "127.0.0.2"
    assert httpx.get(w.url + "/src2").json()["peer"] == "127.0.0.2"


def test_a_client_that_half_closes_after_its_request_gets_the_answer_then_the_close(start, origin):
    w = start(_simple(origin))
    t0 = time.monotonic()
    raw = raw_request_for_test(w.port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5, half_close=True)
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"}")  # whole answer, then the proxy closed
    assert time.monotonic() - t0 < 3  # not held open until keepalive_timeout
