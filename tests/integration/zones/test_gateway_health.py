"""A gateway's health takes it out of routing (Consul's TTL check on a mesh gateway): cloud runs two
gateways; one is killed with SIGKILL (supervisor and proxy, so nothing deregisters it). Its TTL
lapses, cloud marks it critical, and onprem's gateway stops sending cloud's traffic to it: every
call from web in onprem then reaches api in cloud through the gateway that is left. It comes back
when it registers again."""
from __future__ import annotations

import os
import signal
import sys

import httpx

from tests.helpers.node import MESHWAY, free_port
from tests.integration.zones.test_cross_zone_calls import (  # noqa: F401
    ALLOW_ALL, API, DATA, MTLS_ON, WEB, http_app, wait_for, zones)


def gateway(zone, gid: str, lan: int, wan: int):
    return zone.spawn(gid, [MESHWAY, "connect", "envoy", "-gateway=mesh", "-register", "-proxy-id", gid,
                            "-address", f"127.0.0.1:{lan}", "-wan-address", f"127.0.0.1:{wan}",
                            "-admin-bind", f"127.0.0.1:{free_port()}", "-work-dir", str(zone.tmp / f"{zone.name}-{gid}"),
                            "-http-addr", zone.cp.admin])


def status(zone, gid: str) -> str | None:
    local = next(z for z in httpx.get(f"{zone.cp.admin}/zones").json()["items"] if z["local"])
    return local["gatewayStatus"].get(gid)


def routed_to(zone, port: int) -> bool:
    """Does the zone's gateway document send another zone's traffic to 127.0.0.1:port?"""
    document = httpx.get(f"{zone.cp.admin}/v1/zones/gateway-config").json()
    return any(t["target"] == f"127.0.0.1:{port}" for u in document.get("upstreams") or ()
               for t in u.get("targets") or ())


def answers(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    except httpx.HTTPError as e:
        return f"error: {e}"


def test_a_killed_gateway_leaves_routing_and_returns_when_it_registers(zones, tmp_path):
    onprem, cloud = zones
    for zone in (onprem, cloud):
        zone.apply(MTLS_ON)
        zone.apply(ALLOW_ALL)
    gateway(onprem, "onprem-gw", free_port(), free_port())
    gw_a = gateway(cloud, "cloud-gw-a", lan_a := free_port(), wan_a := free_port())
    gateway(cloud, "cloud-gw-b", free_port(), wan_b := free_port())
    root = tmp_path / "api-root"
    root.mkdir()
    (root / "index.html").write_text("api in cloud\n")
    api_port, api_app = free_port(), free_port()
    cloud.dataplane("api", API.format(port=api_port, app_port=api_app),
                    [sys.executable, "-m", "http.server", str(api_app), "--bind", "127.0.0.1", "--directory", str(root)])
    web_port, web_app, api_out = free_port(), free_port(), free_port()
    onprem.dataplane("web", WEB.format(port=web_port, app_port=web_app, api_out=api_out), http_app(web_app))
    for name in ("global_defaults.hcl", "api_resolver.hcl"):
        assert onprem.meshway("config", "write", str(DATA / name)).returncode == 0
    wait_for(lambda: routed_to(onprem, wan_a) and routed_to(onprem, wan_b), timeout=60,
             what="onprem's gateway sends to both of cloud's gateways")
    wait_for(lambda: answers(api_out) == "api in cloud\n", timeout=60, what="web reaches api")
    assert status(cloud, "cloud-gw-a") == "passing"

    os.killpg(gw_a.pid, signal.SIGKILL)  # the gateway and its proxy die; nothing deregisters it
    gw_a.wait(10)
    wait_for(lambda: status(cloud, "cloud-gw-a") == "critical", timeout=60, what="cloud marks gw-a critical")
    assert status(cloud, "cloud-gw-b") == "passing"
    wait_for(lambda: not routed_to(onprem, wan_a), timeout=30, what="onprem's gateway stops sending to gw-a")
    assert routed_to(onprem, wan_b)
    # every call now goes through gw-b (round robin over both would fail every other one)
    wait_for(lambda: [answers(api_out) for _ in range(6)] == ["api in cloud\n"] * 6,
             what="six calls in a row reach api through gw-b")
    shown = cloud.meshway("get", "zones", "-o", "json")  # still registered, shown critical (as Consul shows it)
    assert shown.returncode == 0, shown.stderr
    assert '"cloud-gw-a": "critical"' in shown.stdout and '"cloud-gw-b": "passing"' in shown.stdout, shown.stdout

    gateway(cloud, "cloud-gw-a", lan_a, wan_a)  # it comes back: passing, routed to again
    wait_for(lambda: status(cloud, "cloud-gw-a") == "passing" and routed_to(onprem, wan_a), timeout=60,
             what="gw-a back in routing")


def test_control_planes_on_one_database_judge_a_gateway_alike(tmp_path):
    """Two control planes of one zone share its database; a gateway heartbeats to one of them. The
    other must not find it expired (it would flap), and both find it expired once it stops."""
    import time

    from meshway.settings import load_settings
    from meshway.store import open_store
    from meshway.zones._catalog import gateway_record
    from meshway.zones._gwrun import registration
    from meshway.zones._health import GATEWAY_TTL, heartbeat, sweep

    settings = load_settings(env={}, overrides={"prefix": str(tmp_path)})
    a, b = open_store(settings), open_store(settings)
    try:
        a.reset()
        a.bootstrap()
        record = gateway_record(registration("mesh-gateway", "gw-1", "127.0.0.1:8443", "127.0.0.2:8443"))
        heartbeat(a, record)  # to control plane a
        now = time.time()

        def status() -> str:
            return {g["ID"]: g.get("Status") for g in b.config_entries.records("_gateway")}["gw-1"]

        assert sweep(b, now + GATEWAY_TTL / 2) == [] and status() == "passing"  # b heard nothing, yet judges alike
        assert sweep(b, now + GATEWAY_TTL + 1) == ["gw-1"] and status() == "critical"
        assert sweep(a, now + GATEWAY_TTL + 2) == []  # already marked: no second write
        heartbeat(a, record)  # it came back
        assert status() == "passing"
    finally:
        a.close()
        b.close()
