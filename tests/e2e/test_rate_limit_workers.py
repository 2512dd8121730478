"""rate-limiting `policy: local` on a node with two workers: one limit for the node, as Kong's shared dict."""
from __future__ import annotations

import re
import time

import httpx

from tests.e2e.test_node_lifecycle import _origin_for_test

MAX_REQUESTS = 60  # enough for the kernel to hand new connections to both workers


def _declarative_for_test(port: int) -> str:
    return (
        '_format_version: "3.0"\n'
        "services:\n"
        f"- name: origin\n  url: http://127.0.0.1:{port}\n"
        '  routes:\n  - name: limited\n    paths: ["/limited"]\n'
        "  plugins:\n  - name: rate-limiting\n    config: {minute: 5, policy: local}\n"
    )


def _requests_by_worker_for_test(node) -> dict[str, int]:
    text = httpx.get(node.status + "/metrics").text
    return {w: int(float(n)) for w, n in re.findall(r'meshway_worker_requests_total\{worker="(\d+)"\} (\S+)', text)}


def _settled_counts_for_test(node, total: int) -> dict[str, int]:
    """Per-worker request counts once the workers have counted all `total` requests."""
    counts = _requests_by_worker_for_test(node)
    while sum(counts.values()) < total:
        time.sleep(0.05)
        counts = _requests_by_worker_for_test(node)
    return counts


def _room_in_this_minute_for_test(needed: float = 20.0) -> None:
    # All requests must fall in one minute window: start early in a minute (setup, not an assertion).
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.2)


def test_local_policy_limits_the_node_not_each_worker(node_factory, tmp_path):
    origin = _origin_for_test()
    try:
        decl = tmp_path / "meshway.yml"
        decl.write_text(_declarative_for_test(origin.port))
        node = node_factory(workers="2", database="off", declarative_config=str(decl))
        node.start()
        _room_in_this_minute_for_test()
        responses: list[httpx.Response] = []
        counts: dict[str, int] = {}
        while len(responses) < 12 or (len(counts) < 2 or 0 in counts.values()) and len(responses) < MAX_REQUESTS:
            for _ in range(12 if len(responses) < 12 else 4):
                # A new connection each time (httpx.get opens one), so either worker may accept it.
                responses.append(httpx.get(node.proxy + "/limited/x", headers={"Connection": "close"}))
            counts = _settled_counts_for_test(node, len(responses))
        statuses = [r.status_code for r in responses]
        assert len(counts) == 2 and 0 not in counts.values(), f"one worker served everything: {counts}"
        assert statuses.count(200) == 5 and statuses.count(429) == len(statuses) - 5, statuses
        passed = [r.headers["X-RateLimit-Remaining-Minute"] for r in responses if r.status_code == 200]
        assert passed == ["4", "3", "2", "1", "0"]  # one count for the node, whichever worker answered
        refused = responses[-1]
        assert refused.json() == {"message": "API rate limit exceeded"}
        assert refused.headers["RateLimit-Limit"] == "5" and refused.headers["X-RateLimit-Remaining-Minute"] == "0"
        assert list((node.prefix / "shm").iterdir()) == [node.prefix / "shm" / "rate-limiting.2"]
    finally:
        origin.stop()


def test_a_service_or_global_limit_counts_over_all_its_routes_as_kong(node_factory, tmp_path):
    """Kong keys the counters by the plugin's own route and service ids (`conf.route_id`,
    `conf.service_id`), not the request's: a limit on a service holds over all its routes, a
    global one over every route it applies to (one instance of a plugin runs per request: the most
    specific), and a route's own limit only over that route."""
    origin = _origin_for_test()
    try:
        decl = tmp_path / "meshway.yml"
        decl.write_text(
            '_format_version: "3.0"\n'
            "services:\n"
            f"- name: a\n  url: http://127.0.0.1:{origin.port}\n"
            '  routes:\n  - name: a1\n    paths: ["/a1"]\n  - name: a2\n    paths: ["/a2"]\n'
            "  plugins:\n  - name: rate-limiting\n    config: {minute: 3, policy: local, limit_by: ip}\n"
            f"- name: b\n  url: http://127.0.0.1:{origin.port}\n"
            '  routes:\n  - name: b1\n    paths: ["/b1"]\n  - name: b2\n    paths: ["/b2"]\n'
            "    plugins:\n    - name: rate-limiting\n      config: {hour: 2, policy: local, limit_by: ip}\n"
            f"- name: c\n  url: http://127.0.0.1:{origin.port}\n"
            '  routes:\n  - name: c1\n    paths: ["/c1"]\n'
            "plugins:\n- name: rate-limiting\n  config: {day: 3, policy: local, limit_by: ip}\n")
        node = node_factory(database="off", declarative_config=str(decl))
        node.start()
        _room_in_this_minute_for_test()
        with httpx.Client(base_url=node.proxy) as client:
            service_a = [client.get(p) for p in ("/a1", "/a2", "/a1", "/a2")]
            assert [r.status_code for r in service_a] == [200, 200, 200, 429]
            assert [r.headers.get("X-RateLimit-Remaining-Minute") for r in service_a[:3]] == ["2", "1", "0"]
            # b2's own hourly limit counts b2 alone; the global daily one counts b1 and c1 together
            assert [client.get(p).status_code for p in ("/b2", "/b2", "/b2")] == [200, 200, 429]
            assert [client.get(p).headers["X-RateLimit-Remaining-Day"] for p in ("/b1", "/c1", "/b1")] == ["2", "1", "0"]
            refused = client.get("/c1")
            assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit-Day"] == "3"
    finally:
        origin.stop()
