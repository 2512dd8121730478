"""The reference walkthroughs' nodes start side by side on one host with exactly the variables
the documents set (KONG_ spelled MESHWAY_), on the documents' own ports: each test has a network
namespace of its own, so those fixed ports collide with nothing else on the machine.

- kong-hybrid-mode.txt: a control plane on PostgreSQL next to a data plane (`docker run -e ...`
  becomes variables plus a prefix; the containers' names resolve through the namespace's hosts).
- kong-streams-and-service-mesh.txt: kong-c, kong-a and kong-b of steps 3-5, Kong 1.x style.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.netns.conftest import NetnsForTest
from tests.netns.mesh_for_test import MESHWAY

pytestmark = [pytest.mark.netns, pytest.mark.slow]


@pytest.fixture
def netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2")
    ns = NetnsForTest(f"mwtest-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True, timeout=10)
    ns.run("ip", "link", "set", "lo", "up")
    # `ip netns exec` shows /etc/netns/<name>/hosts as /etc/hosts: the containers' names
    hosts = Path("/etc/netns") / ns.name
    hosts.mkdir(parents=True)
    (hosts / "hosts").write_text("127.0.0.1 localhost kong-cp kong-database\n")
    try:
        yield ns
    finally:
        ns.cleanup()
        shutil.rmtree(hosts, ignore_errors=True)


def _meshway(ns: NetnsForTest, variables: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAY_")}
    return subprocess.run(ns.argv(MESHWAY, *args), env={**env, **variables}, capture_output=True, text=True,
                          timeout=timeout)


def _start(ns: NetnsForTest, variables: dict[str, str]) -> None:
    result = _meshway(ns, variables, "start")
    log = Path(variables["MESHWAY_PREFIX"]) / "logs" / "error.log"
    assert result.returncode == 0, f"{result.stderr}\n{log.read_text() if log.exists() else ''}"
    assert "meshway started" in result.stdout


def _stop_all(ns: NetnsForTest, prefixes: list[Path]) -> None:
    for prefix in prefixes:
        if (prefix / "pids" / "meshway.pid").exists():
            _meshway(ns, {"MESHWAY_PREFIX": str(prefix)}, "stop", timeout=30)


def _curl(ns: NetnsForTest, *args: str) -> str:
    return ns.run("curl", "-s", "--max-time", "5", *args, check=False, text=True).stdout


def _eventually(check, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not met in {timeout} s")


def _postgres_in(ns: NetnsForTest, base: Path) -> None:
    """kong-database: PostgreSQL on the namespace's 127.0.0.1:5432, user and database `meshway`."""
    if not shutil.which("initdb"):
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed")
    shutil.chown(base, "postgres")
    as_pg = ("runuser", "-u", "postgres", "--")
    ns.run(*as_pg, "initdb", "-D", str(base / "data"), "-U", "meshway", "--auth=trust", "--no-sync", timeout=120)
    opts = f"-p 5432 -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    ns.run(*as_pg, "pg_ctl", "-D", str(base / "data"), "-o", opts, "-l", str(base / "log"), "-w", "start", timeout=60)
    ns.run(*as_pg, "createdb", "-h", "127.0.0.1", "-U", "meshway", "meshway", timeout=30)


def _stop_postgres(ns: NetnsForTest, base: Path) -> None:
    ns.run("runuser", "-u", "postgres", "--", "pg_ctl", "-D", str(base / "data"), "-m", "fast", "stop",
           check=False, timeout=60)


def test_hybrid_control_plane_and_data_plane_with_the_documents_variables(netns, tmp_path):
    ns, data = netns, tmp_path  # `-v "$(pwd):/data"`: the certificate pair lives in /data
    ns.run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(data / "cluster.key"), "-out",
           str(data / "cluster.crt"), "-days", "365", "-nodes", "-subj", "/CN=kong_clustering/", timeout=60)
    pg = Path(tempfile.mkdtemp(prefix="meshway-pg-"))  # owned by `postgres`: not under root's tmp_path
    logs = {"MESHWAY_PROXY_ACCESS_LOG": "/dev/stdout", "MESHWAY_ADMIN_ACCESS_LOG": "/dev/stdout",
            "MESHWAY_PROXY_ERROR_LOG": "/dev/stderr", "MESHWAY_ADMIN_ERROR_LOG": "/dev/stderr"}
    cp = {"MESHWAY_PREFIX": str(tmp_path / "kong-cp"), "MESHWAY_DATABASE": "postgres", "MESHWAY_PG_HOST": "kong-database",
          # the one departure: the document's ADMIN_LISTEN=0.0.0.0:8001 publishes a container's port;
          # meshway refuses an Admin API without authentication off loopback, so the default stays
          # (127.0.0.1:8001 and 8444 ssl), as in docs/guides/hybrid-mode.md
          **logs, "MESHWAY_ROLE": "control_plane",
          "MESHWAY_CLUSTER_CERT": f"{data}/cluster.crt", "MESHWAY_CLUSTER_CERT_KEY": f"{data}/cluster.key"}
    dp = {"MESHWAY_PREFIX": str(tmp_path / "kong-dp"), "MESHWAY_DATABASE": "off", **logs,
          "MESHWAY_ROLE": "data_plane", "MESHWAY_CLUSTER_CONTROL_PLANE": "kong-cp:8005",
          "MESHWAY_LUA_SSL_TRUSTED_CERTIFICATE": f"{data}/cluster.crt",
          "MESHWAY_CLUSTER_CERT": f"{data}/cluster.crt", "MESHWAY_CLUSTER_CERT_KEY": f"{data}/cluster.key"}
    origin = ns.spawn("python3", "-m", "http.server", "--bind", "127.0.0.1", "9000", cwd=str(tmp_path))
    try:
        _postgres_in(ns, pg)
        boot = _meshway(ns, {k: cp[k] for k in ("MESHWAY_DATABASE", "MESHWAY_PG_HOST")}, "migrations", "bootstrap")
        assert boot.returncode == 0, boot.stderr
        _start(ns, cp)
        _start(ns, dp)
        assert '"name":"test"' in _curl(ns, "-X", "POST", "localhost:8001/services", "-d", "name=test",
                                         "-d", "url=http://127.0.0.1:9000").replace(" ", "")
        _curl(ns, "-X", "POST", "localhost:8001/services/test/routes", "-d", "paths[]=/")
        _eventually(lambda: "Directory listing" in _curl(ns, "localhost:8000/"), what="the data plane proxies")
        # the data plane's proxy, the control plane's Admin API and cluster listener; no status API
        listening = ns.run("ss", "-Hltn", text=True).stdout
        ports = sorted({line.split()[3].rsplit(":", 1)[1] for line in listening.splitlines()})
        assert {"8000", "8443", "8001", "8444", "8005"} <= set(ports) and "8100" not in ports, listening
    finally:
        _stop_all(ns, [Path(dp["MESHWAY_PREFIX"]), Path(cp["MESHWAY_PREFIX"])])
        origin.terminate()
        _stop_postgres(ns, pg)
        shutil.rmtree(pg, ignore_errors=True)


def test_streams_walkthrough_three_nodes_with_the_documents_variables(netns, tmp_path):
    ns = netns
    kong_c = {"MESHWAY_PREFIX": str(tmp_path / "kong-c"), "MESHWAY_LOG_LEVEL": "debug", "MESHWAY_STREAM_LISTEN": "off",
              "MESHWAY_PROXY_LISTEN": "off", "MESHWAY_ADMIN_LISTEN": "127.0.0.1:8001, 127.0.0.1:8444 ssl"}

    def sidecar(name: str, ip: str, ssl_flags: str) -> dict[str, str]:
        return {"MESHWAY_PREFIX": str(tmp_path / name), "MESHWAY_LOG_LEVEL": "debug",
                "MESHWAY_STREAM_LISTEN": f"{ip}:9000 transparent",
                "MESHWAY_PROXY_LISTEN": f"{ip}:8000 transparent, {ip}:8443 {ssl_flags}",
                "MESHWAY_ADMIN_LISTEN": "off", "MESHWAY_NGINX_PROXY_PROXY_BIND": ip}

    nodes = [kong_c, sidecar("kong-a", "127.0.0.3", "ssl transparent"), sidecar("kong-b", "127.0.0.4", "transparent ssl")]
    try:
        for variables in nodes:
            _start(ns, variables)
        assert '"tagline"' in _curl(ns, "http://127.0.0.1:8001/")
        for ip in ("127.0.0.3", "127.0.0.4"):
            assert "no Route matched" in _curl(ns, f"http://{ip}:8000/")
        listening = ns.run("ss", "-Hltn", text=True).stdout
        addresses = sorted({line.split()[3] for line in listening.splitlines()})
        # kong-c also serves the dashboard on its default 127.0.0.1:8002 (Kong 3's admin_gui_listen; the
        # sidecars have no Admin API, so no dashboard)
        assert addresses == ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8444", "127.0.0.3:8000", "127.0.0.3:8443", "127.0.0.3:9000",
                             "127.0.0.4:8000", "127.0.0.4:8443", "127.0.0.4:9000"], listening
    finally:
        _stop_all(ns, [Path(n["MESHWAY_PREFIX"]) for n in reversed(nodes)])
