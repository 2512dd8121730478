"""Transparent proxying's `<service>.mesh` and `protocol = "http"` for calls to other zones: the
VIP of a service only another zone runs is rewritten like an outbound, DNS answers it and the
derived reachable services count it; an HTTP service's call gets the HTTP path with the zone hop."""
from __future__ import annotations

from meshway.mesh._permissions import dns_vips
from meshway.mesh._translate import dataplane_snapshot
from meshway.proxy import compile_runtime
from meshway.settings import load_settings
from meshway.settings import load_settings as settings_of
from meshway.store import open_store
from meshway.zones import check_entry
from meshway.zones._federation import learn

MTLS = {"type": "Mesh", "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}
WEB = {"type": "Dataplane", "mesh": "default", "name": "web",
       "networking": {"address": "10.5.0.10", "transparentProxying": {"redirectPortOutbound": 15001,
                                                                      "redirectPortInbound": 15006},
                      "inbound": [{"port": 20000, "servicePort": 9090, "tags": {"kuma.io/service": "web"}}],
                      "outbound": [{"port": 9091, "tags": {"kuma.io/service": "api"}}]}}
CLOUD = {"datacenter": "cloud", "gateways": [{"ID": "gw", "WAN": "192.169.7.140:443"}],
         "services": {"default": ["api"]}, "trust": {"default": ["CLOUD-CA"]}}
ZONES = {"datacenter": "onprem", "gateways": [{"ID": "gw", "Service": "mesh-gateway", "LAN": "10.5.0.33:8443",
                                               "WAN": "192.169.7.33:8443"}], "remote": [CLOUD]}
REDIRECT = check_entry({"kind": "service-resolver", "name": "api", "redirect": {"datacenter": "cloud"}})
LOCAL = check_entry({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}})
HTTP = check_entry({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"},
                    "MeshGateway": {"Mode": "local"}})
VIPS = {"default": {"api": "240.0.0.2", "web": "240.0.0.1"}}


def view(config_entries: list[dict]) -> dict:
    snapshot = {"mesh_resources": {"meshes": [MTLS], "dataplanes": [WEB], "vips": VIPS},
                "config_entries": config_entries, "zones": ZONES}
    return dataplane_snapshot(snapshot, "default", "web")


def services(out: dict) -> dict[str, dict]:
    return {s["name"]: s for s in out["services"]}


def targets_of(out: dict, service: dict) -> list[str]:
    upstream = next(u for u in out["upstreams"] if u["name"] == service["host"])
    return [t["target"] for t in out.get("targets") or () if t["upstream"]["id"] == upstream["id"]]


def test_the_vip_of_a_service_in_another_zone_goes_through_the_gateway_with_the_zone_hop():
    out = view([REDIRECT, LOCAL])
    vip = services(out)["vip-api"]
    assert targets_of(out, vip) == ["10.5.0.33:8443"]
    route = next(r for r in out["routes"] if r["name"] == "vip-api")
    assert route["destinations"] == [{"ip": "240.0.0.2", "port": 80}]
    assert out["mesh"]["zone_hops"]["vip-api"] == {"sni": "api.default.cloud.internal.mesh.meshway",
                                                   "identity": "spiffe://meshway/mesh/default/service/api"}
    assert "vip-api-http" not in services(out)  # protocol tcp: relayed as a stream
    compile_runtime(out, load_settings(env={}))


def test_without_a_resolver_the_vip_has_a_route_named_after_the_reason():
    out = view([])
    name = next(n for n in services(out) if n.startswith("vip-api"))
    assert name == "vip-api.no-healthy-instance-of-api-in-datacenter-onprem"
    assert targets_of(out, services(out)[name]) == []


def test_an_http_service_in_another_zone_takes_the_http_path_with_the_same_hop():
    out = view([REDIRECT, HTTP])
    for label, listener in (("outbound-0", "127.0.0.1:9091"), ("vip-api", "240.0.0.2:80")):
        http = services(out)[f"{label}-http"]
        assert http["protocol"] == "http" and targets_of(out, http) == ["10.5.0.33:8443"]
        route = next(r for r in out["routes"] if r["name"] == f"{label}-http")
        ip, port = listener.rsplit(":", 1)
        assert route["destinations"] == [{"ip": ip, "port": int(port)}] and route["preserve_host"] is True
        assert out["mesh"]["zone_hops"][f"{label}-http"] == out["mesh"]["zone_hops"][label]
        assert listener in out["mesh"]["http"]  # the stream listener hands these connections to HTTP
    runtime = compile_runtime(out, load_settings(env={}))
    assert runtime is not None


def test_service_defaults_protocol_overrides_proxy_defaults():
    tcp_api = check_entry({"Kind": "service-defaults", "Name": "api", "Protocol": "tcp"})
    out = view([REDIRECT, HTTP, tcp_api])
    assert "outbound-0-http" not in services(out) and "127.0.0.1:9091" not in (out["mesh"].get("http") or ())


def test_dns_answers_a_service_only_another_zone_runs_where_reachable_services_are_derived():
    section = {"meshes": [MTLS], "dataplanes": [WEB], "vips": VIPS, "policies": []}
    shown, hidden = dns_vips(section, "default", "web")
    assert "api" in hidden  # mTLS on, nothing here allows web to call api: hidden without zones
    shown, hidden = dns_vips(section, "default", "web", {"api"})
    assert shown["api"] == "240.0.0.2" and "api" not in hidden
    explicit = {**WEB, "networking": {**WEB["networking"], "transparentProxying": {"reachableServices": ["web"]}}}
    shown, hidden = dns_vips({**section, "dataplanes": [explicit]}, "default", "web", {"api"})
    assert "api" in hidden  # the user's own list stands


def test_a_federated_zone_reserves_vips_for_the_other_zones_services(tmp_path):
    store = open_store(settings_of(env={"MESHWAY_DATABASE": "sqlite", "MESHWAY_PREFIX": str(tmp_path)}),
                       bootstrap=True)
    store.mesh.put({"type": "Mesh", "name": "default"})
    summary = {"datacenter": "cloud", "services": {"default": ["api"], "absent": ["x"]}}  # mesh absent: no VIP
    assert learn(store, summary, "onprem", "onprem")
    snapshot = store.export_snapshot()
    assert set(snapshot["mesh_resources"]["vips"]["default"]) == {"api"}
    version = store.version()
    assert not learn(store, summary, "onprem", "onprem")
    assert store.version() == version  # an unchanged summary writes nothing
    learn(store, {"datacenter": "cloud", "services": {"default": []}}, "onprem", "onprem")
    assert "api" not in store.export_snapshot()["mesh_resources"]["vips"].get("default", {})  # gone: not resolved
