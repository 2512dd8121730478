"""Router semantics (Kong 3 traditional_compatible priorities), without sockets."""
from __future__ import annotations

import uuid

from meshway.proxy import compile_router


def r(name, **kw):
    return {"id": str(uuid.uuid4()), "name": name, "protocols": ["http", "https"], "regex_priority": 0, **kw}


def match(routes, method="GET", host="example.com", path="/", **kw):
    m = compile_router(routes).match(method, host, path, **kw)
    return m.route["name"] if m else None


def test_longer_prefix_wins():
    routes = [r("short", paths=["/a"]), r("long", paths=["/a/b"])]
    assert match(routes, path="/a/b/c") == "long"
    assert match(routes, path="/a/x") == "short"
    assert match(routes, path="/b") is None


def test_more_attributes_win_over_longer_path():
    routes = [r("path", paths=["/very/long/path"]), r("host+path", hosts=["example.com"], paths=["/very"])]
    assert match(routes, path="/very/long/path") == "host+path"


def test_exact_host_beats_wildcard_and_wildcards_match():
    routes = [r("suffix", hosts=["*.example.com"]), r("exact", hosts=["api.example.com"]),
              r("prefix", hosts=["example.*"])]
    assert match(routes, host="api.example.com") == "exact"
    assert match(routes, host="www.example.com") == "suffix"
    assert match(routes, host="deep.www.example.com") == "suffix"
    assert match(routes, host="example.org") == "prefix"
    assert match(routes, host="other.org") is None


def test_host_with_port():
    routes = [r("port", hosts=["example.com:8080"]), r("any", hosts=["example.com"])]
    assert match(routes, host="example.com:8080") == "port"
    assert match(routes, host="example.com") == "any"
    assert match(routes, host="EXAMPLE.com:9000") == "any"
    assert match([r("p", hosts=["example.com:80"])], host="example.com", default_port=80) == "p"


def test_regex_paths_before_prefixes_and_by_regex_priority():
    routes = [r("prefix", paths=["/users/123"]), r("re-low", paths=["~/users/\\d+"]),
              r("re-high", paths=["~/users/(?P<id>\\d+)$"], regex_priority=10)]
    assert match(routes, path="/users/123") == "re-high"
    assert match(routes, path="/users/123/x") == "re-low"
    m = compile_router(routes).match("GET", None, "/users/77")
    assert m.captures == {"id": "77", "1": "77"}


def test_regex_is_anchored_at_start():
    assert match([r("re", paths=["~/x/\\d+"])], path="/a/x/1") is None


def test_methods_and_headers():
    routes = [r("get", paths=["/"], methods=["GET"]), r("post", paths=["/"], methods=["POST"]),
              r("v2", paths=["/"], headers={"x-version": ["v2", "V3"]}, methods=["GET"])]
    hdr = {"x-version": "v3"}.get
    assert match(routes, method="POST") == "post"
    assert match(routes, method="GET") == "get"
    assert match(routes, method="GET", headers=hdr) == "v2"
    assert match(routes, method="DELETE") is None


def test_snis():
    routes = [r("sni", snis=["a.test"], paths=["/"]), r("plain", paths=["/"])]
    assert match(routes, sni="a.test") == "sni"
    assert match(routes, sni=None) == "plain"


def test_first_listed_wins_a_tie():
    assert match([r("first", paths=["/x"]), r("second", paths=["/x"])], path="/x") == "first"


def test_ten_thousand_routes_give_the_right_answer():
    routes = []
    for i in range(10_000):
        routes.append(r(f"h{i}", hosts=[f"svc{i}.example.com"], paths=[f"/api/{i}"]))
    routes.append(r("wild", hosts=["*.example.com"], paths=["/"]))
    routes.append(r("re", paths=["~/re/(?P<n>\\d+)$"]))
    router = compile_router(routes)
    for i in (0, 1, 4999, 9999):
        assert router.match("GET", f"svc{i}.example.com", f"/api/{i}/x").route["name"] == f"h{i}"
    assert router.match("GET", "svc5.example.com", "/api/6").route["name"] == "wild"
    assert router.match("GET", "nope.org", "/re/5").route["name"] == "re"
    assert router.match("GET", "nope.org", "/api/1") is None
