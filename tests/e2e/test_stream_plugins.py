"""Plugins on stream routes, as Kong's stream subsystem runs them: a real node with tcp, tls,
tls_passthrough and udp routes in front of echo origins, real clients from several loopback addresses. ip-restriction closes
refused connections before the upstream is dialled; file-log (and tcp-log to a TCP server, http-log
to an HTTP server) writes Kong's stream serializer (session, upstream, latencies, tries, route,
service, client_ip, started_at) for each session, a refused one (403) and one no route takes (500,
global plugins) included; prometheus counts sessions in Kong's stream families; a plugin whose
`protocols` lack the session's protocol does not run; HTTP-only plugins on stream protocols are
refused with Kong's message naming the field, and the running config stays."""
from __future__ import annotations

import http.server
import json
import socket
import socketserver
import ssl
import threading
import time

import httpx
import pytest
import yaml

from tests.fixtures.certs import cert_pair_for_test
from tests.helpers.node import free_port


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(10)
        while chunk := self.request.recv(65536):
            self.request.sendall(chunk)


class _UdpEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(b"echo " + data, self.client_address)


def _servers():
    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _UdpEcho)
    for server in (tcp, udp):
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return tcp, udp


class _Collector:
    """A TCP server keeping every newline-separated JSON line (tcp-log), or every HTTP POST body (http-log)."""

    def __init__(self, posts: bool = False) -> None:
        self.entries: list[dict] = []
        collector = self

        class Lines(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    collector.entries.append(json.loads(line))

        class Posts(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                collector.entries.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = (http.server.ThreadingHTTPServer if posts else socketserver.ThreadingTCPServer)(
            ("127.0.0.1", 0), Posts if posts else Lines)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.entries) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.entries)


class _TlsEcho:
    """A TLS origin (its own certificate for `pass.test`) echoing what it reads: what tls_passthrough reaches."""

    def __init__(self, directory) -> None:
        cert, key = cert_pair_for_test("pass.test")
        (directory / "pass.crt").write_text(cert)
        (directory / "pass.key").write_text(key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(directory / "pass.crt", directory / "pass.key")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(10)
                while chunk := tls.recv(65536):
                    tls.sendall(chunk)
        except OSError:
            pass


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _talk(port: int, source: str, data: bytes = b"hello stream", tls: bool = False) -> bytes | None:
    """Send `data` from `source`, half-close, read to EOF; None when the proxy refused the connection."""
    raw = socket.socket()
    raw.settimeout(5)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    sock, got = raw, b""
    try:
        if tls:
            sock = ssl._create_unverified_context().wrap_socket(raw, server_hostname="tls.test")
        sock.sendall(data)
        if not tls:
            sock.shutdown(socket.SHUT_WR)
        while len(got) < len(data) and (chunk := sock.recv(65536)):
            got += chunk
    except TimeoutError:
        raise
    except OSError:  # reset, broken pipe, not connected (already closed), a TLS alert
        return None
    finally:
        sock.close()
    return got or None


def _entries(path, count: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


@pytest.fixture
def stream_node(node_factory, tmp_path):
    tcp, udp = _servers()
    ports = {k: free_port() for k in ("open", "guarded", "tls", "nothing", "pass")}
    tls_echo = _TlsEcho(tmp_path)
    ports["udp"], ports["udp_nothing"] = _udp_port(), _udp_port()
    logs = {k: tmp_path / f"{k}.log" for k in ("open", "all", "udp")}
    http_only = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    http_only.bind(("127.0.0.1", 0))
    tcp_log, http_log, zipkin = _Collector(), _Collector(posts=True), _Collector(posts=True)
    echo = {"name": "echo", "protocol": "tcp", "host": "127.0.0.1", "port": tcp.server_address[1]}
    config = {"_format_version": "3.0", "services": [
        {**echo,
         # the default protocols are the HTTP ones: never on this service's stream routes
         "plugins": [{"name": "udp-log", "config": {"host": "127.0.0.1", "port": http_only.getsockname()[1]}}],
         "routes": [
            {"name": "open", "protocols": ["tcp"], "destinations": [{"port": ports["open"]}],
             "plugins": [{"name": "file-log", "protocols": ["tcp"], "config": {"path": str(logs["open"])}},
                         {"name": "zipkin", "protocols": ["tcp"],
                          "config": {"http_endpoint": f"http://127.0.0.1:{zipkin.port}/api/v2/spans",
                                     "sample_ratio": 1}}]},
            # ip-restriction without `protocols`: Kong's default for it includes tcp and tls
            {"name": "guarded", "protocols": ["tcp"], "destinations": [{"port": ports["guarded"]}],
             "plugins": [{"name": "ip-restriction", "config": {"deny": ["127.0.0.2"]}},
                         {"name": "tcp-log", "protocols": ["tcp"], "config": {"host": "127.0.0.1", "port": tcp_log.port}}]},
            {"name": "tls", "protocols": ["tls"], "destinations": [{"port": ports["tls"]}],
             "plugins": [{"name": "ip-restriction", "protocols": ["tls"], "config": {"allow": ["127.0.0.3"]}}]}]},
        {"name": "tls-echo", "protocol": "tcp", "host": "127.0.0.1", "port": tls_echo.port,
         "routes": [{"name": "pass", "protocols": ["tls_passthrough"], "snis": ["pass.test"],
                     "destinations": [{"port": ports["pass"]}],
                     "plugins": [{"name": "ip-restriction", "protocols": ["tls_passthrough"],
                                  "config": {"deny": ["127.0.0.2"]}}]}]},
        {"name": "udp-echo", "protocol": "udp", "host": "127.0.0.1", "port": udp.server_address[1],
         "read_timeout": 500, "write_timeout": 500,
         "routes": [{"name": "udp", "protocols": ["udp"], "destinations": [{"port": ports["udp"]}],
                     "plugins": [{"name": "ip-restriction", "protocols": ["udp"], "config": {"deny": ["127.0.0.2"]}},
                                 {"name": "file-log", "protocols": ["udp"], "config": {"path": str(logs["udp"])}},
                                 {"name": "http-log", "protocols": ["udp"],
                                  "config": {"http_endpoint": f"http://127.0.0.1:{http_log.port}/log"}}]}]}],
        # a global plugin on every stream protocol: every tcp/tls session, routed or not
        "plugins": [{"name": "file-log", "protocols": ["tcp", "tls", "tls_passthrough", "udp"],
                     "config": {"path": str(logs["all"])}},
                    {"name": "prometheus", "protocols": ["tcp", "tls", "udp"],
                     "config": {"status_code_metrics": True, "latency_metrics": True}}]}
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(config))
    listen = ", ".join([*(f"127.0.0.1:{ports[k]}" for k in ("open", "guarded", "tls", "nothing", "pass")),
                        f"127.0.0.1:{ports['udp']} udp", f"127.0.0.1:{ports['udp_nothing']} udp"])
    node = node_factory(database="off", declarative_config=str(path), stream_listen=listen)
    node.start()
    yield node, ports, logs, config, tcp, http_only, tcp_log, http_log, zipkin
    tls_echo.listener.close()
    for collector in (tcp_log, http_log, zipkin):
        collector.server.shutdown()
    http_only.close()
    tcp.shutdown()
    udp.shutdown()


def test_file_log_writes_kongs_stream_serializer(stream_node):
    node, ports, logs, _, tcp, http_only, *_ = stream_node
    assert _talk(ports["open"], "127.0.0.1", b"x" * 1000) == b"x" * 1000
    [entry] = _entries(logs["open"], 1)
    assert entry["session"]["status"] == 200 and entry["session"]["server_port"] == ports["open"]
    assert entry["session"]["received"] == 1000 and entry["session"]["sent"] == 1000
    assert entry["upstream"] == {"received": 1000, "sent": 1000}
    assert entry["route"]["name"] == "open" and entry["service"]["name"] == "echo"
    assert entry["client_ip"] == "127.0.0.1"
    assert abs(entry["started_at"] - time.time() * 1000) < 30_000
    assert set(entry["latencies"]) == {"kong", "session"} and entry["latencies"]["session"] >= entry["latencies"]["kong"] >= 0
    [attempt] = entry["tries"]
    assert (attempt["ip"], attempt["port"]) == ("127.0.0.1", tcp.server_address[1])
    assert "request" not in entry and "response" not in entry and "tls" not in entry["session"]
    # another route of the service: the global file-log logs it (the route's own file-log took
    # its place on `open`: one instance per plugin name, the most specific scope, as for HTTP)
    assert _talk(ports["guarded"], "127.0.0.1") == b"hello stream"
    assert [e["route"]["name"] for e in _entries(logs["all"], 1)] == ["guarded"]
    # the service's udp-log has the default (HTTP) protocols: it never ran for these sessions
    http_only.settimeout(1.0)
    with pytest.raises(socket.timeout):
        http_only.recv(65535)


def test_ip_restriction_refuses_by_source_address_before_the_upstream(stream_node):
    node, ports, logs, *_ = stream_node
    assert _talk(ports["guarded"], "127.0.0.1") == b"hello stream"
    assert _talk(ports["guarded"], "127.0.0.2") is None  # denied: closed, nothing echoed
    entries = [e for e in _entries(logs["all"], 2) if e.get("route", {}).get("name") == "guarded"]
    by_client = {e["client_ip"]: e for e in entries}
    assert by_client["127.0.0.1"]["session"]["status"] == 200
    refused = by_client["127.0.0.2"]
    assert refused["session"]["status"] == 403 and "tries" not in refused  # the upstream was never dialled
    assert refused["upstream"] == {"received": 0, "sent": 0}
    assert any("route=guarded" in line and "close=plugin_exit" in line and "status 403" in line
               for line in node.error_log().splitlines())
    # the route's tcp-log sent the same two sessions to a TCP server
    tcp_log = stream_node[6]
    sent = {e["client_ip"]: e["session"]["status"] for e in tcp_log.wait(2) if e["route"]["name"] == "guarded"}
    assert sent == {"127.0.0.1": 200, "127.0.0.2": 403}


def test_tls_route_runs_plugins_for_protocol_tls(stream_node):
    node, ports, logs, *_ = stream_node
    assert _talk(ports["tls"], "127.0.0.1", tls=True) is None  # not in the allow list
    assert _talk(ports["tls"], "127.0.0.3", tls=True) == b"hello stream"
    entries = {e["client_ip"]: e for e in _entries(logs["all"], 2) if e.get("route", {}).get("name") == "tls"}
    assert entries["127.0.0.1"]["session"]["status"] == 403
    allowed = entries["127.0.0.3"]["session"]
    assert allowed["status"] == 200 and allowed["tls"]["version"].startswith("TLSv1.") and allowed["tls"]["cipher"]


def test_tls_passthrough_route_runs_plugins_for_protocol_tls_passthrough(stream_node):
    node, ports, logs, *_ = stream_node

    def talk(source: str) -> bytes | None:
        raw = socket.socket()
        raw.settimeout(5)
        raw.bind((source, 0))
        raw.connect(("127.0.0.1", ports["pass"]))
        try:  # the origin's own certificate: the proxy only forwards the bytes
            with ssl._create_unverified_context().wrap_socket(raw, server_hostname="pass.test") as tls:
                assert tls.getpeercert(binary_form=True) is not None
                tls.sendall(b"through")
                return tls.recv(100)
        except (ConnectionError, ssl.SSLError):
            return None

    assert talk("127.0.0.1") == b"through"
    assert talk("127.0.0.2") is None
    entries = {e["client_ip"]: e for e in _entries(logs["all"], 2) if e.get("route", {}).get("name") == "pass"}
    assert entries["127.0.0.2"]["session"]["status"] == 403
    allowed = entries["127.0.0.1"]["session"]
    assert allowed["status"] == 200 and "tls" not in allowed  # not terminated here: no TLS facts of ours
    assert allowed["received"] > len(b"through")  # the TLS records, as they passed


def test_a_connection_without_route_is_logged_by_global_plugins(stream_node):
    node, ports, logs, *_ = stream_node
    assert _talk(ports["nothing"], "127.0.0.1") is None
    [entry] = [e for e in _entries(logs["all"], 1) if e["session"]["server_port"] == ports["nothing"]]
    assert entry["session"]["status"] == 500 and "route" not in entry and "service" not in entry


def test_udp_sessions_run_plugins_for_protocol_udp(stream_node):
    node, ports, logs, *_ = stream_node

    def ask(source: str, port: int = ports["udp"]) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.5)
            s.bind((source, 0))
            s.sendto(b"ping", ("127.0.0.1", port))
            try:
                return s.recvfrom(65535)[0]
            except socket.timeout:
                return None

    assert ask("127.0.0.1") == b"echo ping"
    assert ask("127.0.0.2") is None
    entries = {e["client_ip"]: e for e in _entries(logs["udp"], 2, timeout=15)}  # the allowed one ends when idle
    assert entries["127.0.0.2"]["session"]["status"] == 403
    assert entries["127.0.0.1"]["session"]["status"] == 200
    assert entries["127.0.0.1"]["session"]["received"] == 4 and entries["127.0.0.1"]["route"]["name"] == "udp"
    # and the route's http-log POSTed them
    posted = {e["client_ip"]: e["session"]["status"] for e in stream_node[7].wait(2)}
    assert posted == {"127.0.0.1": 200, "127.0.0.2": 403}
    # a datagram no route takes: the global file-log has it, status 500; the route's udp sessions are
    # its own file-log's (the most specific instance of a plugin name)
    assert ask("127.0.0.1", ports["udp_nothing"]) is None
    [unrouted] = [e for e in _entries(logs["all"], 1) if e["session"]["server_port"] == ports["udp_nothing"]]
    assert unrouted["session"]["status"] == 500 and "route" not in unrouted
    assert not [e for e in _entries(logs["all"], 1) if e.get("route", {}).get("name") == "udp"]


def test_http_only_plugins_are_refused_on_stream_protocols(stream_node):
    node, ports, logs, config, *_ = stream_node
    bad = json.loads(json.dumps(config))
    bad["services"][0]["routes"][0]["plugins"].append({"name": "key-auth", "protocols": ["tcp"]})
    r = httpx.post(f"{node.admin}/config", json=bad)
    assert r.status_code == 400, r.text
    assert "protocols" in r.text and "expected one of: grpc, grpcs, http, https, ws, wss" in r.text
    assert _talk(ports["open"], "127.0.0.1") == b"hello stream"  # the running config stays


def test_prometheus_counts_stream_sessions_in_kongs_families(stream_node):
    node, ports, *_ = stream_node
    assert _talk(ports["open"], "127.0.0.1") == b"hello stream"
    assert _talk(ports["guarded"], "127.0.0.2") is None
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(f"{node.status}/metrics").text
        if "kong_stream_sessions_total" in text and 'route="guarded"' in text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert 'kong_stream_sessions_total{service="echo",route="open",code="200",source="service",workspace="default"} 1' in text
    assert 'kong_stream_sessions_total{service="echo",route="guarded",code="403",source="kong",workspace="default"} 1' in text
    assert 'kong_session_duration_ms_count{service="echo",route="open",workspace="default"} 1' in text
    assert 'kong_kong_latency_ms_count{service="echo",route="open",workspace="default"} 1' in text
    assert "kong_http_requests_total{" not in text  # no HTTP request was made


def test_zipkin_reports_kongs_stream_spans(stream_node):
    node, ports, *_, tcp, _, _, _, zipkin = stream_node
    assert _talk(ports["open"], "127.0.0.1") == b"hello stream"
    deadline = time.monotonic() + 10
    while len([span for batch in zipkin.entries for span in batch]) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    spans = {span["name"]: span for batch in zipkin.entries for span in batch}
    assert set(spans) == {"stream", "stream (proxy)", "stream (balancer try 1)"}
    request, proxy, attempt = spans["stream"], spans["stream (proxy)"], spans["stream (balancer try 1)"]
    assert request["kind"] == "SERVER" and request["tags"]["lc"] == "kong" and "parentId" not in request
    assert request["remoteEndpoint"]["ipv4"] == "127.0.0.1"
    assert proxy["kind"] == "CLIENT" and proxy["parentId"] == request["id"] == attempt["parentId"]
    assert proxy["tags"]["kong.route_name"] == "open" and proxy["tags"]["kong.service_name"] == "echo"
    assert [a["value"] for a in proxy["annotations"]] == ["kps", "kpf"]
    assert proxy["remoteEndpoint"]["port"] == attempt["remoteEndpoint"]["port"] == tcp.server_address[1]
    assert len({span["traceId"] for span in spans.values()}) == 1
