"""zipkin plugin end to end: a real node, a client's B3 (multi and single), W3C, Jaeger and OT
trace continued through it to a real upstream, and the spans POSTed to a real HTTP receiver
that decodes the Zipkin v2 JSON it gets (ids, parent/child tree, kinds, names, tags, timings)."""
from __future__ import annotations

import http.server
import json
import threading
import time

import httpx

TRACE, SPAN, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "a1b2c3d4e5f60718"


class ZipkinReceiverForTest:
    """A Zipkin v2 `POST /api/v2/spans` endpoint: every body decoded as a JSON list of spans."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.content_types.append(self.headers["Content-Type"])
                receiver.spans.extend(json.loads(body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v2/spans"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.spans)


class EchoOriginForTest:
    """Answers each request with the headers it received, as JSON; `/slow` waits 0.2 s first."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path.split("?")[0].endswith("/slow"):
                    time.sleep(0.2)
                body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _node(node_factory, receiver, origin, **config):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "r", "paths": ["/z"]}).status_code == 201
    plugin = {"name": "zipkin", "config": {"http_endpoint": receiver.url, "sample_ratio": 1,
                                           "queue": {"max_batch_size": 100, "max_coalescing_delay": 0.2}, **config}}
    r = admin.post("/services/s/plugins", json=plugin)
    assert r.status_code == 201, r.text
    return node, admin


def test_a_client_b3_trace_continues_to_the_upstream_and_its_spans_reach_zipkin(node_factory):
    receiver, origin = ZipkinReceiverForTest(), EchoOriginForTest()
    node, admin = _node(node_factory, receiver, origin, http_response_header_for_traceid="x-trace-id",
                        static_tags=[{"name": "env", "value": "test"}], default_service_name="upstream")
    headers = {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-parentspanid": PARENT, "x-b3-sampled": "1",
               "zipkin-tags": "team=edge; bad"}
    before = time.time_ns() // 1000
    r = httpx.get(node.proxy + "/z/slow?a=1", headers=headers)
    after = time.time_ns() // 1000
    assert r.status_code == 200 and r.headers["x-trace-id"] == TRACE
    seen = r.json()
    # B3 shares the client's span: the upstream's parent is the client's span id, its span is new
    assert seen["x-b3-traceid"] == TRACE and seen["x-b3-parentspanid"] == SPAN and seen["x-b3-sampled"] == "1"
    proxy_id = seen["x-b3-spanid"]
    assert proxy_id not in (SPAN, PARENT) and "traceparent" not in seen

    spans = receiver.wait_for(3)
    assert receiver.content_types == ["application/json"] and len(spans) == 3
    by_name = {s["name"]: s for s in spans}
    request, proxy, balancer = by_name["GET"], by_name["GET (proxy)"], by_name["GET (balancer try 1)"]
    assert {s["traceId"] for s in spans} == {TRACE}
    # the tree: client's parent <- request span (the shared client span) <- proxy span <- upstream
    assert (request["id"], request["parentId"]) == (SPAN, PARENT)
    assert (proxy["id"], proxy["parentId"]) == (proxy_id, SPAN)
    assert (request["kind"], proxy["kind"], balancer["kind"]) == ("SERVER", "CLIENT", "CLIENT")
    assert request["localEndpoint"] == {"serviceName": "kong"} == proxy["localEndpoint"]
    # the balancer's one try: a child of the request span, towards the origin's address
    assert balancer["parentId"] == SPAN and balancer["tags"]["kong.balancer.try"] == "1"
    assert balancer["remoteEndpoint"] == {"serviceName": "s", "ipv4": "127.0.0.1", "port": origin.port}
    assert request["timestamp"] <= balancer["timestamp"] <= balancer["timestamp"] + balancer["duration"] \
        <= request["timestamp"] + request["duration"]
    # timings: microseconds, within what the client saw (1 ms slack: two processes' clocks), the
    # proxy span inside the request span, covering the upstream's 0.2 s
    slack = 1000
    r_start, r_end = request["timestamp"], request["timestamp"] + request["duration"]
    p_start, p_end = proxy["timestamp"], proxy["timestamp"] + proxy["duration"]
    assert before - slack <= r_start <= p_start <= p_end <= r_end <= after + slack
    assert proxy["duration"] >= 200_000
    for span in (request, proxy):
        stamps = [a["timestamp"] for a in span["annotations"]]
        assert all(span["timestamp"] <= t <= span["timestamp"] + span["duration"] for t in stamps)
    assert [a["value"] for a in request["annotations"]] == ["krs", "krf"]
    assert [a["value"] for a in proxy["annotations"]] == ["kas", "kaf", "khs", "khf", "kbs", "kbf"]
    tags = request["tags"]
    assert tags["lc"] == "kong" and tags["http.method"] == "GET" and tags["http.path"] == "/z/slow"
    assert tags["http.status_code"] == "200" and tags["http.protocol"] == "HTTP/1.1"
    assert tags["env"] == "test" and tags["team"] == "edge" and "bad" not in tags
    assert tags["kong.node.id"] == (node.prefix / "node_id").read_text().strip()
    assert request["remoteEndpoint"] == {"serviceName": "upstream", "ipv4": "127.0.0.1"}
    service, route = admin.get("/services/s").json(), admin.get("/routes/r").json()
    assert proxy["tags"]["kong.service"] == service["id"] and proxy["tags"]["kong.route"] == route["id"]
    assert proxy["tags"]["peer.hostname"] == "127.0.0.1"
    assert proxy["remoteEndpoint"] == {"serviceName": "s", "ipv4": "127.0.0.1", "port": origin.port}


def test_single_header_w3c_jaeger_and_ot_contexts_are_read_and_written_back_in_kind(node_factory):
    receiver, origin = ZipkinReceiverForTest(), EchoOriginForTest()
    node, _ = _node(node_factory, receiver, origin)
    with httpx.Client(base_url=node.proxy) as client:
        b3 = client.get("/z", headers={"b3": f"{TRACE}-{SPAN}-1-{PARENT}"}).json()
        w3c = client.get("/z", headers={"traceparent": f"00-{TRACE}-{SPAN}-01"}).json()
        jaeger = client.get("/z", headers={"uber-trace-id": f"{TRACE}:{SPAN}:0:1", "uberctx-user": "ann"}).json()
        ot = client.get("/z", headers={"ot-tracer-traceid": TRACE[16:], "ot-tracer-spanid": SPAN,
                                       "ot-tracer-sampled": "0"}).json()
        fresh = client.get("/z").json()
    trace, span, sampled, parent = b3["b3"].split("-")
    assert (trace, sampled, parent) == (TRACE, "1", SPAN) and span != SPAN and "x-b3-traceid" not in b3
    version, trace, w3c_parent, flags = w3c["traceparent"].split("-")
    assert (version, trace, flags) == ("00", TRACE, "01") and w3c_parent != SPAN
    trace, span, parent, flags = jaeger["uber-trace-id"].split(":")
    assert (trace, parent, flags) == (TRACE, SPAN, "01") and jaeger["uberctx-user"] == "ann"
    assert ot["ot-tracer-traceid"] == TRACE[16:] and ot["ot-tracer-sampled"] == "0"
    # no client context: a new 16-byte trace in default_header_type (b3)
    assert len(fresh["x-b3-traceid"]) == 32 and fresh["x-b3-sampled"] == "1" and "x-b3-parentspanid" in fresh

    spans = receiver.wait_for(12)
    time.sleep(0.5)  # the unsampled OT request's spans would have come in the same batches
    spans = receiver.spans
    assert len(spans) == 12 and TRACE[16:] not in {s["traceId"] for s in spans}  # request, proxy, try: 4 times
    servers = {s["traceId"]: [] for s in spans}
    for s in spans:
        servers[s["traceId"]].append(s)
    # w3c names the client's span as the parent of the request span (not shared, unlike b3/jaeger)
    w3c_server = [s for s in spans if s["kind"] == "SERVER" and s.get("parentId") == SPAN and s["id"] != SPAN]
    assert len(w3c_server) == 1
    w3c_proxy = [s for s in spans if s["kind"] == "CLIENT" and s["id"] == w3c_parent]
    assert w3c_proxy and w3c_proxy[0]["parentId"] == w3c_server[0]["id"]
    [new_server] = [s for s in spans if s["traceId"] == fresh["x-b3-traceid"] and s["kind"] == "SERVER"]
    assert "parentId" not in new_server and new_server["id"] == fresh["x-b3-parentspanid"]


def test_header_type_injects_the_named_format_too_and_sampling_off_sends_nothing(node_factory):
    receiver, origin = ZipkinReceiverForTest(), EchoOriginForTest()
    node, _ = _node(node_factory, receiver, origin, header_type="w3c", sample_ratio=0, traceid_byte_count=8)
    seen = httpx.get(node.proxy + "/z", headers={"x-b3-traceid": TRACE[:16], "x-b3-spanid": SPAN}).json()
    # preserve (b3, as it came) plus w3c; an 8-byte id is zero-padded in traceparent
    assert seen["x-b3-traceid"] == TRACE[:16] and seen["x-b3-sampled"] == "0"
    assert seen["traceparent"] == f"00-{'0' * 16}{TRACE[:16]}-{seen['x-b3-spanid']}-00"
    fresh = httpx.get(node.proxy + "/z").json()
    assert len(fresh["x-b3-traceid"]) == 16 and fresh["traceparent"].endswith("-00")
    time.sleep(0.5)  # sample_ratio 0: nothing would have been sent by now (coalescing delay 0.2 s)
    assert receiver.spans == []


def test_bad_config_is_a_400_naming_the_field_and_get_root_lists_zipkin(node_factory):
    node = node_factory()
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert "zipkin" in admin.get("/").json()["plugins"]["available_on_server"]
    for config, field, words in (({"header_type": "aws"}, "header_type", "not supported"),
                                 ({"sample_ratio": 2}, "sample_ratio", ""),
                                 ({"traceid_byte_count": 12}, "traceid_byte_count", ""),
                                 ({"static_tags": [{"name": "lc", "value": "x"}]}, "static_tags", "must not be"),
                                 ({"http_endpoint": "ftp://x"}, "http_endpoint", "scheme")):
        r = admin.post("/plugins", json={"name": "zipkin", "config": config})
        assert r.status_code == 400, r.text
        message = json.dumps(r.json()["fields"]["config"][field])
        assert words in message
    assert admin.get("/plugins").json()["data"] == []



def test_method_path_span_names_and_phase_durations_as_tags(node_factory):
    receiver, origin = ZipkinReceiverForTest(), EchoOriginForTest()
    node, _ = _node(node_factory, receiver, origin, http_span_name="method_path", phase_duration_flavor="tags")
    assert httpx.get(node.proxy + "/z/items").status_code == 200
    spans = receiver.wait_for(3)
    [server] = [s for s in spans if s["kind"] == "SERVER"]
    [proxy] = [s for s in spans if s["name"].endswith("(proxy)")]
    assert server["name"] == "GET /z/items" and proxy["name"] == "GET /z/items (proxy)"
    assert {s["name"] for s in spans} == {"GET /z/items", "GET /z/items (proxy)", "GET /z/items (balancer try 1)"}
    assert proxy["parentId"] == server["id"] and "annotations" not in server and "annotations" not in proxy
    assert int(proxy["tags"]["kong.access.duration_ms"]) >= 0


def test_the_authenticated_consumer_and_credential_are_tagged(node_factory):
    receiver, origin = ZipkinReceiverForTest(), EchoOriginForTest()
    node, admin = _node(node_factory, receiver, origin)
    assert admin.post("/services/s/plugins", json={"name": "key-auth"}).status_code == 201
    consumer = admin.post("/consumers", json={"username": "ann"}).json()
    credential = admin.post("/consumers/ann/key-auth", json={"key": "k-ann"}).json()
    for _ in range(100):  # the new consumer reaches both workers shortly (bounded wait, no timing asserted)
        r = httpx.get(node.proxy + "/z/items", headers={"apikey": "k-ann"})
        if r.status_code == 200:
            break
        time.sleep(0.1)
    assert r.status_code == 200
    assert httpx.get(node.proxy + "/z/denied").status_code == 401  # answered by key-auth: still traced
    def both_spans_in() -> bool:  # each worker batches its own spans: they may arrive in either order
        servers = [s for s in receiver.spans if s["kind"] == "SERVER"]
        return (any(s["tags"].get("http.path") == "/z/denied" for s in servers)
                and any(s["tags"].get("http.status_code") == "200" for s in servers))

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not both_spans_in():
        time.sleep(0.05)
    servers = [s for s in receiver.spans if s["kind"] == "SERVER"]
    ok = [s for s in servers if s["tags"]["http.status_code"] == "200"][-1]
    [refused] = [s for s in servers if s["tags"]["http.path"] == "/z/denied"]
    assert refused["tags"]["http.status_code"] == "401"
    assert ok["tags"]["kong.consumer"] == consumer["id"] and ok["tags"]["kong.credential"] == credential["id"]
    assert "kong.consumer" not in refused["tags"]
