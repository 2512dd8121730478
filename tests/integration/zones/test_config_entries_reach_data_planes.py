"""Config entries take the one configuration path: store, snapshot, pushed to the zone's data planes."""
from __future__ import annotations

import gzip
import json
import subprocess
import time

from meshway.pki import gen_cluster_cert
from tests.helpers.node import MESHWAY, clean_env, free_port, node_factory  # noqa: F401


def cached(dp) -> dict:
    path = dp.prefix / "config.cache.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))["snapshot"] if path.exists() else {}


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_a_written_entry_reaches_a_hybrid_data_plane_and_a_delete_removes_it(node_factory, tmp_path):
    cert, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    gen_cluster_cert(cert, key)
    port = free_port()
    cp = node_factory("cp", role="control_plane", proxy_listen="off", cluster_listen=f"127.0.0.1:{port}",
                      cluster_cert=str(cert), cluster_cert_key=str(key), datacenter="cloud")
    cp.start()
    dp = node_factory("dp", role="data_plane", database="off", admin_listen="off", cluster_control_plane=f"127.0.0.1:{port}",
                      cluster_cert=str(cert), cluster_cert_key=str(key))
    dp.start()
    wait_for(lambda: "config_entries" in cached(dp))
    assert cached(dp)["config_entries"] == []

    written = subprocess.run([MESHWAY, "config", "write", "-", "--cp-address", cp.admin], capture_output=True, text=True,
                             input='kind = "service-resolver"\nname = "api"\nfailover { "*" { datacenters = ["onprem"] } }\n',
                             env=clean_env(), timeout=60)
    assert written.returncode == 0, written.stderr
    entries = wait_for(lambda: cached(dp).get("config_entries"))
    assert entries == [{"Kind": "service-resolver", "Name": "api", "Failover": {"*": {"Datacenters": ["onprem"]}}}]

    deleted = subprocess.run([MESHWAY, "config", "delete", "-kind", "service-resolver", "-name", "api", "--cp-address",
                              cp.admin], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: cached(dp).get("config_entries") == [])
