"""proxy-cache end to end through a real node with two workers: one cache for the node (a hit on
either worker after one upstream call), Kong's cache key, X-Cache-Status Miss/Hit/Refresh/Bypass,
vary_query_params / vary_headers, request and response Cache-Control, and the /proxy-cache Admin
API endpoints; DB-less too."""
from __future__ import annotations

import hashlib
import http.server
import threading
import time
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.e2e.test_rate_limit_workers import _requests_by_worker_for_test


class CountingOriginForTest:
    """Answers `n=<count>` (count of upstream requests so far); ?ct= and ?cc= set Content-Type and
    Cache-Control, ?status= the status."""

    def __init__(self) -> None:
        self.count = 0
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                origin.count += 1
                q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                body = f"n={origin.count}".encode()
                self.send_response(int(q.get("status", 200)))
                self.send_header("Content-Type", q.get("ct", "application/json"))
                if "cc" in q:
                    self.send_header("Cache-Control", q["cc"])
                self.send_header("X-Origin", "yes")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def kong_key_for_test(route_id: str, method: str, path: str, params: str = "", headers: str = "", http: str = "1.1") -> str:
    uri = f"{method} {path} HTTP/{http}" if not params else f"{method} {path}"
    return hashlib.sha256(f"{route_id}|{method}|{uri}|{params}|{headers}".encode()).hexdigest()


def get_for_test(node, path: str, **headers: str) -> httpx.Response:
    # A new connection each time (Connection: close), so either worker may take it.
    return httpx.get(node.proxy + path, headers={"Connection": "close", **headers})


def test_one_cache_for_the_node_with_kong_keys_and_admin_endpoints(node_factory):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    origin = CountingOriginForTest()
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    for name in ("cached", "varied", "quiet", "plain"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201
    for bad, field in (({}, "strategy"), ({"strategy": "memory", "memory": {"dictionary_name": "nope"}}, "memory"),
                       ({"strategy": "memory", "response_code": [99]}, "response_code"),
                       ({"strategy": "disk"}, "strategy")):
        r = admin.post("/routes/cached/plugins", json={"name": "proxy-cache", "config": bad})
        assert r.status_code == 400 and field in r.json()["fields"]["config"], r.text
    plugin = admin.post("/routes/cached/plugins", json={"name": "proxy-cache", "config": {"strategy": "memory"}}).json()
    assert admin.post("/routes/varied/plugins", json={"name": "proxy-cache", "config": {
        "strategy": "memory", "vary_query_params": ["a"], "vary_headers": ["X-Lang"]}}).status_code == 201
    assert admin.post("/routes/quiet/plugins", json={"name": "proxy-cache", "config": {
        "strategy": "memory", "response_headers": {"age": False, "X-Cache-Status": False, "X-Cache-Key": False}}}
    ).status_code == 201
    assert "proxy-cache" in admin.get("/").json()["plugins"]["available_on_server"]
    time.sleep(1.5)
    route_id = admin.get("/routes/cached").json()["id"]

    first = get_for_test(node, "/cached/a")
    assert (first.headers["X-Cache-Status"], first.text) == ("Miss", "n=1")
    key = kong_key_for_test(route_id, "GET", "/cached/a")
    assert first.headers["X-Cache-Key"] == key
    # Hits until both workers have answered some: the origin was called once for the node.
    hits = []
    while len(hits) < 40:
        hits.append(get_for_test(node, "/cached/a"))
        by_worker = _requests_by_worker_for_test(node)
        if len(hits) >= 4 and len(by_worker) == 2 and 0 not in by_worker.values():
            break
    assert len(by_worker) == 2 and 0 not in by_worker.values(), by_worker
    assert {(r.status_code, r.headers["X-Cache-Status"], r.text, r.headers["X-Origin"]) for r in hits} == {
        (200, "Hit", "n=1", "yes")}
    assert all(r.headers["content-type"] == "application/json" and "Age" in r.headers for r in hits)
    assert origin.count == 1
    # Over HTTP/2: Kong's key has the request line's protocol when there is no query string (its
    # quirk), so /cached/a is a new entry there; with a query string both protocols share one.
    assert get_for_test(node, "/cached/q?v=1").headers["X-Cache-Status"] == "Miss"
    with httpx.Client(http2=True, verify=False) as h2:
        shared = h2.get(node.proxy_ssl + "/cached/q?v=1")
        assert (shared.http_version, shared.headers["X-Cache-Status"], shared.text) == ("HTTP/2", "Hit", "n=2")
        own = h2.get(node.proxy_ssl + "/cached/a")
        assert (own.headers["X-Cache-Status"], own.text) == ("Miss", "n=3")
        assert own.headers["X-Cache-Key"] == kong_key_for_test(route_id, "GET", "/cached/a", http="2.0")
        assert h2.get(node.proxy_ssl + "/cached/a").text == "n=3"
    head = httpx.head(node.proxy + "/cached/a")
    assert (head.status_code, head.headers["X-Cache-Status"], head.content) == (200, "Miss", b"")
    head = httpx.head(node.proxy + "/cached/a")
    assert (head.status_code, head.headers["X-Cache-Status"], head.content) == (200, "Hit", b"")

    # Bypass: a method not cached, a content type not cached; nothing stored for them.
    posted = httpx.post(node.proxy + "/cached/a")
    assert (posted.headers["X-Cache-Status"], posted.text) == ("Bypass", "n=5")
    html = get_for_test(node, "/cached/page?ct=text/html")
    assert html.headers["X-Cache-Status"] == "Bypass"
    assert get_for_test(node, "/cached/page?ct=text/html").headers["X-Cache-Status"] == "Bypass"
    assert get_for_test(node, "/cached/gone?status=500").headers["X-Cache-Status"] == "Bypass"
    missing = get_for_test(node, "/cached/gone?status=404")
    assert get_for_test(node, "/cached/gone?status=404").headers["X-Cache-Status"] == "Hit"
    assert missing.status_code == 404

    # vary_query_params: only `a` counts; vary_headers: X-Lang counts.
    one = get_for_test(node, "/varied/x?a=1&b=2")
    assert one.headers["X-Cache-Status"] == "Miss"
    assert one.headers["X-Cache-Key"] == kong_key_for_test(admin.get("/routes/varied").json()["id"], "GET", "/varied/x", "a=1")
    assert get_for_test(node, "/varied/x?b=3&a=1").headers["X-Cache-Status"] == "Hit"
    assert get_for_test(node, "/varied/x?a=2").headers["X-Cache-Status"] == "Miss"
    assert get_for_test(node, "/varied/x?a=1", **{"X-Lang": "fr"}).headers["X-Cache-Status"] == "Miss"
    assert get_for_test(node, "/varied/x?a=1", **{"X-Lang": "fr"}).headers["X-Cache-Status"] == "Hit"

    # response_headers off: no X-Cache-* nor Age, unless the client sends Kong-Debug.
    get_for_test(node, "/quiet/q")
    quiet = get_for_test(node, "/quiet/q")
    assert not {"X-Cache-Status", "X-Cache-Key", "Age"} & set(quiet.headers)
    assert get_for_test(node, "/quiet/q", **{"Kong-Debug": "1"}).headers["X-Cache-Status"] == "Hit"
    assert "X-Cache-Status" not in get_for_test(node, "/plain/p").headers  # route without the plugin

    # Admin API: the entry by key and by plugin, purge one, flush all.
    entry = admin.get(f"/proxy-cache/{key}")
    assert entry.status_code == 200 and entry.json()["status"] == 200 and entry.json()["body"] == "n=1", entry.text
    assert entry.json()["headers"]["X-Origin"] == "yes" and entry.json()["version"] == 1
    assert admin.get(f"/proxy-cache/{plugin['id']}/caches/{key}").json()["body_len"] == 3
    assert admin.get(f"/proxy-cache/{plugin['id']}/caches/{'0' * 64}").status_code == 404
    assert admin.get(f"/proxy-cache/00000000-0000-0000-0000-000000000000/caches/{key}").status_code == 404
    assert admin.delete(f"/proxy-cache/{plugin['id']}/caches/{key}").status_code == 204
    assert admin.get(f"/proxy-cache/{key}").status_code == 404
    assert admin.delete(f"/proxy-cache/{key}").status_code == 404
    again = get_for_test(node, "/cached/a")
    assert again.headers["X-Cache-Status"] == "Miss" and again.text != "n=1"
    assert get_for_test(node, "/cached/a").headers["X-Cache-Status"] == "Hit"
    assert admin.delete(f"/proxy-cache/{key}").status_code == 204
    assert get_for_test(node, "/cached/a").headers["X-Cache-Status"] == "Miss"
    assert admin.delete("/proxy-cache").status_code == 204
    assert get_for_test(node, "/cached/a").headers["X-Cache-Status"] == "Miss"
    assert get_for_test(node, "/varied/x?a=1").headers["X-Cache-Status"] == "Miss"


def test_cache_control_and_ttls_dbless(node_factory, tmp_path):
    origin = CountingOriginForTest()
    decl = tmp_path / "meshway.yml"
    decl.write_text(
        '_format_version: "3.0"\n'
        f"services:\n- name: s\n  url: {origin.url}\n  routes:\n"
        '  - name: cc\n    paths: ["/cc"]\n'
        "    plugins:\n    - name: proxy-cache\n      config: {strategy: memory, cache_control: true}\n"
        '  - name: short\n    paths: ["/short"]\n'
        "    plugins:\n    - name: proxy-cache\n      config: {strategy: memory, cache_ttl: 1, storage_ttl: 600}\n")
    node = node_factory(workers="2", database="off", declarative_config=str(decl))
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert "proxy-cache" in admin.get("/").json()["plugins"]["available_on_server"]

    # Response Cache-Control: private / no-store / no max-age are not cached; max-age is.
    for cc in ("private,max-age=60", "no-store", "public"):
        get_for_test(node, f"/cc/r?cc={cc}")
        assert get_for_test(node, f"/cc/r?cc={cc}").headers["X-Cache-Status"] == "Bypass", cc
    assert get_for_test(node, "/cc/r?cc=max-age=60").headers["X-Cache-Status"] == "Miss"
    hit = get_for_test(node, "/cc/r?cc=max-age=60")
    assert hit.headers["X-Cache-Status"] == "Hit" and hit.headers["Cache-Control"] == "max-age=60"
    # Request Cache-Control: no-cache bypasses, min-fresh past the TTL refreshes, only-if-cached.
    assert get_for_test(node, "/cc/r?cc=max-age=60", **{"Cache-Control": "no-cache"}).headers["X-Cache-Status"] == "Bypass"
    assert get_for_test(node, "/cc/r?cc=max-age=60", **{"Cache-Control": "min-fresh=120"}).headers["X-Cache-Status"] == "Refresh"
    assert get_for_test(node, "/cc/r?cc=max-age=60").headers["X-Cache-Status"] == "Hit"
    assert get_for_test(node, "/cc/none", **{"Cache-Control": "only-if-cached"}).status_code == 504
    time.sleep(1.1)  # the entry is now at least a second old
    assert get_for_test(node, "/cc/r?cc=max-age=60", **{"Cache-Control": "max-age=0"}).headers["X-Cache-Status"] == "Refresh"

    # cache_ttl 1 with storage_ttl 600: kept, but too old to serve after a second: Refresh.
    assert get_for_test(node, "/short/s").headers["X-Cache-Status"] == "Miss"
    time.sleep(2.1)
    refreshed = get_for_test(node, "/short/s")
    assert refreshed.headers["X-Cache-Status"] == "Refresh"
    assert get_for_test(node, "/short/s").text == refreshed.text
