"""Plain TCP through the stream listener, against real ncat services and sockets."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time

from tests.integration.stream.stream_for_test import (HOST, free_port_for_test, recv_all_for_test, route_for_test,
                                                      service_for_test, snapshot_for_test)

HELLO = b"Hello from Service B\n"


def tcp_snapshot_for_test(port: int, **service_fields) -> dict:
    return snapshot_for_test([service_for_test("svc", port, **service_fields)], [route_for_test("rt", "svc")])


def read_until_for_test(stream, needle: bytes, timeout: float) -> bytes:
    """Read a child's stdout until `needle` shows up or `timeout` passes."""
    os.set_blocking(stream.fileno(), False)
    got, deadline = b"", time.monotonic() + timeout
    while needle not in got and time.monotonic() < deadline:
        chunk = stream.read()
        got += chunk or b""
        time.sleep(0.01)
    return got


def test_server_speaks_first_to_an_ncat_client_that_writes_nothing(procs, proxy_factory):
    upstream = procs.ncat_server("--sh-exec", "echo Hello from Service B")
    # A long preread timeout would show: this destination has only tcp routes, so no waiting.
    proxy = proxy_factory(tcp_snapshot_for_test(upstream), stream_preread_timeout="10")
    started = time.monotonic()
    client = procs.start("ncat", HOST, str(proxy.port), stdin=subprocess.PIPE)
    # (ncat's own start is in this time: a loaded machine takes seconds; any wait for the preread
    # would be the 10 s above)
    out = read_until_for_test(client.stdout, b"Hello from Service B", timeout=9)
    assert out == HELLO
    assert time.monotonic() - started < 9
    client.stdin.close()  # like a user's Ctrl-D: ncat keeps the connection while its stdin is open
    line = proxy.wait_line("route=rt")
    assert "down_bytes=21" in line and "up_bytes=0" in line and "close=upstream_closed" in line


def test_server_first_with_a_tls_route_on_the_same_destination_waits_only_the_preread_timeout(procs, proxy_factory):
    upstream = procs.ncat_server("--sh-exec", "echo Hello from Service B")
    snap = snapshot_for_test([service_for_test("svc", upstream)],
                             [route_for_test("plain", "svc"), route_for_test("secure", "svc", ("tls",), snis=["x.test"])])
    proxy = proxy_factory(snap, stream_preread_timeout="0.3")
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        started = time.monotonic()
        assert client.recv(100) == HELLO
        assert 0.25 < time.monotonic() - started < 3
    assert "route=plain" in proxy.wait_line("close=")


def test_client_first_echo_and_client_half_close(echo, proxy_factory):
    proxy = proxy_factory(tcp_snapshot_for_test(echo.port))
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        client.sendall(b"ping " * 1000)
        client.shutdown(socket.SHUT_WR)  # the echo answers our EOF with its own once all is sent
        assert recv_all_for_test(client) == b"ping " * 1000
    line = proxy.wait_line("close=")
    assert "up_bytes=5000 down_bytes=5000" in line and "close=client_closed" in line


def half_closing_upstream_for_test(received: list[bytes]) -> int:
    """Greets, shuts its write side, then reads until EOF into `received`."""
    server = socket.create_server((HOST, 0))
    server.settimeout(5)

    def run():
        with server, server.accept()[0] as conn:
            conn.settimeout(5)
            conn.sendall(b"greeting")
            conn.shutdown(socket.SHUT_WR)
            received.append(recv_all_for_test(conn))

    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1]


def test_upstream_half_close_still_lets_the_client_talk(proxy_factory):
    received: list[bytes] = []
    proxy = proxy_factory(tcp_snapshot_for_test(half_closing_upstream_for_test(received)))
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        assert recv_all_for_test(client) == b"greeting"  # EOF reached the client
        client.sendall(b"late words")
        client.shutdown(socket.SHUT_WR)
        assert recv_all_for_test(client) == b""
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received == [b"late words"]
    assert "close=upstream_closed" in proxy.wait_line("close=")


def test_client_closing_first_closes_the_upstream(echo, proxy_factory):
    proxy = proxy_factory(tcp_snapshot_for_test(echo.port))
    client = socket.create_connection((HOST, proxy.port), timeout=5)
    client.sendall(b"x")
    assert client.recv(1) == b"x"
    client.close()
    assert "close=client_closed" in proxy.wait_line("close=")


def test_connect_failure_closes_the_client_with_a_log_line(proxy_factory):
    dead = free_port_for_test()
    proxy = proxy_factory(tcp_snapshot_for_test(dead))
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        assert client.recv(10) == b""
    line = proxy.wait_line("close=")
    assert "close=connect_failed" in line and f"upstream={HOST}:{dead}" in line and "error=" in line


def test_no_route_closes_the_client(proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", 1)],
                             [route_for_test("rt", "svc", destinations=[{"port": 1}])])
    proxy = proxy_factory(snap)
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        assert client.recv(10) == b""
    assert "close=no_route" in proxy.wait_line("close=")


def test_idle_upstream_is_closed_after_the_services_timeout(procs, proxy_factory):
    upstream = procs.ncat_server("--sh-exec", "sleep 30")
    proxy = proxy_factory(tcp_snapshot_for_test(upstream, read_timeout=300, write_timeout=300))
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        started = time.monotonic()
        assert client.recv(10) == b""
        assert 0.25 < time.monotonic() - started < 3
    assert "close=timeout" in proxy.wait_line("close=")


def test_retries_move_to_the_next_target(procs, proxy_factory):
    live = procs.ncat_server("--sh-exec", "echo Hello from Service B")
    dead = free_port_for_test()
    snap = snapshot_for_test(
        [service_for_test("svc", 8000, host="pool")], [route_for_test("rt", "svc")],
        upstreams=[{"id": "u1", "name": "pool", "algorithm": "round-robin"}],
        targets=[{"id": "t1", "target": f"{HOST}:{dead}", "weight": 100, "upstream": {"id": "u1"}},
                 {"id": "t2", "target": f"{HOST}:{live}", "weight": 100, "upstream": {"id": "u1"}}],
    )
    proxy = proxy_factory(snap)
    for _ in range(2):  # whichever target comes first, the client gets the live one
        with socket.create_connection((HOST, proxy.port), timeout=5) as client:
            assert recv_all_for_test(client) == HELLO


def test_config_swap_applies_to_new_connections_only(echo, procs, proxy_factory):
    hello = procs.ncat_server("--sh-exec", "echo Hello from Service B")
    proxy = proxy_factory(tcp_snapshot_for_test(echo.port))
    with socket.create_connection((HOST, proxy.port), timeout=5) as old:
        old.sendall(b"before")
        assert old.recv(6) == b"before"
        proxy.swap(tcp_snapshot_for_test(hello))
        with socket.create_connection((HOST, proxy.port), timeout=5) as new:
            assert recv_all_for_test(new) == HELLO
        old.sendall(b"after")
        assert old.recv(5) == b"after"


def test_slow_client_pushes_back_on_the_upstream(proxy_factory):
    sent = [0]
    server = socket.create_server((HOST, 0))
    server.settimeout(5)

    def flood():
        with server, server.accept()[0] as conn:
            conn.settimeout(3)
            block = b"z" * 65536
            try:
                for _ in range(1600):  # 100 MiB at most
                    conn.sendall(block)
                    sent[0] += len(block)
            except OSError:
                pass

    threading.Thread(target=flood, daemon=True).start()
    proxy = proxy_factory(tcp_snapshot_for_test(server.getsockname()[1]))
    with socket.create_connection((HOST, proxy.port), timeout=5):
        time.sleep(1.0)  # not reading: kernel buffers plus one transport buffer fill, then the upstream stalls
        assert sent[0] < 40 * 1024 * 1024


def test_50_megabytes_each_way_arrive_intact(echo, proxy_factory):
    proxy = proxy_factory(tcp_snapshot_for_test(echo.port))
    payload = os.urandom(50 * 1024 * 1024)
    with socket.create_connection((HOST, proxy.port), timeout=20) as client:
        def send():
            try:
                client.sendall(payload)
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the digest comparison below reports the loss

        writer = threading.Thread(target=send, daemon=True)
        writer.start()
        echoed = recv_all_for_test(client)
        writer.join(20)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    assert f"up_bytes={len(payload)} down_bytes={len(payload)}" in proxy.wait_line("close=")


def test_bytes_read_while_prereading_reach_the_upstream_first(echo, proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", echo.port)],
                             [route_for_test("plain", "svc"), route_for_test("secure", "svc", ("tls",), snis=["x.test"])])
    proxy = proxy_factory(snap)
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        client.sendall(b"first words")  # read during preread, before any upstream exists
        client.sendall(b", then more")
        client.shutdown(socket.SHUT_WR)
        assert recv_all_for_test(client) == b"first words, then more"


def test_a_client_that_stalls_inside_its_client_hello_is_closed_after_the_preread_timeout(echo, proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", echo.port)],
                             [route_for_test("sni-only", "svc", ("tls_passthrough",), snis=["x.test"])])
    proxy = proxy_factory(snap, stream_preread_timeout="0.3")
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        started = time.monotonic()
        client.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello header, then silence
        assert client.recv(10) == b""
        assert time.monotonic() - started < 3
    assert "close=no_route" in proxy.wait_line("close=")


def test_each_connection_writes_one_access_log_line(echo, proxy_factory):
    written: list[str] = []
    proxy = proxy_factory(tcp_snapshot_for_test(echo.port), access_log=written.append)
    for _ in range(3):
        with socket.create_connection((HOST, proxy.port), timeout=5) as client:
            client.sendall(b"abc")
            client.shutdown(socket.SHUT_WR)
            assert recv_all_for_test(client) == b"abc"
    deadline = time.monotonic() + 5
    while len(written) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(written) == 3
    assert all("route=rt" in line and "up_bytes=3 down_bytes=3" in line for line in written)


def test_proxy_protocol_listener_routes_on_the_headers_source(echo, proxy_factory):
    snap = snapshot_for_test([service_for_test("svc", echo.port)],
                             [route_for_test("from-lb", "svc", sources=[{"ip": "10.9.9.0/24"}])])
    proxy = proxy_factory(snap, listen_flags="proxy_protocol")
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        client.sendall(b"PROXY TCP4 10.9.9.9 127.0.0.5 5555 19000\r\npayload")
        client.shutdown(socket.SHUT_WR)
        assert recv_all_for_test(client) == b"payload"  # the header itself never reaches the upstream
    line = proxy.wait_line("close=")
    assert "client=10.9.9.9:5555 dst=127.0.0.5:19000" in line and "route=from-lb" in line
    with socket.create_connection((HOST, proxy.port), timeout=5) as client:
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert recv_all_for_test(client) == b""
    assert "close=bad_proxy_header" in proxy.wait_line("bad_proxy_header")
