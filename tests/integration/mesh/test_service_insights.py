"""`GET /meshes/{mesh}/service-insights`: per service counts of a real control plane's `dp run` data planes,
one killed (no goodbye) -> counted offline, the service partially degraded."""
from __future__ import annotations

import os
import signal
import sys

import httpx

from tests.helpers.node import free_port, node_factory  # noqa: F401
from tests.integration.mesh.test_dp_run import CLIENT, WEB, Cp, Dp, dps, wait_until  # noqa: F401


def _insights(cp: Cp, **params) -> httpx.Response:
    return httpx.get(f"{cp.node.admin}/meshes/default/service-insights", params=params, timeout=10)


def test_service_insights_count_online_and_offline_data_planes(node_factory, tmp_path, dps):
    cp = Cp(node_factory)
    webs = []
    for name in ("web-1", "web-2"):
        port, app_port = free_port(), free_port()
        # a real app on the inbound's service port: the data plane probes it and reports it ready
        app = [sys.executable, "-m", "http.server", str(app_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
        webs.append(Dp(cp, tmp_path, name, WEB, f"name={name}", "address=127.0.0.1", f"port={port}",
                       f"app_port={app_port}", app=app))
    dps.extend(webs)
    client = Dp(cp, tmp_path, "client", CLIENT, f"outbound={free_port()}")
    dps.append(client)

    def web() -> dict:
        return httpx.get(f"{cp.node.admin}/meshes/default/service-insights/web", timeout=10).json()

    wait_until(lambda: web()["dataplanes"]["online"] == 2, timeout=60, what="both web data planes online")
    assert web()["dataplanes"] == {"online": 2, "offline": 0, "total": 2}
    assert web()["status"] == "online" and web()["serviceType"] == "internal"
    wait_until(lambda: _insights(cp).json()["total"] == 2, what="the client's gateway registered")
    listed = _insights(cp).json()
    assert listed["total"] == 2 and [i["name"] for i in listed["items"]] == ["client", "web"]
    assert listed["items"][0]["serviceType"] == "gateway_delegated"

    os.killpg(webs[0].proc.pid, signal.SIGKILL)  # no goodbye: it stays registered, its connection drops
    wait_until(lambda: web()["dataplanes"]["offline"] == 1, timeout=30, what="killed data plane counted offline")
    assert web()["dataplanes"] == {"online": 1, "offline": 1, "total": 2}
    assert web()["status"] == "partially_degraded"

    os.killpg(webs[1].proc.pid, signal.SIGKILL)
    wait_until(lambda: web()["status"] == "offline", timeout=30, what="service offline")
    assert web()["dataplanes"] == {"online": 0, "offline": 2, "total": 2}


def test_service_insights_page_and_refuse_bad_input(node_factory):
    cp = Cp(node_factory)
    for i in range(3):
        body = {"type": "Dataplane", "mesh": "default", "name": f"dp-{i}", "networking": {
            "address": "127.0.0.1", "inbound": [{"port": 9000 + i, "tags": {"kuma.io/service": f"svc-{i}"}}]}}
        assert httpx.put(f"{cp.node.admin}/meshes/default/dataplanes/dp-{i}", json=body).status_code == 201
    first = _insights(cp, size=2).json()
    assert first["total"] == 3 and [i["name"] for i in first["items"]] == ["svc-0", "svc-1"]
    second = httpx.get(first["next"]).json()
    assert [i["name"] for i in second["items"]] == ["svc-2"] and second["next"] is None
    # never connected: offline; one data plane on one address -> addressPort known
    assert second["items"][0]["dataplanes"] == {"online": 0, "offline": 1, "total": 1}
    assert second["items"][0]["addressPort"] == "127.0.0.1:9002"
    bad = _insights(cp, size="0")
    assert bad.status_code == 400 and bad.json()["causes"][0]["field"] == "size"
    assert httpx.get(f"{cp.node.admin}/meshes/default/service-insights/nope").status_code == 404
    assert httpx.get(f"{cp.node.admin}/meshes/nope/service-insights").status_code == 404
    gateways = httpx.get(f"{cp.node.admin}/meshes/default/dataplanes+insights", params={"gateway": "true"}).json()
    assert gateways["total"] == 0
    refused = httpx.get(f"{cp.node.admin}/meshes/default/dataplanes+insights", params={"gateway": "maybe"})
    assert refused.status_code == 400 and refused.json()["causes"][0]["field"] == "gateway"
