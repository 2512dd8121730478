"""A mesh gateway authenticates to its zone as a data plane does: `-grpc-addr` names the zone's data
plane server and `-token-file` a dataplane token; no Admin API is given to it (the gateway's default,
127.0.0.1:8001, is no control plane here). It registers, is fed its routes on that link, carries
web's calls to api in the other zone, is listed as a gateway data plane, and deregisters on SIGTERM.
A token bound to another name is refused."""
from __future__ import annotations

import signal
import sys

import httpx

from tests.helpers.node import MESHWAY, free_port
from tests.integration.zones.test_cross_zone_calls import (  # noqa: F401
    ALLOW_ALL, API, DATA, MTLS_ON, WEB, http_app, wait_for, zones)


def token(zone, name: str) -> str:
    made = zone.meshway("generate", "dataplane-token", "--name", name, "--mesh", "default")
    assert made.returncode == 0, made.stderr
    path = zone.tmp / f"{zone.name}-{name}-gw.token"
    path.write_text(made.stdout)
    return str(path)


def gateway(zone, name: str, token_file: str, *extra: str):
    return zone.spawn(f"gw-{name}", [MESHWAY, "connect", "envoy", "-mesh-gateway", "-register",
                                     "-address", f"127.0.0.1:{free_port()}", "-wan-address", f"127.0.0.1:{free_port()}",
                                     "-admin-bind", f"127.0.0.1:{free_port()}",
                                     "-work-dir", str(zone.tmp / f"{zone.name}-gw-{name}"),
                                     "-grpc-addr", f"https://127.0.0.1:{zone.dp_port}", "-token-file", token_file,
                                     *extra])


def local_zone(zone) -> dict:
    return next(z for z in httpx.get(f"{zone.cp.admin}/zones").json()["items"] if z["local"])


def test_a_gateway_with_a_dataplane_token_registers_and_routes_without_the_admin_api(zones, tmp_path):
    onprem, cloud = zones
    for zone in (onprem, cloud):
        zone.apply(MTLS_ON)
        zone.apply(ALLOW_ALL)
    onprem_gw = gateway(onprem, "mesh-gateway", token(onprem, "mesh-gateway"))
    gateway(cloud, "mesh-gateway", token(cloud, "mesh-gateway"))
    wait_for(lambda: local_zone(onprem)["gatewayStatus"].get("mesh-gateway") == "passing", timeout=60,
             what="onprem's gateway registered over its data plane link")
    listed = onprem.meshway("get", "dataplanes")
    assert listed.returncode == 0 and "mesh-gateway" in listed.stdout, listed.stdout + listed.stderr

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
    # (global_defaults.hcl's protocol http: web's sidecar answers 502 while the path is not there yet)
    answer = wait_for(lambda: (r := httpx.get(f"http://127.0.0.1:{api_out}/", timeout=5)).status_code == 200 and r,
                      timeout=60, what="web reaches api through the two link-fed gateways")
    assert answer.text == "api in cloud\n"
    wait_for(lambda: "route=remote-cloud mode=passthrough" in onprem.log("gw-mesh-gateway/node/logs/access.log"),
             what="onprem's gateway logged it")

    # a token bound to another name does not let a gateway register under this one
    imposter = gateway(onprem, "other", token(onprem, "web"), "-proxy-id", "mesh-gateway-2")
    assert imposter.wait(60) == 1
    assert "refused" in onprem.log("gw-other"), onprem.log("gw-other")
    assert "mesh-gateway-2" not in local_zone(onprem)["gatewayStatus"]

    onprem_gw.send_signal(signal.SIGTERM)  # deregisters: gone from the zone and from its data planes
    assert onprem_gw.wait(30) == 0
    wait_for(lambda: "mesh-gateway" not in local_zone(onprem)["gatewayStatus"], what="deregistered")
    assert "mesh-gateway" not in onprem.meshway("get", "dataplanes").stdout


def test_a_data_plane_registers_only_the_gateway_its_token_names(tmp_path):
    """On the data plane link, a registration or deregistration is taken only for the name the
    sender's token is bound to: web's sidecar cannot register, replace or remove mesh-gateway."""
    from meshway.settings import load_settings
    from meshway.store import open_store
    from meshway.zones._gwlink import on_message
    from meshway.zones._gwrun import registration

    store = open_store(load_settings(env={}, overrides={"prefix": str(tmp_path)}))
    try:
        store.reset()
        store.bootstrap()

        def gateways() -> dict:
            return {g["ID"]: g["LAN"] for g in store.config_entries.records("_gateway")}

        body = registration("mesh-gateway", "mesh-gateway", "127.0.0.1:8443", "127.0.0.2:8443")
        on_message(store, "default", "web", {"type": "mesh_gateway", "registration": body})
        assert gateways() == {}
        on_message(store, "default", "mesh-gateway", {"type": "mesh_gateway", "registration": body})
        assert gateways() == {"mesh-gateway": "127.0.0.1:8443"}
        hijack = registration("mesh-gateway", "mesh-gateway", "127.0.0.9:8443", "127.0.0.9:8443")
        on_message(store, "default", "web", {"type": "mesh_gateway", "registration": hijack})
        on_message(store, "default", "web", {"type": "mesh_gateway", "deregister": "mesh-gateway"})
        on_message(store, "default", "mesh-gateway", {"type": "mesh_gateway", "registration": {"Kind": "typo"}})
        assert gateways() == {"mesh-gateway": "127.0.0.1:8443"}
        on_message(store, "default", "mesh-gateway", {"type": "mesh_gateway", "deregister": "mesh-gateway"})
        assert gateways() == {}
    finally:
        store.close()
