"""Request paths and request lines through a real worker to a real origin (issue 18, items 1, 2, 8).

What a client sends must reach the origin as one request naming the resource the router matched:
encoded line breaks stay encoded (no request splitting, no poisoned pooled connection), slashes
cannot route around an authenticated route, and Host / version / method oddities are answered
as nginx answers them. Each check runs over HTTP/1.1 and HTTP/2 (one `http2` listener takes both).
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest
from tests.integration.http2.h2_for_test import H2Worker, RawH2ForTest
from tests.integration.proxy.proxy_for_test import (
    Origin, plugin_for_test, raw_request_for_test, route_for_test, service_for_test, snapshot_for_test,
)

SMUGGLE = "/x%20HTTP/1.1%0d%0aHost:%20a%0d%0a%0d%0aGET%20/SMUGGLED"
CONSUMER = {"id": "22222222-0000-0000-0000-000000000001", "username": "ops", "custom_id": None, "tags": None}


def _snapshot(origin: Origin) -> dict:
    svc = service_for_test(port=origin.port, name="echo")
    based = service_for_test(port=origin.port, name="based", path="/base")
    admin = route_for_test(svc, name="admin", paths=["/admin"])
    routes = [
        admin,
        route_for_test(svc, name="all", paths=["/"]),  # catch-all, strip_path (the default)
        route_for_test(svc, name="keep", paths=["/keep"], strip_path=False),
        route_for_test(based, name="v0", paths=["/v0"]),
        route_for_test(based, name="v1", paths=["/v1"], path_handling="v1"),
        route_for_test(based, name="regex", paths=[r"~/items/(?P<id>[^/]+)/"], strip_path=False),
        route_for_test(svc, name="by-host", hosts=["uri.test"], paths=["/"]),
        route_for_test(svc, name="kept-host", hosts=["kept.test", "*.kept.test"], paths=["/"], preserve_host=True),
        route_for_test(svc, name="tpl", paths=["/tpl"]),  # last: the plugins below name routes[-1]
    ]
    plugins = [
        plugin_for_test("key-auth", {}, route=admin),
        plugin_for_test("request-transformer", {"add": {"headers": ["x-q:$(query_params.q)"]}}, route=routes[-1]),
    ]
    return snapshot_for_test(services=[svc, based], routes=routes, plugins=plugins, consumers=[CONSUMER],
                             keyauth_credentials=[{"id": "k-ops", "consumer": {"id": CONSUMER["id"]}, "key": "s3cret",
                                                   "ttl": None, "tags": None}])


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    origin = Origin()
    worker = H2Worker(_snapshot(origin), tmp_path_factory.mktemp("paths"))
    yield worker, origin
    worker.stop()
    origin.close()


def curl(port: int, path: str, *args: str, http2: bool = False) -> tuple[int, bytes]:
    """A real curl, path as given (no client-side normalisation): (status, body)."""
    cmd = ["curl", "-s", "--path-as-is", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5", *args]
    if http2:
        cmd.append("--http2-prior-knowledge")
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, timeout=10).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


def seen(origin: Origin, since: int) -> list[str]:
    """The request targets the origin parsed after the first `since`."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(origin.requests) <= since:
        time.sleep(0.01)
    return [r["url"] for r in origin.requests[since:]]


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_encoded_crlf_in_the_path_stays_encoded_and_cannot_poison_the_pool(gw, http2):
    worker, origin = gw
    before, raw_before = len(origin.requests), len(origin.raw)
    status, body = curl(worker.plain, SMUGGLE, http2=http2)
    assert status == 200
    assert json.loads(body)["url"] == "/x%20HTTP/1.1%0D%0AHost:%20a%0D%0A%0D%0AGET%20/SMUGGLED"
    # The next client on the (pooled) upstream connection gets its own answer, not the attacker's.
    for i in range(5):
        status, body = curl(worker.plain, f"/victim{i}", http2=http2)
        assert status == 200 and json.loads(body)["url"] == f"/victim{i}"
    smuggled = "/x%20HTTP/1.1%0D%0AHost:%20a%0D%0A%0D%0AGET%20/SMUGGLED"
    assert seen(origin, before) == [smuggled, *(f"/victim{i}" for i in range(5))]
    assert b"\nGET /SMUGGLED" not in bytes(origin.raw[raw_before:])
    assert b"\r\nHost: a\r\n" not in bytes(origin.raw[raw_before:])


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
@pytest.mark.parametrize("path,upstream", [
    ("/a%00b%3Fc%23d", "/a%00b%3Fc%23d"),       # NUL, ? and # stay encoded: same resource
    ("/caf%c3%a9", "/caf%C3%A9"),
    ("/a%2e%2e/b", "/a../b"),                    # not a dot segment: a name
    ("/x/%2e%2e/y", "/y"),                       # an encoded dot segment is one
    ("/x//y///z", "/x/y/z"),                     # merge_slashes
    ("/%7euser", "/~user"),                      # unreserved: decoded
    ("/p%zz", "/p%25zz"),                        # a % that starts no triplet is encoded
])
def test_paths_reach_the_origin_encoded_for_a_request_line(gw, http2, path, upstream):
    worker, origin = gw
    status, body = curl(worker.plain, path, http2=http2)
    assert status == 200, body
    assert json.loads(body)["url"] == upstream


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
@pytest.mark.parametrize("path,upstream", [
    ("/keep//a/../b%20c", "/keep/b%20c"),          # strip_path off: the normalised path
    ("/v0/x%0d%0ay", "/base/x%0D%0Ay"),            # service path, v0
    ("/v0", "/base"),
    ("/v1/x%0ay", "/base/x%0Ay"),                  # path_handling v1
    ("/v1%2e%2e/x", "/base../x"),                  # v1 joins the postfix as is (`v1..` was a name)
    ("/items/%41b%0a/rest", "/base/items/Ab%0A/rest"),  # regex route, captures on the normalised path
    ("/keep%2fx", "/keep%2Fx"),                    # %2F is not a slash: forwarded encoded
])
def test_every_routing_option_forwards_the_matched_path_encoded(gw, http2, path, upstream):
    worker, origin = gw
    status, body = curl(worker.plain, path, http2=http2)
    assert status == 200, body
    assert json.loads(body)["url"] == upstream


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
@pytest.mark.parametrize("path", ["/admin/x", "//admin/x", "/./admin/x", "/a/../admin/x", "/%61dmin/x", "///admin//x"])
def test_slashes_and_dots_cannot_route_around_key_auth(gw, http2, path):
    worker, origin = gw
    before = len(origin.requests)
    status, _ = curl(worker.plain, path, http2=http2)
    assert status == 401
    status, body = curl(worker.plain, path, "-H", "apikey: s3cret", http2=http2)
    assert status == 200 and json.loads(body)["url"] == "/x"
    assert seen(origin, before) == ["/x"]  # only the authenticated one reached the origin


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_encoded_slash_never_reaches_the_origin_as_the_protected_path(gw, http2):
    worker, origin = gw
    status, body = curl(worker.plain, "/%2Fadmin/x", http2=http2)
    assert status == 200
    assert json.loads(body)["url"] == "/%2Fadmin/x"  # the catch-all's resource, not /admin/x


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_plugin_header_from_a_decoded_query_cannot_split_the_request(gw, http2):
    worker, origin = gw
    raw_before = len(origin.raw)
    status, body = curl(worker.plain, "/tpl?q=a%0d%0aInjected:%20yes", http2=http2)
    assert status == 200
    headers = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
    assert "injected" not in headers
    assert headers["x-q"] == "a%0D%0AInjected: yes"
    assert b"\r\nInjected" not in bytes(origin.raw[raw_before:])


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
@pytest.mark.parametrize("host,sent", [
    ("kept.test", "kept.test"), ("kept.test:8000", "kept.test:8000"), ("a.kept.test", "a.kept.test"),
    ("A-b.Kept.Test:1", "A-b.Kept.Test:1"),
])
def test_preserve_host_forwards_the_client_host_as_it_came(gw, http2, host, sent):
    # preserve_host: the client's Host (HTTP/2: :authority) is the one header value the upstream
    # request takes from the client unparsed by a rewrite; it is checked as nginx does (400 above).
    worker, origin = gw
    raw_before = len(origin.raw)
    status, body = curl(worker.plain, "/h", "-H", f"Host: {host}", http2=http2)
    assert status == 200, body
    headers = [(k.lower(), v) for k, v in json.loads(body)["headers"]]
    assert [v for k, v in headers if k == "host"] == [sent]
    assert bytes(origin.raw[raw_before:]).count(b"\r\nHost: ") == 1


# -- item 8: Host, absolute form, underscores, version, TRACE ----------------------------------
@pytest.mark.parametrize("host", [b"", b"a/b", b"a..b", b".", b"a\\b"])
def test_bad_host_values_get_400(gw, host):
    worker, origin = gw
    before = len(origin.requests)
    out = raw_request_for_test(worker.plain, b"GET /h HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:100]
    assert len(origin.requests) == before


def test_bad_authority_over_http2_gets_400_or_a_reset(gw):
    worker, origin = gw
    before = len(origin.requests)
    c = RawH2ForTest(worker.plain)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a/b"),
                            (b":path", b"/h")], end_stream=True)
    c.send()
    headers, _ = c.response(sid)
    assert headers.get(":status") == "400"
    for bad in (b"a\r\nb", b"a b"):
        c2 = RawH2ForTest(worker.plain)
        sid = c2.h2.get_next_available_stream_id()
        c2.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", bad),
                                 (b":path", b"/h")], end_stream=True)
        c2.send()
        headers, _ = c2.response(sid)
        assert ":status" not in headers  # malformed: RST_STREAM (PROTOCOL_ERROR)
        c2.close()
    c.close()
    assert len(origin.requests) == before


@pytest.mark.parametrize("path", [b"/a\r\nHost: x\r\n\r\nGET /b", b"/a b", b"/a\x00", b"/a\x7f", b"/a\tb"])
def test_raw_controls_in_an_http2_path_are_malformed(gw, path):
    worker, origin = gw
    before = len(origin.requests)
    c = RawH2ForTest(worker.plain)
    sid = c.request("/")  # a good stream first: the connection goes on after the bad one
    c.response(sid)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                            (b":path", path)], end_stream=True)
    c.send()
    headers, _ = c.response(sid)
    assert ":status" not in headers
    assert seen(origin, before) == ["/"]
    c.close()


def test_absolute_form_routes_by_the_uri_host(gw):
    worker, origin = gw
    out = raw_request_for_test(worker.plain, b"GET http://uri.test/abs?x=1 HTTP/1.1\r\nHost: other.test\r\n"
                                             b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    got = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert got["url"] == "/abs?x=1"  # the by-host route (strip_path on "/"), origin form upstream
    headers = dict((k.lower(), v) for k, v in got["headers"])
    assert headers["x-forwarded-host"] == "uri.test"


def test_absolute_form_with_a_bad_authority_gets_400(gw):
    worker, _ = gw
    out = raw_request_for_test(worker.plain, b"GET http://a..b/x HTTP/1.1\r\nHost: ok.test\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:100]


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_headers_with_underscores_are_not_forwarded(gw, http2):
    worker, _ = gw
    status, body = curl(worker.plain, "/u", "-H", "X_Auth_User: admin", "-H", "X-Auth-User: alice", http2=http2)
    assert status == 200
    names = [k.lower() for k, _ in json.loads(body)["headers"]]
    assert "x-auth-user" in names and "x_auth_user" not in names


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/9.1"])
def test_a_major_version_other_than_1_gets_505(gw, version):
    worker, origin = gw
    before = len(origin.requests)
    out = raw_request_for_test(worker.plain, b"GET /v " + version + b"\r\nHost: a.test\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 505 "), out[:100]
    assert len(origin.requests) == before


def test_trace_and_connect_get_405_with_allow(gw):
    worker, origin = gw
    before = len(origin.requests)
    for line in (b"TRACE / HTTP/1.1", b"CONNECT a.test:443 HTTP/1.1"):
        out = raw_request_for_test(worker.plain, line + b"\r\nHost: a.test\r\n\r\n")
        head = out.split(b"\r\n\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 405 "), out[:100]
        assert b"\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS" in head
    c = RawH2ForTest(worker.plain)
    sid = c.request("/", method="TRACE")
    headers, _ = c.response(sid)
    assert headers[":status"] == "405" and "GET" in headers["allow"]
    c.close()
    assert len(origin.requests) == before


def _log_line(worker, marker: bytes) -> bytes:
    log = worker.proc.prefix / "logs" / "access.log"
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        lines = [ln for ln in (log.read_bytes() if log.exists() else b"").splitlines() if marker in ln]
        if lines:
            return lines[-1]
        time.sleep(0.1)
    return b""


def test_the_access_log_escapes_request_data(gw):
    worker, _ = gw
    # HTTP/1.1: llhttp admits `"` and `\` in values (controls are refused before the log).
    raw_request_for_test(worker.plain, b"GET /log-h1 HTTP/1.1\r\nHost: a.test\r\nUser-Agent: evil\" 200 1 \"-\" \"x\\y"
                         b"\r\nConnection: close\r\n\r\n")
    assert b'"evil\\x22 200 1 \\x22-\\x22 \\x22x\\x5Cy"' in _log_line(worker, b"/log-h1")
    # HTTP/2: any byte but NUL, CR and LF in a value; non-ASCII in the path.
    c = RawH2ForTest(worker.plain)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                            (b":path", b"/log-h2/\xc3\xa9"), (b"user-agent", b"x\x1b[31m\"y")], end_stream=True)
    c.send()
    c.response(sid)
    c.close()
    line = _log_line(worker, b"/log-h2")
    assert b'"GET /log-h2/\\xC3\\xA9 HTTP/2' in line and b'"x\\x1B[31m\\x22y"' in line, line
    assert b"\x1b" not in line


def _h2_get(port: int, path: bytes) -> tuple[dict, bytes]:
    c = RawH2ForTest(port)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                            (b":path", path)], end_stream=True)
    c.send()
    try:
        return c.response(sid)
    finally:
        c.close()


def test_forwarded_path_headers_are_encoded(gw):
    worker, _ = gw
    headers, body = _h2_get(worker.plain, b"/keep/caf\xc3\xa9\"x")
    assert headers[":status"] == "200"
    got = json.loads(body)
    sent = dict((k.lower(), v) for k, v in got["headers"])
    assert got["url"] == "/keep/caf%C3%A9%22x"
    assert sent["x-forwarded-path"] == "/keep/caf%C3%A9%22x"
    headers, body = _h2_get(worker.plain, b"/v0/\xc3\xa9")
    sent = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
    assert sent["x-forwarded-prefix"] == "/v0" and sent["x-forwarded-path"] == "/v0/%C3%A9"


def test_underscores_in_headers_on_forwards_them(tmp_path):
    origin = Origin()
    svc = service_for_test(port=origin.port)
    snap = snapshot_for_test(services=[svc], routes=[route_for_test(svc, paths=["/"])])
    worker = H2Worker(snap, tmp_path, env={"MESHWAY_NGINX_PROXY_UNDERSCORES_IN_HEADERS": "on"})
    try:
        for http2 in (False, True):
            status, body = curl(worker.plain, "/u", "-H", "X_Auth_User: admin", http2=http2)
            assert status == 200
            assert ("x_auth_user", "admin") in [(k.lower(), v) for k, v in json.loads(body)["headers"]]
    finally:
        worker.stop()
        origin.close()


def test_an_http2_query_with_bytes_http1_refuses_goes_on_encoded(gw):
    worker, _ = gw
    headers, body = _h2_get(worker.plain, b"/keep/x?q=caf\xc3\xa9#frag&r=%41")
    assert headers[":status"] == "200"
    assert json.loads(body)["url"] == "/keep/x?q=caf%C3%A9%23frag&r=%41"
