"""kong-hybrid-mode.txt step by step, with meshway nodes as plain processes and a real PostgreSQL."""
import os
import stat
import subprocess
import time

import httpx
import pytest

from tests.e2e.test_node_lifecycle import _origin_for_test
from tests.helpers.node import free_port, run_cli_for_test

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _eventually(check, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what} not met in {timeout} s (last: {last!r})")


@pytest.fixture
def walkthrough_cert(tmp_path):
    crt, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:4096", "-keyout", str(key), "-out", str(crt),
         "-days", "365", "-nodes", "-subj", "/CN=kong_clustering/"],
        check=True, capture_output=True,
    )
    return str(crt), str(key)


def _cp(node_factory, postgres_db, cert, cluster_port):
    return node_factory(
        "cp", role="control_plane", proxy_listen="off", cluster_listen=f"127.0.0.1:{cluster_port}",
        cluster_cert=cert[0], cluster_cert_key=cert[1], **postgres_db.settings(),
    )


def _dp(node_factory, name, cert, cluster_port):
    return node_factory(
        name, role="data_plane", database="off", admin_listen="off",
        cluster_control_plane=f"127.0.0.1:{cluster_port}", cluster_cert=cert[0], cluster_cert_key=cert[1],
        cluster_data_plane_heartbeat="1",
    )


def test_hybrid_walkthrough(node_factory, postgres_db, walkthrough_cert):
    origin = _origin_for_test()
    cluster_port = free_port()
    cp = _cp(node_factory, postgres_db, walkthrough_cert, cluster_port)
    boot = cp.cli("migrations", "bootstrap")
    assert boot.returncode == 0, boot.stderr
    cp.start()
    dp1, dp2 = _dp(node_factory, "dp1", walkthrough_cert, cluster_port), _dp(node_factory, "dp2", walkthrough_cert, cluster_port)
    dp1.start()
    dp2.start()
    try:
        # http :8001/services name=test host=httpbin.org ; http :8001/services/test/routes paths:='["/"]'
        svc = httpx.post(cp.admin + "/services", json={"name": "test", "host": "127.0.0.1", "port": origin.port})
        assert svc.status_code == 201 and svc.json()["retries"] == 5
        route = httpx.post(cp.admin + "/services/test/routes", json={"paths": ["/"]})
        assert route.status_code == 201 and route.json()["protocols"] == ["http", "https"]
        for dp in (dp1, dp2):
            _eventually(lambda: httpx.get(dp.proxy + "/get").text == "origin saw /get", what=f"{dp.prefix.name} proxies")
        # the control plane lists both data planes with the hash they run
        planes = _eventually(lambda: _synced(cp, 2), what="both data planes listed in sync")
        assert {p["hostname"] for p in planes} and all(p["config_hash"] == planes[0]["config_hash"] for p in planes)
        status = httpx.get(cp.admin + "/clustering/status").json()
        assert len(status) == 2 and all({"config_hash", "hostname", "ip", "last_seen"} <= set(v) for v in status.values())
        # the cache on disk is private
        cache = _eventually(lambda: next(dp1.prefix.glob("config.cache*"), None), what="cache written")
        assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
        # docker rm -f kong-cp: data planes keep proxying
        cp.stop()
        assert httpx.get(dp1.proxy + "/get").status_code == 200
        _eventually(lambda: "control plane" in dp1.error_log().lower() and "retry" in dp1.error_log().lower(),
                    what="a reconnection attempt logged")
        # a data plane restarted while the control plane is down serves its cache at once
        dp2.stop()
        dp2.start()
        assert httpx.get(dp2.proxy + "/get").text == "origin saw /get"
        # the control plane comes back; a change reaches both data planes
        cp.start()
        httpx.post(cp.admin + "/services/test/routes", json={"name": "extra", "paths": ["/extra"], "strip_path": True})
        for dp in (dp1, dp2):
            _eventually(lambda: httpx.get(dp.proxy + "/extra/x").text == "origin saw /x", timeout=40,
                        what=f"{dp.prefix.name} converged after the control plane came back")
    finally:
        origin.stop()


def _synced(cp, count):
    body = httpx.get(cp.admin + "/clustering/data-planes").json()
    planes = body.get("data", body) if isinstance(body, dict) else body
    if len(planes) == count and all(p.get("sync_status") == "normal" for p in planes):
        return planes
    return None


def test_data_plane_with_wrong_certificate_is_refused(node_factory, postgres_db, walkthrough_cert, tmp_path):
    cluster_port = free_port()
    cp = _cp(node_factory, postgres_db, walkthrough_cert, cluster_port)
    cp.cli("migrations", "bootstrap")
    cp.start()
    other = (str(tmp_path / "other.crt"), str(tmp_path / "other.key"))
    gen = run_cli_for_test("hybrid", "gen-cert", *other)
    assert gen.returncode == 0, gen.stderr
    dp = _dp(node_factory, "intruder", other, cluster_port)
    dp.start()
    _eventually(lambda: "certificate" in cp.error_log().lower(), what="the control plane logs the refusal")
    body = httpx.get(cp.admin + "/clustering/data-planes").json()
    assert (body.get("data", body) if isinstance(body, dict) else body) == []
