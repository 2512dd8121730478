"""opentelemetry plugin end to end: a real node (2 workers), a client's W3C trace continued through
it to the upstream, and the request and balancer spans exported to a real OTLP/HTTP receiver that decodes what
it gets with opentelemetry-proto (ids, parent, timings, Kong's span name and attributes)."""
from __future__ import annotations

import http.server
import json
import threading
import time

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                        ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

CLIENT_TRACE, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


class ReceiverForTest:
    """An OTLP/HTTP traces endpoint: every POST body decoded as an ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.content_types.append(self.headers["Content-Type"])
                receiver.requests.append(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[Span]:
        return [s for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def wait_for(self, count: int, timeout: float = 10) -> list[Span]:
        deadline = time.monotonic() + timeout
        while len(self.spans()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.spans()


class EchoOriginForTest:
    """Answers each request with the headers it received, as JSON; `/otel/slow` waits 0.3 s first."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path.split("?")[0].endswith("/slow"):
                    time.sleep(0.3)
                body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _attributes(kvs) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


def _request_and_balancer(receiver: ReceiverForTest) -> tuple[Span, Span]:
    """The one request's two spans: `kong` and its one `kong.balancer` try."""
    spans = {s.name: s for s in receiver.wait_for(2)}
    assert len(receiver.spans()) == 2 and set(spans) == {"kong", "kong.balancer"}
    return spans["kong"], spans["kong.balancer"]


def _node_with_plugin(node_factory, receiver, origin, **config):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "r", "paths": ["/otel"]}).status_code == 201
    plugin = {"name": "opentelemetry", "config": {"traces_endpoint": receiver.url,
                                                  "queue": {"max_batch_size": 200, "max_coalescing_delay": 0.2},
                                                  **config}}
    r = admin.post("/services/s/plugins", json=plugin)
    assert r.status_code == 201, r.text
    return node


def test_a_client_trace_continues_through_the_node_and_its_span_is_exported(node_factory):
    receiver, origin = ReceiverForTest(), EchoOriginForTest()
    node = _node_with_plugin(node_factory, receiver, origin, http_response_header_for_traceid="x-trace-id",
                             resource_attributes={"deployment.environment": "test"})
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    before = time.time_ns()
    r = httpx.get(node.proxy + "/otel/slow?a=1", headers={"traceparent": traceparent, "tracestate": "vendor=x"})
    after = time.time_ns()
    assert r.status_code == 200 and r.headers["x-trace-id"] == CLIENT_TRACE
    seen = r.json()
    version, trace, parent, flags = seen["traceparent"].split("-")
    assert (version, trace, flags) == ("00", CLIENT_TRACE, "01") and parent != CLIENT_SPAN
    assert seen["tracestate"] == "vendor=x"

    span, balancer = _request_and_balancer(receiver)
    assert receiver.content_types == ["application/x-protobuf"]
    # the request span is the client's child; its balancer span (the one try) the upstream's parent
    assert (span.trace_id.hex(), span.parent_span_id.hex()) == (CLIENT_TRACE, CLIENT_SPAN)
    assert (balancer.trace_id.hex(), balancer.span_id.hex(), balancer.parent_span_id) == (CLIENT_TRACE, parent, span.span_id)
    assert span.kind == Span.SpanKind.SPAN_KIND_SERVER and balancer.kind == Span.SpanKind.SPAN_KIND_CLIENT
    assert _attributes(balancer.attributes)["try_count"] == 1
    assert span.start_time_unix_nano <= balancer.start_time_unix_nano <= balancer.end_time_unix_nano \
        <= span.end_time_unix_nano
    # within the request as the client timed it, with 100 ms of slack: the span ends in the log
    # phase, which runs after the response has gone out, so on a busy machine after the client's
    # own `after` reading (Kong's span also ends in its log phase)
    slack = 100_000_000
    assert before - slack <= span.start_time_unix_nano <= span.end_time_unix_nano <= after + slack
    assert span.end_time_unix_nano - span.start_time_unix_nano >= 300_000_000  # covers the upstream's 0.3 s
    attrs = _attributes(span.attributes)
    assert attrs["http.method"] == "GET" and attrs["http.status_code"] == 200
    assert attrs["http.url"].endswith("/otel/slow?a=1") and attrs["http.url"].startswith("http://")
    assert attrs["http.route"] == "/otel" and attrs["net.peer.ip"] == "127.0.0.1" and attrs["kong.request.id"]
    assert attrs["http.flavor"] == "1.1" and attrs["http.host"].startswith("127.0.0.1")
    [resource_spans] = receiver.requests[0].resource_spans
    resource = _attributes(resource_spans.resource.attributes)
    assert resource["service.name"] == "kong" and resource["deployment.environment"] == "test"
    assert resource["service.instance.id"] == (node.prefix / "node_id").read_text().strip()
    assert resource_spans.scope_spans[0].scope.name == "kong-internal"


def test_new_traces_unsampled_parents_and_batches(node_factory):
    receiver, origin = ReceiverForTest(), EchoOriginForTest()
    node = _node_with_plugin(node_factory, receiver, origin)
    with httpx.Client() as client:
        # no traceparent, or a broken one: a new trace whose root is this node's span
        fresh = [client.get(node.proxy + "/otel", headers=h).json()["traceparent"]
                 for h in ({}, {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, {"traceparent": "junk"})]
        # a parent that was not sampled: propagated as such, nothing exported
        unsampled = client.get(node.proxy + "/otel", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"})
    assert unsampled.json()["traceparent"].startswith(f"00-{CLIENT_TRACE}-")
    assert unsampled.json()["traceparent"].endswith("-00")
    spans = receiver.wait_for(6)
    time.sleep(0.5)  # the unsampled request's spans would have been in the same batches
    spans = receiver.spans()
    assert len(spans) == 6 and CLIENT_TRACE not in {s.trace_id.hex() for s in spans}  # kong + kong.balancer each
    by_id = {s.span_id.hex(): s for s in spans}
    for header in fresh:
        _, trace, parent, flags = header.split("-")
        balancer = by_id[parent]
        assert flags == "01" and balancer.name == "kong.balancer" and balancer.trace_id.hex() == trace
        root = by_id[balancer.parent_span_id.hex()]
        assert root.name == "kong" and root.parent_span_id == b"" and root.trace_id.hex() == trace
    assert len(receiver.requests) < 3  # batched: max_coalescing_delay gathered them


def test_an_http2_request_is_traced_the_same_way(node_factory):
    receiver, origin = ReceiverForTest(), EchoOriginForTest()
    node = _node_with_plugin(node_factory, receiver, origin)
    with httpx.Client(http2=True, verify=False) as client:
        r = client.get(node.proxy_ssl + "/otel", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert r.http_version == "HTTP/2" and r.status_code == 200
    _, trace, parent, _ = r.json()["traceparent"].split("-")
    span, balancer = _request_and_balancer(receiver)
    assert (span.trace_id.hex(), span.parent_span_id.hex()) == (CLIENT_TRACE, CLIENT_SPAN)
    assert (balancer.span_id.hex(), balancer.parent_span_id) == (parent, span.span_id)
    attrs = _attributes(span.attributes)
    assert attrs["http.flavor"] == "2.0" and attrs["http.scheme"] == "https" and attrs["http.status_code"] == 200


def test_a_dbless_node_traces_from_its_declarative_file(node_factory, tmp_path):
    receiver, origin = ReceiverForTest(), EchoOriginForTest()
    config = {"_format_version": "3.0", "services": [{
        "name": "s", "url": origin.url, "routes": [{"name": "r", "paths": ["/otel"]}],
        "plugins": [{"name": "opentelemetry", "config": {"endpoint": receiver.url, "queue": {"max_coalescing_delay": 0.1},
                                                          "http_response_header_for_traceid": "x-trace-id"}}]}]}
    path = tmp_path / "kong.yml"
    path.write_text(json.dumps(config))
    node = node_factory("dbless", database="off", declarative_config=str(path))
    node.start()
    r = httpx.get(node.proxy + "/otel", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert r.status_code == 200 and r.headers["x-trace-id"] == CLIENT_TRACE
    span, balancer = _request_and_balancer(receiver)
    assert span.parent_span_id.hex() == CLIENT_SPAN and balancer.parent_span_id == span.span_id
    assert r.json()["traceparent"].split("-")[2] == balancer.span_id.hex()


def test_b3_and_jaeger_contexts_are_continued_and_written_back_in_kind(node_factory):
    receiver, origin = ReceiverForTest(), EchoOriginForTest()
    node = _node_with_plugin(node_factory, receiver, origin)
    with httpx.Client() as client:
        b3 = client.get(node.proxy + "/otel", headers={"x-b3-traceid": CLIENT_TRACE, "x-b3-spanid": CLIENT_SPAN,
                                                       "x-b3-sampled": "1"}).json()
        jaeger = client.get(node.proxy + "/otel", headers={"uber-trace-id": f"{CLIENT_TRACE[16:]}:{CLIENT_SPAN}:0:1"}).json()
    # preserve: the upstream gets the format the client used, naming this node's balancer span
    # and, as its parent, the request span (the client's child)
    assert b3["x-b3-traceid"] == CLIENT_TRACE and "traceparent" not in b3
    trace, span, parent, flags = jaeger["uber-trace-id"].split(":")
    assert (trace, flags) == (CLIENT_TRACE[16:], "01")
    spans = {s.span_id.hex(): s for s in receiver.wait_for(4)}
    assert spans[b3["x-b3-spanid"]].name == "kong.balancer" and spans[b3["x-b3-spanid"]].trace_id.hex() == CLIENT_TRACE
    assert spans[b3["x-b3-spanid"]].parent_span_id.hex() == b3["x-b3-parentspanid"]
    assert spans[b3["x-b3-parentspanid"]].parent_span_id.hex() == CLIENT_SPAN
    # a 64-bit trace id is left-padded to OTLP's 16 bytes
    assert spans[span].trace_id.hex() == "0" * 16 + CLIENT_TRACE[16:] and spans[span].parent_span_id.hex() == parent
    assert spans[parent].name == "kong" and spans[parent].parent_span_id.hex() == CLIENT_SPAN
