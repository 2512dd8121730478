"""response-ratelimiting end to end through a real node with two workers: costs from the upstream's
X-Kong-Limit, one count per node (policy local) or shared through a real redis-server (policy redis),
block_on_first_violation, hide_client_headers, and 400s naming the field."""
from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.helpers.node import free_port


class CostingOriginForTest:
    """Answers 200 with `X-Kong-Limit: <?cost=...>`; keeps the X-RateLimit-Remaining-* it was sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                origin.seen.append({k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-ratelimit")})
                cost = parse_qs(urlsplit(self.path).query).get("cost", [""])[0]
                self.send_response(200)
                if cost:
                    self.send_header("X-Kong-Limit", cost)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def get_for_test(node, path: str) -> httpx.Response:
    return httpx.get(node.proxy + path, headers={"Connection": "close"})  # a new connection: any worker


def remaining_for_test(r: httpx.Response, name: str = "videos", period: str = "day") -> str | None:
    return r.headers.get(f"X-RateLimit-Remaining-{name}-{period}")


def test_costs_from_the_upstream_are_limited_per_node(node_factory):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    origin = CostingOriginForTest()
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    for name in ("metered", "strict", "hidden"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201
    for bad, field in (({}, "limits"), ({"limits": {}}, "limits"), ({"limits": {"videos": {}}}, "limits"),
                       ({"limits": {"videos": {"day": 10, "hour": 20}}}, "limits"),
                       ({"limits": {"videos": {"day": 1}}, "policy": "redis"}, "redis.host"),
                       ({"limits": {"videos": {"day": 1}}, "limit_by": "path"}, "limit_by")):
        r = admin.post("/routes/metered/plugins", json={"name": "response-ratelimiting", "config": bad})
        assert r.status_code == 400 and field in str(r.json()["fields"]["config"]), r.text
    limits = {"videos": {"day": 3, "year": 10}, "images": {"day": 100}}
    assert admin.post("/routes/metered/plugins", json={"name": "response-ratelimiting",
                                                       "config": {"limits": limits}}).status_code == 201
    assert admin.post("/routes/strict/plugins", json={"name": "response-ratelimiting", "config": {
        "limits": {"videos": {"day": 1}}, "block_on_first_violation": True}}).status_code == 201
    assert admin.post("/routes/hidden/plugins", json={"name": "response-ratelimiting", "config": {
        "limits": {"videos": {"day": 1}}, "hide_client_headers": True}}).status_code == 201
    assert "response-ratelimiting" in admin.get("/").json()["plugins"]["available_on_server"]
    time.sleep(1.5)

    first = get_for_test(node, "/metered/a?cost=videos=1")
    assert first.status_code == 200 and "X-Kong-Limit" not in first.headers
    assert (first.headers["X-RateLimit-Limit-videos-day"], remaining_for_test(first),
            remaining_for_test(first, period="year"), remaining_for_test(first, "images")) == ("3", "2", "9", "100")
    assert origin.seen[-1]["x-ratelimit-remaining-videos"] == "3"
    assert origin.seen[-1]["x-ratelimit-remaining-images"] == "100"
    second = get_for_test(node, "/metered/a?cost=videos=2,%20images=5")
    assert (remaining_for_test(second), remaining_for_test(second, "images")) == ("0", "95")
    free = get_for_test(node, "/metered/a")  # no cost: passes, counts nothing
    assert free.status_code == 200 and remaining_for_test(free) == "0"
    over = get_for_test(node, "/metered/a?cost=videos=1")
    assert (over.status_code, over.content, remaining_for_test(over)) == (429, b"", "0")
    assert get_for_test(node, "/metered/a?cost=images=1").status_code == 200
    with httpx.Client(http2=True, verify=False) as h2:  # the same refusal over HTTP/2
        refused = h2.get(node.proxy_ssl + "/metered/a?cost=videos=1")
        assert (refused.http_version, refused.status_code, remaining_for_test(refused)) == ("HTTP/2", 429, "0")
        assert h2.get(node.proxy_ssl + "/metered/a?cost=images=1").status_code == 200
    assert get_for_test(node, "/metered/a?cost=images=1").headers["X-RateLimit-Remaining-images-day"] == "92"

    # block_on_first_violation: once used up, answered before the upstream is called.
    assert get_for_test(node, "/strict/a?cost=videos=1").status_code == 200
    calls = len(origin.seen)
    blocked = get_for_test(node, "/strict/a?cost=videos=1")
    assert (blocked.status_code, blocked.json()) == (429, {"message": "API rate limit exceeded for 'videos'"})
    assert len(origin.seen) == calls

    hidden = get_for_test(node, "/hidden/a?cost=videos=1")
    assert hidden.status_code == 200 and not [h for h in hidden.headers if h.lower().startswith("x-ratelimit")]
    assert get_for_test(node, "/hidden/a?cost=videos=1").status_code == 429


@pytest.fixture
def redis_port_for_test(tmp_path):
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir",
                             str(tmp_path), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(250):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def test_redis_policy_is_shared_by_two_nodes_dbless(node_factory, tmp_path, redis_port_for_test):
    origin = CostingOriginForTest()
    decl = tmp_path / "meshway.yml"
    decl.write_text(
        '_format_version: "3.0"\n'
        f"services:\n- name: s\n  url: {origin.url}\n  routes:\n"
        '  - name: r\n    paths: ["/r"]\n'
        "    plugins:\n    - name: response-ratelimiting\n"
        f"      config: {{policy: redis, redis: {{host: 127.0.0.1, port: {redis_port_for_test}}},"
        " limits: {videos: {day: 4}}}\n")
    nodes = [node_factory(f"n{i}", workers="2", database="off", declarative_config=str(decl)) for i in (1, 2)]
    for node in nodes:
        node.start()
    got = []
    for i in range(5):
        got.append(get_for_test(nodes[i % 2], "/r/a?cost=videos=1"))
        # the cost is added in the log phase, after the response (Kong: a timer): the next request,
        # on the other node, reads the shared count once this one's INCRBY is in Redis
        _wait_for_redis_total(redis_port_for_test, min(i + 1, 4))
    assert [r.status_code for r in got] == [200, 200, 200, 200, 429]
    assert [remaining_for_test(r) for r in got] == ["3", "2", "1", "0", "0"]


def _wait_for_redis_total(port: int, total: int) -> None:
    import redis

    client, deadline = redis.Redis(port=port), time.monotonic() + 30
    try:
        while sum(int(client.get(k) or 0) for k in client.keys("*")) < total:
            assert time.monotonic() < deadline, f"the counters never reached {total} in Redis"
            time.sleep(0.02)
    finally:
        client.close()
