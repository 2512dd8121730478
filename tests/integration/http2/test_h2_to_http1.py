"""HTTP/2 clients (ALPN h2 over TLS, h2c prior knowledge) through the proxy to an HTTP/1.1 origin."""
from __future__ import annotations

import asyncio
import ssl
import subprocess
import time

import httpx
import pytest

from tests.integration.http2.h2_for_test import H2Worker, RawH2ForTest, rss_kib_for_test
from tests.integration.proxy.proxy_for_test import Origin, route_for_test, service_for_test, snapshot_for_test

MB = 1024 * 1024


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def worker(origin, tmp_path_factory):
    svc = service_for_test(port=origin.port)
    hasty = service_for_test(port=origin.port, read_timeout=300)
    routes = [route_for_test(hasty, hosts=["hasty.test"]),route_for_test(svc, paths=["/"], hosts=["localhost", "127.0.0.1"], strip_path=False),
              route_for_test(svc, hosts=["secure.test"], protocols=["https"], strip_path=False),
              route_for_test(svc, paths=["/grpc-only"], hosts=["localhost", "127.0.0.1"], protocols=["grpc", "grpcs"],
                             strip_path=False)]
    w = H2Worker(snapshot_for_test(services=[svc, hasty], routes=routes), tmp_path_factory.mktemp("h2h1"))
    yield w
    w.stop()


def _tls_client(worker) -> httpx.Client:
    return httpx.Client(http2=True, verify=ssl.create_default_context(cafile=worker.ca_file),
                        base_url=f"https://localhost:{worker.tls}")


def _sent(r: httpx.Response) -> dict:
    got = r.json()
    return {"url": got["url"], "body_len": got["body_len"], "headers": {k.lower(): v for k, v in got["headers"]}}


def test_httpx_over_tls_alpn_h2_reaches_http1_origin_with_forwarded_headers(worker, origin):
    with _tls_client(worker) as c:
        r = c.get("/hello?x=1", headers={"X-Keep": "yes", "Proxy-Authorization": "p", "X-Forwarded-For": "10.0.0.9"})
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    assert r.headers["x-origin"] == "yes"
    assert r.headers["via"].startswith("1.1 meshway/")
    assert int(r.headers["x-meshway-upstream-latency"]) >= 0
    sent = _sent(r)
    h = sent["headers"]
    assert sent["url"] == "/hello?x=1"
    assert h["host"] == f"127.0.0.1:{origin.port}"
    assert h["x-forwarded-proto"] == "https"
    assert h["x-forwarded-host"] == "localhost"
    assert h["x-forwarded-port"] == str(worker.tls)
    assert h["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert h["x-keep"] == "yes"
    assert h["via"].startswith("1.1 meshway/")
    assert "proxy-authorization" not in h


def test_curl_prior_knowledge_on_plain_http2_listener(worker):
    out = subprocess.run(["curl", "-sS", "-i", "--http2-prior-knowledge", f"http://127.0.0.1:{worker.plain}/pk"],
                         capture_output=True, timeout=10)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), out
    assert b'"url": "/pk"' in body
    assert b'["X-Forwarded-Proto", "http"]' in body


def test_plain_http2_listener_still_serves_http1(worker):
    r = httpx.get(f"http://127.0.0.1:{worker.plain}/h1")
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    assert r.json()["url"] == "/h1"


def test_split_cookies_are_joined_and_connection_headers_never_reach_the_origin(worker, origin):
    c = RawH2ForTest(worker.plain)
    sid = c.request("/cookies", [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"te", b"trailers")])
    headers, body = c.response(sid)
    c.close()
    assert headers[":status"] == "200"
    import json

    sent = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert sent["cookie"] == "a=1; b=2"
    assert "te" not in sent


def test_no_route_and_https_only_and_grpc_only_routes_answer_like_http1(worker):
    with httpx.Client(http1=False, http2=True) as c:  # prior knowledge
        r = c.get(f"http://127.0.0.1:{worker.plain}/nothing-here", headers={"host": "other.test"})
    assert r.http_version == "HTTP/2"
    assert r.status_code == 404
    assert r.json() == {"message": "no Route matched with those values"}
    with _tls_client(worker) as c:
        r = c.get("/grpc-only/x")
        assert r.status_code == 415
        assert r.json() == {"message": "Non-gRPC request matched gRPC route"}
    out = subprocess.run(["curl", "-sS", "-i", "--http2-prior-knowledge", "-H", "Host: secure.test",
                          f"http://127.0.0.1:{worker.plain}/secure"], capture_output=True, timeout=10)
    assert out.stdout.startswith(b"HTTP/2 426"), out
    assert b'"message":"Please use HTTPS protocol"' in out.stdout


def test_streams_are_served_concurrently_on_one_connection(worker, origin):
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(http2=True, verify=ssl.create_default_context(cafile=worker.ca_file),
                                     timeout=30) as c:
            return await asyncio.gather(*(c.get(f"https://localhost:{worker.tls}/sleep/2") for _ in range(10)))

    origin.most_asleep = 0
    responses = asyncio.run(run())
    assert [r.text for r in responses] == ["slept"] * 10
    assert all(r.http_version == "HTTP/2" for r in responses)
    # all ten at the origin at once (counted there, not by the wall clock a loaded machine stretches):
    # one stream after the other would make it 1
    assert origin.most_asleep == 10


def test_ten_megabytes_each_way(worker):
    payload = bytes(range(256)) * (10 * MB // 256)
    with _tls_client(worker) as c:
        up = c.post("/upload", content=payload)
        assert up.status_code == 200
        assert up.json()["body_len"] == len(payload)
        down = c.get(f"/big/{10 * MB}")
    assert down.status_code == 200
    assert len(down.content) == 10 * MB
    assert down.headers["content-length"] == str(10 * MB)


def test_upload_without_content_length_is_chunked_to_the_origin(worker):
    def parts():
        for _ in range(8):
            yield b"z" * 100_000
            time.sleep(0.02)  # still sending when the upstream connection is ready

    for _ in range(2):  # the second one reuses the pooled upstream connection: framing must be exact
        with _tls_client(worker) as c:
            r = c.post("/chunked", content=parts())
        assert r.status_code == 200
        sent = _sent(r)
        assert sent["body_len"] == 800_000
        assert sent["headers"].get("transfer-encoding") == "chunked"


@pytest.mark.slow
def test_a_client_that_does_not_read_holds_back_the_upstream_not_the_proxy_memory(worker):
    c = RawH2ForTest(worker.plain, window=65535)
    pid = worker.proc.proc.pid
    before = rss_kib_for_test(pid)
    sid = c.request(f"/big/{40 * MB}")
    for _ in range(5):  # take the head and a first window, then stop acknowledging
        c.read(ack=False, timeout=0.3)
    time.sleep(1.5)
    grown = rss_kib_for_test(pid) - before
    assert grown < 30 * 1024, f"worker grew {grown} KiB while the client read nothing"
    import h2.events

    received = sum(len(e.data) for e in c.events if isinstance(e, h2.events.DataReceived))
    c.h2.increment_flow_control_window(32 * MB)
    c.h2.increment_flow_control_window(32 * MB, stream_id=sid)
    c.send()
    deadline = time.monotonic() + 30
    ended = False
    while time.monotonic() < deadline and not ended and not c.closed:
        for e in c.read():
            if isinstance(e, h2.events.DataReceived):
                received += len(e.data)
            ended = ended or isinstance(e, h2.events.StreamEnded)
        c.events.clear()
    c.close()
    assert received == 40 * MB


def test_upstream_read_timeout_is_a_504_and_a_reset_upstream_a_502(worker):
    with httpx.Client(http1=False, http2=True, base_url=f"http://127.0.0.1:{worker.plain}") as c:
        slow = c.get("/sleep/2", headers={"host": "hasty.test"})
        reset = c.get("/reset")
        again = c.get("/after-errors")
    assert slow.status_code == 504
    assert slow.json() == {"message": "The upstream server is timing out"}
    assert reset.status_code == 502
    assert reset.json() == {"message": "An invalid response was received from the upstream server"}
    assert again.status_code == 200 and again.http_version == "HTTP/2"
