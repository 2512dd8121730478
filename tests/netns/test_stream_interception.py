"""The walkthrough's transparent interception, inside a namespace: TPROXY and REDIRECT."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.netns

HELLO = b"Hello from Service B"


def snapshot_for_test(path, service_url: tuple[str, str, int], route: dict) -> None:
    scheme, host, port = service_url
    service = {"id": "svc-b", "name": "service-b-" + scheme, "protocol": scheme, "host": host, "port": port,
               "retries": 5, "connect_timeout": 2000, "read_timeout": 10000, "write_timeout": 10000}
    empty = ("upstreams", "targets", "certificates", "snis", "ca_certificates")
    path.write_text(json.dumps({"services": [service], "routes": [{**route, "service": {"id": "svc-b"}}],
                                **{k: [] for k in empty}}))


def read_until_for_test(proc, needle: bytes, timeout: float) -> bytes:
    os.set_blocking(proc.stdout.fileno(), False)
    got, deadline = b"", time.monotonic() + timeout
    while needle not in got and time.monotonic() < deadline:
        got += proc.stdout.read() or b""
        time.sleep(0.02)
    return got


def wait_log_for_test(log, needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no {needle!r} in {log.read_text()}")


def service_b_for_test(netns, port: int, *ssl_args: str) -> None:
    netns.spawn("ncat", "--listen", "--keep-open", *ssl_args, "--sh-exec", "echo Hello from Service B",
                "127.0.0.5", str(port))
    netns.wait_listening("127.0.0.5", port)


def test_tproxy_interception_of_a_tcp_client_as_in_the_walkthrough(netns, tmp_path):
    service_b_for_test(netns, 19000)
    snap = tmp_path / "snapshot.json"
    snapshot_for_test(snap, ("tcp", "127.0.0.5", 19000), {
        "id": "r1", "name": "service-b-tcp", "protocols": ["tcp"],
        "destinations": [{"ip": "127.0.0.5", "port": 19000}]})
    log = tmp_path / "proxy.log"
    netns.devserver("127.0.0.3:9000 transparent", snap, log, "--proxy-bind", "127.0.0.3")
    netns.run("iptables", "--insert", "PREROUTING", "--table", "mangle", "--protocol", "tcp", "--dport", "19000",
              "--source", "127.0.0.2", "--jump", "TPROXY", "--on-port=9000", "--on-ip=127.0.0.3")
    client = netns.spawn("ncat", "--source", "127.0.0.2", "127.0.0.5", "19000", stdin=subprocess.PIPE)
    assert HELLO in read_until_for_test(client, HELLO, timeout=30)  # without writing a byte
    client.stdin.close()
    line = wait_log_for_test(log, "route=service-b-tcp")
    assert "client=127.0.0.2:" in line and "dst=127.0.0.5:19000" in line and "upstream=127.0.0.5:19000" in line


def test_tproxy_interception_of_a_tls_client_as_in_the_walkthrough(netns, tmp_path):
    service_b_for_test(netns, 19443, "--ssl")
    snap = tmp_path / "snapshot.json"
    snapshot_for_test(snap, ("tls", "127.0.0.5", 19443), {
        "id": "r2", "name": "service-b-tls", "protocols": ["tls"],
        "destinations": [{"ip": "127.0.0.5", "port": 19443}]})
    log = tmp_path / "proxy.log"
    netns.devserver("127.0.0.3:9000 transparent", snap, log, "--proxy-bind", "127.0.0.3")
    netns.run("iptables", "--insert", "PREROUTING", "--table", "mangle", "--protocol", "tcp", "--dport", "19443",
              "--source", "127.0.0.2", "--jump", "TPROXY", "--on-port=9000", "--on-ip=127.0.0.3")
    result = netns.run("ncat", "--source", "127.0.0.2", "--recv-only", "--ssl", "127.0.0.5", "19443")
    assert result.stdout == HELLO + b"\n"
    line = wait_log_for_test(log, "route=service-b-tls")
    assert "mode=terminate" in line and "upstream_tls=yes" in line and "dst=127.0.0.5:19443" in line


def test_redirect_interception_reads_the_original_destination(netns, tmp_path):
    service_b_for_test(netns, 19000)
    snap = tmp_path / "snapshot.json"
    snapshot_for_test(snap, ("tcp", "127.0.0.5", 19000), {
        "id": "r1", "name": "service-b-tcp", "protocols": ["tcp"],
        "destinations": [{"ip": "127.0.0.5", "port": 19000}]})
    log = tmp_path / "proxy.log"
    netns.devserver("0.0.0.0:9000", snap, log, "--proxy-bind", "127.0.0.3")
    # Local clients meet the nat table in OUTPUT; the proxy's own connection (source 127.0.0.3) is spared.
    netns.run("iptables", "--table", "nat", "--append", "OUTPUT", "--protocol", "tcp", "--destination", "127.0.0.5",
              "--dport", "19000", "!", "--source", "127.0.0.3", "--jump", "REDIRECT", "--to-ports", "9000")
    client = netns.spawn("ncat", "--source", "127.0.0.2", "127.0.0.5", "19000", stdin=subprocess.PIPE)
    assert HELLO in read_until_for_test(client, HELLO, timeout=30)
    client.stdin.close()
    line = wait_log_for_test(log, "route=service-b-tcp")
    assert "dst=127.0.0.5:19000" in line and "listener=0.0.0.0:9000" in line


def test_without_a_matching_route_the_intercepted_client_is_closed(netns, tmp_path):
    service_b_for_test(netns, 19000)
    snap = tmp_path / "snapshot.json"
    snapshot_for_test(snap, ("tcp", "127.0.0.5", 19000), {
        "id": "r1", "name": "other", "protocols": ["tcp"], "destinations": [{"ip": "127.0.0.9", "port": 19000}]})
    log = tmp_path / "proxy.log"
    netns.devserver("127.0.0.3:9000 transparent", snap, log, "--proxy-bind", "127.0.0.3")
    netns.run("iptables", "--insert", "PREROUTING", "--table", "mangle", "--protocol", "tcp", "--dport", "19000",
              "--source", "127.0.0.2", "--jump", "TPROXY", "--on-port=9000", "--on-ip=127.0.0.3")
    result = netns.run("ncat", "--source", "127.0.0.2", "--recv-only", "127.0.0.5", "19000", check=False)
    assert HELLO not in result.stdout
    assert "dst=127.0.0.5:19000" in wait_log_for_test(log, "close=no_route")
