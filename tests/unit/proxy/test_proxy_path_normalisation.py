"""Path normalisation and request-line encoding (issue 18): what the router matches and what an
upstream receives, for every routing option, without sockets."""
from __future__ import annotations

import pytest

from meshway.proxy import compile_router, upstream_target
from meshway.proxy._context import Context
from meshway.proxy._exchange import _origin_form
from meshway.proxy._headers import Forwarded, encode_request_headers, upstream_request_headers
from meshway.proxy._paths import escape_path, escape_query, normalize_path
from meshway.proxy._pipeline import _https_redirect
from meshway.proxy._router import valid_host
from meshway.proxy.http2._headers import Malformed, decode_request

SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%")


@pytest.mark.parametrize("raw,norm", [
    ("/", "/"),
    ("/a/b", "/a/b"),
    ("//admin/x", "/admin/x"),
    ("/a///b//", "/a/b/"),
    ("/%2Fadmin/x", "/%2Fadmin/x"),           # reserved: stays encoded
    ("/%2fadmin", "/%2Fadmin"),               # ... with upper-case hex
    ("/a%3fb%23c%25d", "/a%3Fb%23c%25d"),
    ("/%41%7e", "/A~"),                       # unreserved: decoded
    ("/x%0d%0ay", "/x\r\ny"),                 # others: decoded for matching (encoded again upstream)
    ("/a/./b/../c", "/a/c"),
    ("/a/%2e%2E/c", "/c"),                    # an encoded dot segment is one
    ("/../../x", "/x"),                       # never above the root
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/..", "/"),
    ("/a..b/.c", "/a..b/.c"),                 # dots inside names are names
    ("/%25252e", "/%25252e"),                 # %25 is never decoded: no double decoding
    ("/%zz%4", "/%zz%4"),
])
def test_normalize_path(raw, norm):
    assert normalize_path(raw) == norm
    assert normalize_path(norm) == norm  # idempotent


@pytest.mark.parametrize("path", ["/x\r\nHost: a\r\n\r\nGET /b", "/a b", "/a\x00", "/\x7f\xff", '/"<>\\^`{|}', "/a#b?c",
                                  "/%", "/%4", "/%zz"])
def test_escape_path_leaves_only_request_line_characters(path):
    out = escape_path(path)
    assert set(out.encode("latin-1")) <= SAFE
    assert escape_path(out) == out


def test_escape_keeps_what_is_already_safe_and_names_the_same_bytes():
    assert escape_path("/a/b%2Fc~d") == "/a/b%2Fc~d"
    assert escape_path("/caf\xc3\xa9 x") == "/caf%C3%A9%20x"
    assert escape_query("a=1&b=%20x") == "a=1&b=%20x"
    assert escape_query("a=b c#d\r\n") == "a=b%20c%23d%0D%0A"


def _route(**kw):
    r = {"id": kw.pop("name", "r"), "paths": ["/r"], "strip_path": True, "path_handling": "v0", **kw}
    return r


class _Service:
    def __init__(self, path):
        self.path = path


class _Target:
    def __init__(self, route, service_path):
        self.route = route
        self.strip_path = route["strip_path"]
        self.path_handling = route["path_handling"]
        self.service = _Service(service_path)


def _upstream(route: dict, service_path: str | None, request: str, query: str = "") -> bytes:
    router = compile_router([route], lambda r: _Target(r, service_path))
    match = router.match("GET", "h", normalize_path(request))
    assert match is not None, request
    return upstream_target(match.entry.data, match, query)


@pytest.mark.parametrize("route,service_path,request_path,upstream", [
    (_route(), None, "/r/x%0D%0AHost:%20a", b"/x%0D%0AHost:%20a"),          # strip_path on
    (_route(strip_path=False), None, "/r//x/../y%00", b"/r/y%00"),            # strip_path off
    (_route(), "/s", "/r/a%20b", b"/s/a%20b"),                                 # service path, v0
    (_route(path_handling="v1"), "/s", "/r%0a", b"/s%0A"),                     # v1
    (_route(path_handling="v1", strip_path=False), "/s/", "/r/%3F", b"/s/r/%3F"),
    (_route(paths=["~/r/(?P<id>[^/]+)/"]), "/s", "/r/%41%0d/x", b"/s/x"),     # regex, stripped
    (_route(paths=["~/r/(?P<id>[^/]+)/"], strip_path=False), None, "/r/%41%0d/x", b"/r/A%0D/x"),
    (_route(paths=["/caf\u00e9"]), None, "/caf%C3%A9/x", b"/x"),               # non-ASCII route path
    (_route(paths=["/r/"]), None, "/r//", b"/"),
])
def test_every_routing_option_gives_an_encoded_upstream_path(route, service_path, request_path, upstream):
    assert _upstream(route, service_path, request_path) == upstream


def test_regex_captures_are_text_from_the_normalised_path():
    route = _route(paths=["~/r/(?P<id>[^/]+)$"])
    router = compile_router([route], lambda r: _Target(r, None))
    match = router.match("GET", "h", normalize_path("/r/caf%C3%A9%0A"))
    assert match.captures == {"id": "café\n", "1": "café\n"}


def test_a_plugin_path_and_query_are_encoded_too():
    route = _route()
    router = compile_router([route], lambda r: _Target(r, None))
    match = router.match("GET", "h", "/r/x")
    got = upstream_target(match.entry.data, match, "a=1", "/new path\r\n/€", "q=a b\r\n")
    assert got == b"/new%20path%0D%0A/%E2%82%AC?q=a%20b%0D%0A"


def test_slashes_cannot_dodge_a_prefix_route():
    routes = [_route(name="admin", paths=["/admin"]), _route(name="all", paths=["/"])]
    router = compile_router(routes, lambda r: r["id"])
    for path in ("//admin/x", "/./admin/x", "/x/../admin/x", "/%61dmin/x", "///admin"):
        assert router.match("GET", "h", normalize_path(path)).entry.data == "admin", path
    match = router.match("GET", "h", normalize_path("/%2Fadmin/x"))
    assert match.entry.data == "all" and match.postfix == "%2Fadmin/x"  # upstream: /%2Fadmin/x


@pytest.mark.parametrize("host,ok", [
    (None, True), ("a.test", True), ("a.test:8000", True), ("[::1]:80", True), ("A.Test.", True),
    ("", False), ("a b", False), ("a/b", False), ("a\\b", False), ("a..b", False), (".", False),
    ("a\x00", False), (":80", False),
])
def test_valid_host(host, ok):
    assert valid_host(host) is ok


@pytest.mark.parametrize("url,result", [
    ("http://a.test/p?q=1", ("a.test", "/p?q=1")),
    ("HTTPS://a.test:8443", ("a.test:8443", "/")),
    ("http://a.test?x", ("a.test", "/?x")),
    ("http:///p", None), ("http://u@a.test/p", None), ("ftp://a/p", None), ("*", None),
])
def test_absolute_form(url, result):
    assert _origin_form(url) == result


def _h2(path: bytes = b"/", **pseudo: bytes):
    block = [(b":method", pseudo.get("method", b"GET")), (b":scheme", pseudo.get("scheme", b"http")),
             (b":authority", pseudo.get("authority", b"a.test")), (b":path", path)]
    return decode_request(block)


@pytest.mark.parametrize("pseudo", [
    {"path": b"/a\r\nb"}, {"path": b"/a b"}, {"path": b"/a\x00"}, {"path": b"/\x7f"},
    {"authority": b"a\r\nb"}, {"authority": b"a b"}, {"method": b"GE T"}, {"method": b"GET\r\n"},
    {"scheme": b"ht tp"},
])
def test_http2_pseudo_headers_with_controls_are_malformed(pseudo):
    path = pseudo.pop("path", b"/")
    with pytest.raises(Malformed):
        _h2(path, **pseudo)


def test_http2_trace_is_refused_like_connect():
    with pytest.raises(ValueError):
        _h2(method=b"TRACE")


def test_underscored_request_headers_are_not_forwarded():
    headers = [(b"X_Auth_User", b"admin"), (b"X-Auth-User", b"alice"), (b"under_score", b"1")]
    fwd = Forwarded("127.0.0.1", "http", "a.test", 80, "/")
    general = upstream_request_headers(headers, b"up", fwd)
    assert [n for n, _ in general if b"_" in n] == [] and (b"X-Auth-User", b"alice") in general
    wire = encode_request_headers(headers, b"up", b"127.0.0.1", b"", b"")
    assert b"X-Auth-User: alice\r\n" in wire and b"_" not in wire.replace(b"X-Forwarded", b"")


def test_plugin_set_headers_cannot_split_a_message():
    ctx = Context(None, "127.0.0.1", "GET", "http", "a.test", "/", "", [], None, None, {}, 0.0)
    ctx.set_header("x-q", "a\r\nInjected: yes\x00")
    ctx.set_header("bad name\r\n", "v")
    ctx.set_response_header("x-r", "b\nc")
    ctx.set_response_header("x-n", 5)
    ctx.set_header("x-euro", "€")
    assert (b"x-q", b"a%0D%0AInjected: yes%00") in ctx.headers
    assert (b"bad%20name%0D%0A", b"v") in ctx.headers
    assert (b"x-euro", "€".encode()) in ctx.headers
    assert (b"x-r", b"b%0Ac") in ctx.response_headers and (b"x-n", b"5") in ctx.response_headers
    ctx.exit(403, "no", {"x-e": "a\r\nb"})
    assert (b"x-e", b"a%0D%0Ab") in ctx.exited.headers
    with pytest.raises(ValueError):
        ctx.set_method("GET / HTTP/1.1\r\n")
    ctx.set_method("purge")
    assert ctx.method == "PURGE"


def test_the_https_redirect_location_is_encoded():
    class _T:
        redirect_status = 301

    d = _https_redirect(_T(), None, "a.test:80", "/secure/caf\xc3\xa9\"<x>%0d%0a", "q=\xff b")
    assert d.status == 301
    assert d.headers == [(b"Location", b"https://a.test/secure/caf%C3%A9%22%3Cx%3E%0d%0a?q=%FF%20b")]


def test_a_host_with_a_trailing_dot_routes_as_without():
    router = compile_router([_route(name="h", hosts=["a.test"], paths=["/"])], lambda r: r["id"])
    for host in ("a.test", "A.TEST.", "a.test.:80"):
        assert router.match("GET", host, "/x") is not None, host
