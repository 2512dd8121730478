"""The balancer's tries, as Kong exposes them: a real node, an upstream with two targets of which
one refuses connections (a free port nothing listens on), `retries: 1`. A request whose first try
hit the dead target is retried on the live one; the file-log line's `tries` lists both, and the
tracing plugins export one span per try (opentelemetry's `kong.balancer`, zipkin's
`<name> (balancer try N)`) to real receivers that decode what they get."""
from __future__ import annotations

import json
import time

import httpx
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.e2e.test_opentelemetry import ReceiverForTest, _attributes
from tests.e2e.test_zipkin import EchoOriginForTest, ZipkinReceiverForTest
from tests.helpers.node import free_port

SPAN = "00f067aa0ba902b7"


def _node_with_a_dead_and_a_live_target(node_factory, tmp_path, plugins: list[dict]):
    """One worker (one balancer: round robin alternates between the two targets)."""
    origin, dead = EchoOriginForTest(), free_port()
    node = node_factory(workers="1")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/upstreams", json={"name": "pair"}).status_code == 201
    for target in (f"127.0.0.1:{dead}", f"127.0.0.1:{origin.port}"):
        assert admin.post("/upstreams/pair/targets", json={"target": target}).status_code == 201
    assert admin.post("/services", json={"name": "s", "host": "pair", "retries": 1}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "r", "paths": ["/t"]}).status_code == 201
    log_path = tmp_path / "tries.log"
    for plugin in [{"name": "file-log", "config": {"path": str(log_path)}}, *plugins]:
        r = admin.post("/services/s/plugins", json=plugin)
        assert r.status_code == 201, r.text
    return node, origin, dead, log_path


def _log_entries(path) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def _wait_for_log(path, n: int, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = _log_entries(path)
        if len(entries) >= n:
            return entries
        time.sleep(0.05)
    return _log_entries(path)


def _retried(node, log_path, headers_for) -> tuple[dict, dict]:
    """Send requests until the log shows one with two tries: (its log entry, what the origin saw)."""
    with httpx.Client() as client:
        for i in range(1, 7):  # round robin over two targets: the dead one comes first within two
            r = client.get(node.proxy + "/t/slow?q=1", headers={"x-n": str(i), **headers_for(i)})
            assert r.status_code == 200, r.text
            entry = [e for e in _wait_for_log(log_path, i) if e["request"]["headers"]["x-n"] == str(i)][0]
            if len(entry["tries"]) == 2:
                return entry, r.json()
    raise AssertionError("no request was retried")


def _trace(i: int) -> str:
    return f"{i:032x}"


def test_the_log_line_lists_both_tries_and_opentelemetry_exports_a_span_per_try(node_factory, tmp_path):
    receiver = ReceiverForTest()
    node, origin, dead, log_path = _node_with_a_dead_and_a_live_target(node_factory, tmp_path, [
        {"name": "opentelemetry", "config": {"traces_endpoint": receiver.url,
                                             "queue": {"max_coalescing_delay": 0.1}}}])
    before_ms = time.time_ns() // 1_000_000
    entry, seen = _retried(node, log_path, lambda i: {"traceparent": f"00-{_trace(i)}-{SPAN}-01"})

    # Kong's balancer_data.tries: the dead target's try failed (nginx's "failed", 502), then the live one
    first, second = entry["tries"]
    assert (first["ip"], first["port"], first["state"], first["code"]) == ("127.0.0.1", dead, "failed", 502)
    assert (second["ip"], second["port"]) == ("127.0.0.1", origin.port) and "state" not in second
    assert before_ms <= first["balancer_start"] <= second["balancer_start"] <= entry["started_at"] + 5_000
    assert first["balancer_start_ns"] // 1_000_000 == first["balancer_start"]
    for t in (first, second):
        assert 0 <= t["balancer_latency"] <= t["balancer_latency_ns"] // 1_000_000 + 1
    assert entry["upstream_uri"] == "/slow?q=1" and entry["response"]["status"] == 200
    assert entry["upstream_status"] == "502, 200"  # nginx's $upstream_status, as Kong logs it

    trace = seen["traceparent"].split("-")[1]
    spans = [s for s in receiver.wait_for(3) if s.trace_id.hex() == trace]
    deadline = time.monotonic() + 10
    while len(spans) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        spans = [s for s in receiver.spans() if s.trace_id.hex() == trace]
    [request] = [s for s in spans if s.name == "kong"]
    tries = sorted((s for s in spans if s.name == "kong.balancer"), key=lambda s: _attributes(s.attributes)["try_count"])
    assert len(spans) == 3 and len(tries) == 2
    assert request.parent_span_id.hex() == SPAN
    # the tree: client <- kong <- kong.balancer (each try) ; the upstream's parent is the last try
    assert all(s.parent_span_id == request.span_id and s.kind == Span.SpanKind.SPAN_KIND_CLIENT for s in tries)
    assert seen["traceparent"].split("-")[2] == tries[1].span_id.hex() != tries[0].span_id.hex()
    failed, reached = (_attributes(s.attributes) for s in tries)
    assert failed == {"try_count": 1, "net.peer.ip": "127.0.0.1", "net.peer.port": dead,
                      "http.status_code": 502, "net.peer.name": "127.0.0.1"}
    assert tries[0].status.code == Status.StatusCode.STATUS_CODE_ERROR
    assert reached == {"try_count": 2, "net.peer.ip": "127.0.0.1", "net.peer.port": origin.port,
                       "net.peer.name": "127.0.0.1"}
    assert tries[1].status.code == Status.StatusCode.STATUS_CODE_UNSET
    # timings: the tries in order inside the request span; the failed one ends at its refusal, the
    # last one lasts until the response (it covers the origin's 0.2 s)
    assert tries[0].start_time_unix_nano // 1_000_000 == first["balancer_start"]
    assert request.start_time_unix_nano <= tries[0].start_time_unix_nano <= tries[0].end_time_unix_nano \
        <= tries[1].start_time_unix_nano <= tries[1].end_time_unix_nano <= request.end_time_unix_nano
    assert tries[1].end_time_unix_nano - tries[1].start_time_unix_nano >= 200_000_000
    assert tries[0].end_time_unix_nano - tries[0].start_time_unix_nano < 200_000_000


def test_zipkin_exports_a_span_per_try_with_the_picked_peer_as_remote_endpoint(node_factory, tmp_path):
    receiver = ZipkinReceiverForTest()
    node, origin, dead, log_path = _node_with_a_dead_and_a_live_target(node_factory, tmp_path, [
        {"name": "zipkin", "config": {"http_endpoint": receiver.url, "sample_ratio": 1,
                                      "queue": {"max_coalescing_delay": 0.1}}}])
    entry, seen = _retried(node, log_path, lambda i: {"x-b3-traceid": _trace(i), "x-b3-spanid": SPAN,
                                                      "x-b3-sampled": "1"})
    trace = seen["x-b3-traceid"]
    deadline = time.monotonic() + 10
    while len([s for s in receiver.spans if s["traceId"] == trace]) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    spans = {s["name"]: s for s in receiver.spans if s["traceId"] == trace}
    assert sorted(spans) == ["GET", "GET (balancer try 1)", "GET (balancer try 2)", "GET (proxy)"]
    request, proxy = spans["GET"], spans["GET (proxy)"]
    first, second = spans["GET (balancer try 1)"], spans["GET (balancer try 2)"]
    assert request["id"] == SPAN and proxy["parentId"] == SPAN and seen["x-b3-spanid"] == proxy["id"]
    assert first["parentId"] == second["parentId"] == SPAN and first["kind"] == second["kind"] == "CLIENT"
    service = httpx.get(node.admin + "/services/s").json()
    # the peer each try picked, not the service's host (the upstream's name)
    assert first["remoteEndpoint"] == {"serviceName": "s", "ipv4": "127.0.0.1", "port": dead}
    assert second["remoteEndpoint"] == {"serviceName": "s", "ipv4": "127.0.0.1", "port": origin.port}
    assert proxy["remoteEndpoint"] == {"serviceName": "s", "ipv4": "127.0.0.1", "port": origin.port}
    assert proxy["tags"]["peer.hostname"] == "127.0.0.1"
    assert first["tags"] == {"kong.balancer.try": "1", "error": "true", "kong.balancer.state": "failed",
                             "http.status_code": "502", "kong.service": service["id"], "kong.service_name": "s",
                             "kong.route": entry["route"]["id"], "kong.route_name": "r"}
    assert second["tags"]["kong.balancer.try"] == "2" and "error" not in second["tags"]
    # timings (microseconds): the tries in order inside the request span, each from its start to
    # its connection (Kong's: balancer_start + balancer_latency + upstream_connect_time)
    assert first["timestamp"] == entry["tries"][0]["balancer_start_ns"] // 1000
    assert request["timestamp"] <= first["timestamp"] <= first["timestamp"] + first["duration"] \
        <= second["timestamp"] <= second["timestamp"] + second["duration"] \
        <= request["timestamp"] + request["duration"]
    assert second["duration"] < 200_000  # the connection only, not the origin's 0.2 s answer


def test_every_try_failed_each_is_logged_failed_and_http2_requests_record_them_too(node_factory, tmp_path):
    node, origin, dead, log_path = _node_with_a_dead_and_a_live_target(node_factory, tmp_path, [])
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/upstreams", json={"name": "gone"}).status_code == 201
    dead2 = free_port()
    for port in (dead, dead2):
        assert admin.post("/upstreams/gone/targets", json={"target": f"127.0.0.1:{port}"}).status_code == 201
    assert admin.post("/services", json={"name": "g", "host": "gone", "retries": 3}).status_code == 201
    assert admin.post("/services/g/routes", json={"paths": ["/g"]}).status_code == 201
    log_path2 = tmp_path / "gone.log"
    assert admin.post("/services/g/plugins", json={"name": "file-log", "config": {"path": str(log_path2)}}
                      ).status_code == 201
    assert httpx.get(node.proxy + "/g").status_code == 502
    [entry] = _wait_for_log(log_path2, 1)
    # both targets refused; no third try (a retry never goes back to a target it tried)
    assert sorted((t["port"], t["state"], t["code"]) for t in entry["tries"]) == sorted(
        [(dead, "failed", 502), (dead2, "failed", 502)])
    assert entry["upstream_status"] == "502, 502" and entry["response"]["status"] == 502
    # HTTP/2 from the client: the same tries
    with httpx.Client(http2=True, verify=False) as client:
        for _ in range(2):
            r = client.get(node.proxy_ssl + "/t")
            assert r.http_version == "HTTP/2" and r.status_code == 200
    entries = _wait_for_log(log_path, 2)
    assert len(entries) == 2 and any(len(e["tries"]) == 2 for e in entries)  # round robin: one at least
    for e in entries:  # each ends on the live target, after the dead one when it went there first
        ports = [(t["port"], t.get("state")) for t in e["tries"]]
        assert ports in ([(origin.port, None)], [(dead, "failed"), (origin.port, None)])
