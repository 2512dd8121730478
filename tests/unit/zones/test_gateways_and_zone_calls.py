"""The pure parts of gateways and federation: a gateway's routes, registrations as Consul's agent
takes them, summaries from peers, a data plane's calls to other zones, per-SNI counters."""
from __future__ import annotations

import pytest

from meshway.mesh._translate import dataplane_snapshot
from meshway.model import parse_declarative
from meshway.proxy import compile_runtime
from meshway.settings import load_settings
from meshway.zones import check_entry
from meshway.zones._catalog import RegistrationError, gateway_record
from meshway.zones._federation import check_summary, peer_url
from meshway.zones._gateway import gateway_document
from meshway.zones._gwmetrics import LogFollower, SniCounters, parse_line

WEB = {"type": "Dataplane", "mesh": "default", "name": "web",
       "networking": {"address": "10.5.0.10", "inbound": [{"port": 20000, "servicePort": 9090,
                                                           "tags": {"kuma.io/service": "web"}}],
                      "outbound": [{"port": 9091, "tags": {"kuma.io/service": "api"}}]}}
CLOUD = {"datacenter": "cloud", "gateways": [{"ID": "gw", "WAN": "192.169.7.140:443"}],
         "services": {"default": ["api"]}, "trust": {"default": ["CLOUD-CA"]}}
ZONES = {"datacenter": "onprem", "gateways": [{"ID": "gw", "Service": "mesh-gateway", "LAN": "10.5.0.33:8443",
                                               "WAN": "192.169.7.33:8443"}], "remote": [CLOUD]}
REDIRECT = check_entry({"kind": "service-resolver", "name": "api", "redirect": {"datacenter": "cloud"}})


def entries(mode: str) -> list[dict]:
    return [REDIRECT, check_entry({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": mode}})]


def view(config_entries: list[dict], zones: dict = ZONES) -> dict:
    snapshot = {"mesh_resources": {"meshes": [{"type": "Mesh", "name": "default"}], "dataplanes": [WEB]},
                "config_entries": config_entries, "zones": zones}
    return dataplane_snapshot(snapshot, "default", "web")


def outbound(out: dict) -> tuple[str, list[str]]:
    service = next(s for s in out["services"] if s["name"].startswith("outbound-0"))
    upstream = next((u for u in out["upstreams"] if u["name"] == service["host"]), None)
    targets = [t["target"] for t in out.get("targets") or () if upstream and t["upstream"]["id"] == upstream["id"]]
    return service["name"], targets


def test_a_gateway_routes_its_zones_services_and_the_other_zones_by_sni():
    doc = gateway_document("cloud", {("default", "api"): [("10.6.0.10", 20000)], ("default", "bad_name"): [("1.1.1.1", 1)]},
                           {"onprem": [("192.169.7.33", 8443)], "cloud": [("192.169.7.140", 443)]})
    routes = {r["name"]: r for s in parse_declarative(doc)["routes"] for r in [s]}
    assert routes["local-default-api"]["snis"] == ["api.default.cloud.internal.mesh.meshway",
                                                   "*.api.default.cloud.internal.mesh.meshway"]
    assert routes["local-default-api"]["protocols"] == ["tls_passthrough"]
    assert routes["remote-onprem"]["snis"] == ["*.onprem.internal.mesh.meshway"]
    assert set(routes) == {"local-default-api", "remote-onprem"}  # not its own zone, not an invalid label


@pytest.mark.parametrize("body, message", [
    ({"Kind": "connect-proxy", "Address": "10.0.0.1", "Port": 1}, "Kind: only 'mesh-gateway'"),
    ({"Kind": "mesh-gateway", "Address": "gw.example", "Port": 1}, "Address: 'gw.example' is not an IP address"),
    ({"Kind": "mesh-gateway", "Address": "10.0.0.1", "Port": 70000}, "Address: port 70000 out of range"),
    ({"Kind": "mesh-gateway", "Address": "10.0.0.1", "Port": 1, "TaggedAddresses": {"wan": {"Address": "x", "Port": 1}}},
     "TaggedAddresses.wan: 'x' is not an IP address"),
])
def test_registrations_consul_would_refuse_name_the_field(body, message):
    with pytest.raises(RegistrationError, match=message):
        gateway_record(body)


def test_a_registration_without_a_wan_address_is_reached_at_its_lan_one():
    assert gateway_record({"Kind": "mesh-gateway", "Address": "10.5.0.33", "Port": 8443}) == {
        "ID": "mesh-gateway", "Service": "mesh-gateway", "LAN": "10.5.0.33:8443", "WAN": "10.5.0.33:8443"}


def test_peers_and_their_summaries():
    assert peer_url("192.169.7.2") == "http://192.169.7.2:8001"
    assert peer_url("192.169.7.2:9000") == "http://192.169.7.2:9000"
    assert peer_url("https://cp.example/") == "https://cp.example"
    with pytest.raises(ValueError, match="each zone needs its own datacenter name"):
        check_summary({"datacenter": "onprem"}, "onprem")
    with pytest.raises(ValueError, match="gateways: expected a list"):
        check_summary({"datacenter": "cloud", "gateways": {}}, "onprem")


def test_a_redirected_call_goes_through_the_local_gateway_with_consuls_sni():
    out = view(entries("local"))
    assert outbound(out) == ("outbound-0", ["10.5.0.33:8443"])
    assert out["mesh"]["zone_hops"] == {"outbound-0": {"sni": "api.default.cloud.internal.mesh.meshway",
                                                       "identity": "spiffe://meshway/mesh/default/service/api"}}
    compile_runtime(out, load_settings(env={}))  # the workers take it as it is


def test_mode_remote_dials_the_other_zones_gateway_and_none_says_why_it_cannot():
    assert outbound(view(entries("remote")))[1] == ["192.169.7.140:443"]
    name, targets = outbound(view(entries("none")))
    assert targets == [] and name.startswith("outbound-0.api-is-in-datacenter-cloud-set-meshgateway-mode-local")


def test_without_a_resolver_the_call_stays_here_and_the_reason_is_its_name():
    name, targets = outbound(view([]))
    assert (name, targets) == ("outbound-0.no-healthy-instance-of-api-in-datacenter-onprem", [])
    assert "zone_hops" not in view([])["mesh"]


def test_a_zone_that_left_no_gateway_cannot_be_reached():
    name, targets = outbound(view(entries("remote"), {**ZONES, "remote": [{**CLOUD, "gateways": []}]}))
    assert targets == [] and "no-healthy-instance-of-api-in-datacenter-cloud" in name


def test_per_sni_counters_from_access_lines(tmp_path):
    log = tmp_path / "access.log"
    line = ('stream client=10.5.0.10:1 dst=10.5.0.33:8443 listener=10.5.0.33:8443 kind=tls '
            'sni=api.default.cloud.internal.mesh.meshway route=remote-cloud mode=passthrough up_bytes=10 '
            'down_bytes=20 close=upstream_closed error="a b"\n')
    log.write_text(line + "GET / HTTP/1.1 other line\n" + line[:40])  # a partial line waits
    follower, counters = LogFollower(log), SniCounters()
    for text in follower.new_lines():
        if (fields := parse_line(text)) is not None:
            counters.add(fields)
    assert follower.new_lines() == []
    text = counters.render()
    assert ('meshway_mesh_gateway_connections_total{sni="api.default.cloud.internal.mesh.meshway",'
            'route="remote-cloud",close="upstream_closed"} 1') in text
    assert 'meshway_mesh_gateway_bytes_total{sni="api.default.cloud.internal.mesh.meshway",direction="down"} 20' in text


def test_explain_a_call_across_zones():
    from meshway.zones._dpview import explain_call

    snapshot = {"mesh_resources": {"dataplanes": [WEB]}, "config_entries": entries("remote"), "zones": ZONES}
    lines, routed = explain_call(snapshot, "default", "web", "api")
    assert routed and lines[1] == "  path (MeshGateway mode remote): web -> gateway@cloud -> api@cloud"
    assert "192.169.7.140:443 with SNI api.default.cloud.internal.mesh.meshway" in lines[2]
    lines, routed = explain_call({**snapshot, "config_entries": []}, "default", "web", "api")
    assert not routed and lines[-1] == "  REFUSED by the source's data plane: no healthy instance of api in datacenter onprem"
    assert explain_call(snapshot, "default", "web", "nowhere") == ([], None)
