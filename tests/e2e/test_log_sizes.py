"""The log serializer's request.size and response.size are Kong's: nginx's $request_length and
$bytes_sent, the bytes on the wire. A real node (compiled core, then the pure-Python HTTP/1.1
path) sends tcp-log entries to a TCP receiver this test runs; each entry's sizes are compared
with what a raw client actually sent and received: HTTP/1.1 (a Content-Length answer, a
chunked one re-framed for the client, a plugin's own answer, an interim 100 Continue) and HTTP/2
(nginx counts the request's header block and DATA payloads, and the response stream's frames:
9-byte heads plus payloads)."""
from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from tests.e2e.test_socket_log_plugins import TcpReceiverForTest


class SizesOriginForTest:
    """`/fixed`: 200 with Content-Length; `/chunked`: 200 in three chunks; POST bodies are read."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(200)
                if "chunked" in self.path:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in (b"first part ", b"second, longer part " * 20, b"end"):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", "11")
                    self.end_headers()
                    self.wfile.write(b"hello world")

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def raw_exchange(port: int, request: bytes, pause_after: int | None = None) -> bytes:
    """Send `request` as is (optionally in two parts), read the answer until the node closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if pause_after is None:
            sock.sendall(request)
        else:
            sock.sendall(request[:pause_after])
            time.sleep(0.3)  # the 100 Continue goes out meanwhile
            sock.sendall(request[pause_after:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def entry_for(receiver: TcpReceiverForTest, uri: str, count: int) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [e for e in receiver.entries if e["request"]["uri"] == uri]
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"no log entry {count} for {uri}: {receiver.entries}")


def started_node(node_factory, name: str, **settings):
    origin = SizesOriginForTest()
    receiver = TcpReceiverForTest()
    node = node_factory(name, workers="1", **settings)
    node.start()
    admin = httpx.Client(base_url=node.admin)
    assert admin.post("/services", json={"name": "s", "url": origin.url}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "r", "paths": ["/"]}).status_code == 201
    assert admin.post("/services/s/routes", json={"name": "locked", "paths": ["/locked"]}).status_code == 201
    assert admin.post("/routes/locked/plugins", json={"name": "key-auth"}).status_code == 201
    assert admin.post("/plugins", json={"name": "tcp-log", "config": {"host": "127.0.0.1",
                                                                       "port": receiver.port}}).status_code == 201
    return node, receiver


@pytest.mark.parametrize("impl", ["compiled", "python"])
def test_http1_sizes_are_the_bytes_on_the_wire(node_factory, impl):
    node, receiver = started_node(node_factory, impl, http1_impl=impl)
    host = f"Host: 127.0.0.1:{node.proxy_port}\r\n".encode()
    cases = [
        ("/fixed?a=1", b"GET /fixed?a=1 HTTP/1.1\r\n" + host + b"User-Agent: raw/1\r\nConnection: close\r\n\r\n", None),
        ("/chunked", b"POST /chunked HTTP/1.1\r\n" + host + b"Content-Length: 7\r\nX-Extra: some value\r\n"
                     b"Connection: close\r\n\r\npayload", None),
        ("/locked", b"GET /locked HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n", None),
        ("/fixed", b"POST /fixed HTTP/1.1\r\n" + host + b"Expect: 100-continue\r\nContent-Length: 4\r\n"
                   b"Connection: close\r\n\r\nbody", -4),
    ]
    for uri, request, pause in cases:
        received = raw_exchange(node.proxy_port, request, None if pause is None else len(request) + pause)
        entry = entry_for(receiver, uri, 1)
        assert entry["request"]["size"] == len(request), (uri, received)
        assert entry["response"]["size"] == len(received), (uri, received)
        if uri == "/chunked":
            assert b"Transfer-Encoding: chunked" in received and received.endswith(b"0\r\n\r\n")
        if uri == "/locked":
            assert received.startswith(b"HTTP/1.1 401")
        if pause is not None:
            assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")


def frames_of(data: bytes, sid: int) -> list[tuple[int, int, int]]:
    """(type, flags, payload length) of each frame of stream `sid` in `data` (whole frames)."""
    out, at = [], 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        kind, flags = data[at + 3], data[at + 4]
        if int.from_bytes(data[at + 5:at + 9], "big") & 0x7FFFFFFF == sid:
            out.append((kind, flags, length))
        at += 9 + length
    assert at == len(data)
    return out


def test_http2_sizes_are_nginx_s(node_factory):
    node, receiver = started_node(node_factory, "h2")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", node.proxy_ssl_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(conn.data_to_send())
        conn.send_headers(1, [(b":method", b"POST"), (b":path", b"/chunked?h=2"), (b":scheme", b"https"),
                              (b":authority", b"localhost"), (b"content-length", b"9"), (b"x-note", b"h2 body")])
        conn.send_data(1, b"h2-upload", end_stream=True)
        sent = conn.data_to_send()
        sock.sendall(sent)
        received, ended = b"", False
        while not ended:
            data = sock.recv(65536)
            assert data, "the node closed the connection"
            received += data
            for event in conn.receive_data(data):
                ended = ended or (isinstance(event, h2.events.StreamEnded) and event.stream_id == 1)
            sock.sendall(conn.data_to_send())
    entry = entry_for(receiver, "/chunked?h=2", 1)
    request_frames = frames_of(sent, 1)
    assert [(kind, flags & 0x28) for kind, flags, _ in request_frames] == [(0x1, 0), (0x0, 0)]  # no padding, priority
    assert entry["request"]["size"] == sum(length for _, _, length in request_frames)
    response_frames = frames_of(received, 1)
    assert {kind for kind, _, _ in response_frames} <= {0x0, 0x1, 0x9, 0x3}
    assert entry["response"]["size"] == sum(9 + length for kind, _, length in response_frames if kind in (0x0, 0x1, 0x9))
    assert entry["response"]["size"] > 11 + 20 * 20
