"""tcp-log and udp-log end to end: a real node (2 workers) sends Kong-shaped JSON entries to a TCP
server (plain and TLS) and a UDP socket that this test runs and parses; bad configs are 400s
naming the field; a route without the plugin sends nothing."""
from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
import time

import httpx

from tests.fixtures.certs import cert_pair_for_test


class OriginForTest:
    """Answers every GET with 200 `ok`, or 404 for paths containing `missing` (statsd's status ranges)."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(404 if "missing" in self.path else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class TcpReceiverForTest:
    """Accepts connections (optionally TLS) and keeps every newline-terminated JSON entry."""

    def __init__(self, tls_context: ssl.SSLContext | None = None) -> None:
        self.entries: list[dict] = []
        self.connections = 0
        self.sni: list[str | None] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tls_context = tls_context
        if tls_context is not None:
            tls_context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            self.connections += 1
            if self.tls_context is not None:
                conn = self.tls_context.wrap_socket(conn, server_side=True)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                self.entries.append(json.loads(line))

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.entries) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.entries


class UdpReceiverForTest:
    """A UDP socket; each datagram must be one JSON object."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.entries: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            data, _ = self.sock.recvfrom(65536)
            self.entries.append(json.loads(data))

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.entries) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.entries


def _node(node_factory):
    node = node_factory(workers="2")
    node.start()
    admin = httpx.Client(base_url=node.admin)
    origin = OriginForTest()
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    for name in ("logged", "quiet"):
        assert admin.post("/services/s/routes", json={"name": name, "paths": [f"/{name}"]}).status_code == 201
    return node, admin


def _add(admin, name, config):
    r = admin.post("/routes/logged/plugins", json={"name": name, "config": config})
    assert r.status_code == 201, r.text


def _check_entry(entry, uri):
    assert entry["request"]["uri"] == uri and entry["request"]["method"] == "GET"
    assert entry["response"]["status"] == 200 and entry["route"]["name"] == "logged"
    assert entry["service"]["name"] == "s" and entry["client_ip"] == "127.0.0.1"
    assert entry["latencies"]["request"] >= 0


def test_tcp_and_udp_receivers_get_one_json_entry_per_request(node_factory):
    node, admin = _node(node_factory)
    tcp, udp = TcpReceiverForTest(), UdpReceiverForTest()
    _add(admin, "tcp-log", {"host": "127.0.0.1", "port": tcp.port})
    _add(admin, "udp-log", {"host": "127.0.0.1", "port": udp.port})
    assert {"tcp-log", "udp-log"} <= set(admin.get("/").json()["plugins"]["available_on_server"])
    time.sleep(1.5)  # config propagation to the workers
    with httpx.Client() as client:
        for i in range(6):
            assert client.get(f"{node.proxy}/logged/{i}").status_code == 200
        assert client.get(f"{node.proxy}/quiet").status_code == 200
    tcp_entries, udp_entries = tcp.wait_for(6), udp.wait_for(6)
    time.sleep(0.5)  # an entry for /quiet would have arrived meanwhile
    for entries in (tcp.entries, udp.entries):
        assert sorted(e["request"]["uri"] for e in entries) == [f"/logged/{i}" for i in range(6)]
        for e in entries:
            _check_entry(e, e["request"]["uri"])
    assert len(tcp_entries) == len(udp_entries) == 6
    assert tcp.connections <= 2  # kept alive: at most one connection per worker


def test_tcp_log_over_tls_sends_the_configured_sni(node_factory, tmp_path):
    cert, key = cert_pair_for_test("logs.test")
    (tmp_path / "c.pem").write_text(cert)
    (tmp_path / "k.pem").write_text(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    tcp = TcpReceiverForTest(context)
    node, admin = _node(node_factory)
    _add(admin, "tcp-log", {"host": "127.0.0.1", "port": tcp.port, "tls": True, "tls_sni": "logs.test"})
    time.sleep(1.5)
    assert httpx.get(f"{node.proxy}/logged/tls").status_code == 200
    [entry] = tcp.wait_for(1)
    _check_entry(entry, "/logged/tls")
    assert tcp.sni == ["logs.test"]


def test_bad_configs_are_400s_naming_the_field(node_factory):
    node, admin = _node(node_factory)
    for name, config, field in [("tcp-log", {"host": "127.0.0.1", "port": 70000}, "port"),
                                ("tcp-log", {"port": 9}, "host"),
                                ("udp-log", {"host": "bad host", "port": 9}, "host")]:
        r = admin.post("/plugins", json={"name": name, "config": config})
        assert r.status_code == 400, r.text
        assert field in r.json()["fields"]["config"], r.text
    assert admin.get("/plugins").json()["data"] == []


def test_an_unreachable_receiver_does_not_hurt_traffic(node_factory):
    node, admin = _node(node_factory)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    _add(admin, "tcp-log", {"host": "127.0.0.1", "port": port, "timeout": 200})
    _add(admin, "udp-log", {"host": "127.0.0.1", "port": port})
    time.sleep(1.5)
    with httpx.Client() as client:
        assert [client.get(f"{node.proxy}/logged").status_code for _ in range(5)] == [200] * 5
    time.sleep(0.5)
    assert "tcp-log 127.0.0.1" in node.error_log()
