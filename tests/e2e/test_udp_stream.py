"""UDP stream listeners (`stream_listen = 127.0.0.1:P udp`, Kong's flag): a real meshway node relays
datagrams by route `destinations` to udp services, a session per client (its own upstream socket),
answers from the listener's address (so `dig` accepts them), idle sessions logged and closed."""
from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest
import yaml

from tests.helpers.node import free_port
from tests.integration.balancer.dns_server_for_test import DnsServer_for_test


class _Echo:
    """A UDP server answering `<data> from <the sender's port>`: which upstream socket spoke."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            self.sock.sendto(data + f" from {addr[1]}".encode(), addr)


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(client: socket.socket, port: int, data: bytes) -> bytes | None:
    client.sendto(data, ("127.0.0.1", port))
    try:
        answer, addr = client.recvfrom(65535)
    except socket.timeout:
        return None
    assert addr == ("127.0.0.1", port)  # from the listener's own address
    return answer


def _client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    return s


@pytest.fixture
def dns():
    server = DnsServer_for_test("www.example.test. 60 IN A 10.0.0.7").start()
    yield server
    server.stop()


def test_udp_routes_relay_datagrams_a_session_per_client(node_factory, dns, tmp_path):
    echo = _Echo()
    dns_port, echo_port, empty_port, dead_port, nobody = _udp_port(), _udp_port(), _udp_port(), _udp_port(), _udp_port()
    config = {"_format_version": "3.0", "services": [
        {"name": "dns", "protocol": "udp", "host": "127.0.0.1", "port": dns.port,
         "routes": [{"name": "dns", "protocols": ["udp"], "destinations": [{"port": dns_port}]}]},
        {"name": "echo", "protocol": "udp", "host": "127.0.0.1", "port": echo.port,
         "read_timeout": 800, "write_timeout": 800,
         "routes": [{"name": "echo", "protocols": ["udp"], "destinations": [{"port": echo_port}]}]},
        {"name": "dead", "protocol": "udp", "host": "127.0.0.1", "port": nobody,  # nothing listens there
         "routes": [{"name": "dead", "protocols": ["udp"], "destinations": [{"port": dead_port}]}]}]}
    path = tmp_path / "kong.yml"
    path.write_text(yaml.safe_dump(config))
    listen = ", ".join(f"127.0.0.1:{p} udp" for p in (dns_port, echo_port, empty_port, dead_port))
    node = node_factory(database="off", declarative_config=str(path), stream_listen=listen)
    node.start()

    # a real DNS client through the node
    dig = subprocess.run(["dig", "@127.0.0.1", "-p", str(dns_port), "www.example.test", "A", "+short",
                          "+time=2", "+tries=3"], capture_output=True, text=True, timeout=30)
    assert dig.stdout.strip() == "10.0.0.7", dig.stdout + dig.stderr
    assert ("www.example.test", "A") in dns.asked

    # two clients: each its own session (its own upstream socket), kept across datagrams
    a, b = _client(), _client()
    first_a = _ask(a, echo_port, b"a1")
    first_b = _ask(b, echo_port, b"b1")
    assert first_a.startswith(b"a1 from ") and first_b.startswith(b"b1 from ")
    assert first_a.split()[-1] != first_b.split()[-1]
    assert _ask(a, echo_port, b"a2").split()[-1] == first_a.split()[-1]

    # a listener no route takes: nothing comes back, and the node keeps serving
    assert _ask(_client(), empty_port, b"anyone?") is None
    assert _ask(b, echo_port, b"b2").startswith(b"b2 from ")
    # an upstream that refuses (ICMP port unreachable): no answer, the session is closed and logged
    assert _ask(_client(), dead_port, b"hello?") is None

    # idle for longer than the service's timeouts: the session ends (logged), the next datagram opens another
    time.sleep(1.5)
    assert _ask(a, echo_port, b"a3").split()[-1] != first_a.split()[-1]
    access = (node.prefix / "logs" / "access.log").read_text()
    lines = [line for line in access.splitlines() if "kind=udp" in line and "route=echo" in line]
    assert any("close=timeout" in line and "up_bytes=4" in line for line in lines), access
    assert any("route=-" in line and "close=no_route" in line for line in access.splitlines()), access
    assert any("route=dead" in line and "close=connect_failed" in line for line in access.splitlines()), access


def test_the_udp_flag_belongs_to_stream_listen(node_factory):
    node = node_factory(database="off", proxy_listen=f"127.0.0.1:{free_port()} udp")
    result = node.start(check=False)
    assert result.returncode != 0
    assert "proxy_listen: the udp flag is only valid on stream_listen" in result.stdout + result.stderr
