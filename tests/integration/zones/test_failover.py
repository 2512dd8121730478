"""Failover between zones (consul#9811: a failover that does not fire is what users hit): `api` runs
in both zones, web's calls stay in onprem; when onprem's last instance of api leaves, the calls go
to cloud through the gateways; when one comes back, they come back."""
from __future__ import annotations

import signal
import sys

import httpx

from tests.helpers.node import free_port
from tests.integration.zones.test_cross_zone_calls import (  # noqa: F401
    ALLOW_ALL, API, MTLS_ON, WEB, http_app, wait_for, zones)

FAILOVER = """\
Kind = "service-resolver"
Name = "api"
Failover = {
  "*" = {
    Datacenters = ["cloud"]
  }
}
"""
LOCAL_MODE = '{"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}}'


def answer(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    except httpx.HTTPError as e:
        return f"error: {e}"


def api_dataplane(zone, tmp_path, name: str, text: str):
    root = tmp_path / f"root-{zone.name}-{name}"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text(text)
    port, app = free_port(), free_port()
    ready = zone.dataplane(name, API.replace("name: api", f"name: {name}").format(port=port, app_port=app),
                           [sys.executable, "-m", "http.server", str(app), "--bind", "127.0.0.1", "--directory",
                            str(root)])
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{ready}/ready").status_code == 200, what=f"{name} ready")
    return zone.procs[-1]


def test_failover_to_the_other_zone_and_back(zones, tmp_path):
    onprem, cloud = zones
    for zone in (onprem, cloud):
        zone.apply(MTLS_ON)
        zone.apply(ALLOW_ALL)
    onprem.gateway(free_port(), free_port())
    cloud.gateway(free_port(), free_port())
    api_dataplane(cloud, tmp_path, "api", "api in cloud\n")
    local_api = api_dataplane(onprem, tmp_path, "api-onprem", "api in onprem\n")
    web_port, web_app, api_out = free_port(), free_port(), free_port()
    onprem.dataplane("web", WEB.format(port=web_port, app_port=web_app, api_out=api_out), http_app(web_app))
    wait_for(lambda: {z["name"]: z for z in httpx.get(f"{onprem.cp.admin}/zones").json()["items"]}["cloud"]["gateways"],
             what="onprem knows cloud's gateway")
    for text in (FAILOVER, LOCAL_MODE):
        written = onprem.meshway("config", "write", "-", stdin=text)
        assert written.returncode == 0, written.stderr

    wait_for(lambda: answer(api_out) == "api in onprem\n", what="calls stay in onprem while api runs there")
    local_api.send_signal(signal.SIGTERM)  # the last local instance leaves
    local_api.wait(20)
    wait_for(lambda: answer(api_out) == "api in cloud\n", what="failover to cloud")
    assert all(answer(api_out) == "api in cloud\n" for _ in range(5))

    api_dataplane(onprem, tmp_path, "api-onprem-2", "api in onprem again\n")  # one returns
    wait_for(lambda: answer(api_out) == "api in onprem again\n", what="traffic back in onprem")
