"""proxy-cache and response-ratelimiting in hybrid mode: configured on a control plane (real
PostgreSQL), run by a data plane with two workers (one cache and one count for the data plane)."""
from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.e2e.test_hybrid_walkthrough import _cp, _dp, _eventually
from tests.e2e.test_proxy_cache_plugin import CountingOriginForTest
from tests.e2e.test_proxy_cache_plugin import get_for_test as cached_get_for_test
from tests.e2e.test_response_ratelimiting_plugin import CostingOriginForTest, get_for_test, remaining_for_test
from tests.helpers.node import free_port

pytestmark = [pytest.mark.postgres]


def test_data_plane_runs_the_traffic_plugins(node_factory, postgres_db, tmp_path):
    cert = (str(tmp_path / "cluster.crt"), str(tmp_path / "cluster.key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", cert[1],
                    "-out", cert[0], "-days", "2", "-nodes", "-subj", "/CN=kong_clustering/"], check=True, capture_output=True)
    cluster_port = free_port()
    cp = _cp(node_factory, postgres_db, cert, cluster_port)
    assert cp.cli("migrations", "bootstrap").returncode == 0
    cp.start()
    dp = _dp(node_factory, "dp", cert, cluster_port)
    dp.settings["workers"] = "2"
    dp.conf.write_text(dp.conf.read_text().replace("workers = 1", "workers = 2"))
    dp.start()
    admin = httpx.Client(base_url=cp.admin)
    cached, costing = CountingOriginForTest(), CostingOriginForTest()
    assert admin.post("/services", json={"name": "c", "url": cached.url}).status_code == 201
    assert admin.post("/services", json={"name": "m", "url": costing.url}).status_code == 201
    assert admin.post("/services/c/routes", json={"name": "cached", "paths": ["/cached"]}).status_code == 201
    assert admin.post("/services/m/routes", json={"name": "metered", "paths": ["/metered"]}).status_code == 201
    assert admin.post("/routes/cached/plugins", json={"name": "proxy-cache", "config": {"strategy": "memory"}}).status_code == 201
    assert admin.post("/routes/metered/plugins", json={"name": "response-ratelimiting", "config": {
        "limits": {"videos": {"day": 2}}}}).status_code == 201
    refused = admin.post("/plugins", json={"name": "response-ratelimiting", "config": {
        "limits": {"videos": {"day": 2}}, "policy": "cluster"}})
    assert refused.status_code == 400 and refused.json()["fields"]["config"]["policy"] == "expected one of: local, redis"
    acme = admin.post("/plugins", json={"name": "acme", "config": {"account_email": "ops@meshway.test", "storage": "shm",
                                                                   "api_uri": "https://127.0.0.1:9/dir"}})
    assert acme.status_code == 400 and acme.json()["fields"]["config"]["storage"] == "\"shm\" storage can't be used in Hybrid mode"

    _eventually(lambda: get_for_test(dp, "/metered/x").headers.get("X-RateLimit-Limit-videos-day") == "2",
                what="the data plane runs response-ratelimiting")
    _eventually(lambda: "X-Cache-Status" in cached_get_for_test(dp, "/cached/x").headers, what="the data plane caches")
    statuses = [cached_get_for_test(dp, "/cached/y").headers["X-Cache-Status"] for _ in range(6)]
    assert statuses == ["Miss"] + ["Hit"] * 5
    got = [get_for_test(dp, "/metered/x?cost=videos=1") for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 429]
    assert [remaining_for_test(r) for r in got] == ["1", "0", "0"]
