"""A service whose host does not resolve: 503 `{"message": "name resolution failed"}`, as Kong.

Kong answers so when its DNS client gets NXDOMAIN or an empty answer for a service's host
(kong/runloop/balancer/init.lua); before this, meshway answered 502. The namespace's resolver is
a real DNS server (dnslib on the namespace's 127.0.0.1:53), so the worker's lookups go over
DNS exactly as on a host, and stay inside the namespace.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.proxy.proxy_for_test import (PYTHON, ROOT, route_for_test, service_for_test,
                                                    snapshot_for_test)

ORIGIN_PORT = 8080  # inside the test's own namespace: nothing else can hold it
ZONE = "known.test. 60 IN A 127.0.0.1\nempty.test. 60 IN TXT \"no address here\"\n"


@pytest.fixture
def resolv_conf(netns):
    """/etc/netns/<ns>/resolv.conf: `ip netns exec` mounts it over /etc/resolv.conf."""
    folder = Path("/etc/netns") / netns.name
    folder.mkdir(parents=True)
    (folder / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _spawn_ready(netns, argv: list[str]) -> str:
    proc = netns.spawn(*argv, cwd=str(ROOT))
    line = proc.stdout.readline().decode()  # bounded: the process prints `ready` or exits (EOF)
    if not line.startswith("ready"):
        raise RuntimeError(f"{argv[1:3]} did not start: {line!r} {proc.stderr.read().decode()}")
    return line


def _worker(netns, tmp_path: Path) -> tuple[int, int]:
    """The worker's HTTP/1.1 port and its HTTP/2 (prior knowledge) port."""
    services = {name: service_for_test(host=f"{name}.test", port=ORIGIN_PORT, retries=2)
                for name in ("known", "missing", "empty")}
    routes = [route_for_test(svc, paths=[f"/{name}"]) for name, svc in services.items()]
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(snapshot_for_test(services=list(services.values()), routes=routes)))
    env_prefix = ["env", f"MESHWAY_PREFIX={tmp_path / 'worker'}"]
    line = _spawn_ready(netns, [*env_prefix, PYTHON, "-m", "meshway.proxy.worker", "--standalone",
                                "--snapshot", str(snap), "--listen", "127.0.0.1:0",
                                "--listen", "127.0.0.1:0 http2"])
    h1, h2 = (int(addr.rsplit(":", 1)[1]) for addr in line.split()[1:3])
    return h1, h2


def _get(netns, port: int, path: str, *curl: str) -> tuple[int, dict | str]:
    out = netns.run("curl", "-s", "-m", "10", *curl, "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}").stdout
    body, _, code = out.decode().rpartition("\n")
    try:
        return int(code), json.loads(body)
    except ValueError:
        return int(code), body


def test_unresolvable_service_host_is_503_name_resolution_failed(netns, resolv_conf, tmp_path):
    zone = tmp_path / "zone.txt"
    zone.write_text(ZONE)
    _spawn_ready(netns, [PYTHON, str(ROOT / "tests" / "netns" / "dns53_for_test.py"), str(zone)])
    origin = netns.spawn(PYTHON, "-m", "http.server", str(ORIGIN_PORT), "--bind", "127.0.0.1",
                         "--directory", str(tmp_path))
    netns.wait_listening("127.0.0.1", ORIGIN_PORT)
    h1, h2 = _worker(netns, tmp_path)

    for port, curl in ((h1, ()), (h2, ("--http2-prior-knowledge",))):
        status, _ = _get(netns, port, "/known/zone.txt", *curl)
        assert status == 200  # the DNS server answers the worker: a known name is proxied
        assert _get(netns, port, "/missing/x", *curl) == (503, {"message": "name resolution failed"})  # NXDOMAIN
        assert _get(netns, port, "/empty/x", *curl) == (503, {"message": "name resolution failed"})  # no A record
    assert origin.poll() is None
