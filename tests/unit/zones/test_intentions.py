"""Consul's `service-intentions` on the mesh's permission engine: what an `api` data plane's inbound
decides for callers, as its sidecar compiles it from the snapshot (Consul's precedence, the mesh's
MeshTrafficPermissions as the default, L7 sources denied per connection)."""
from __future__ import annotations

from meshway.mesh._permissions import PermissionTable
from meshway.mesh._translate import dataplane_snapshot
from meshway.zones import check_entry
from meshway.zones._dpview import explain_call
from meshway.zones._intentions import matching

MTLS_ON = {"type": "Mesh", "name": "default",
           "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}
API = {"type": "Dataplane", "mesh": "default", "name": "api",
       "networking": {"address": "10.6.0.10", "inbound": [{"port": 20000, "servicePort": 9090,
                                                           "tags": {"kuma.io/service": "api"}}]}}
ALLOW_ALL = {"type": "MeshTrafficPermission", "mesh": "default", "name": "allow-all",
             "spec": {"targetRef": {"kind": "Mesh"},
                      "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}
DENY_WEB = {"type": "MeshTrafficPermission", "mesh": "default", "name": "deny-web",
            "spec": {"targetRef": {"kind": "MeshService", "name": "api"},
                     "from": [{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}}]}}


def intentions(name: str, *sources: tuple) -> dict:
    return check_entry({"Kind": "service-intentions", "Name": name,
                        "Sources": [{"Name": s, **({"Action": a} if isinstance(a, str) else {"Permissions": a})}
                                    for s, a in sources]})


def decide(entries: list[dict], caller: str, policies=(ALLOW_ALL,)) -> tuple[bool, str]:
    """What api's sidecar decides for a caller of service `caller` (its certificate's URIs)."""
    snapshot = {"mesh_resources": {"meshes": [MTLS_ON], "dataplanes": [API], "policies": list(policies)},
                "config_entries": entries, "zones": {"datacenter": "cloud", "gateways": [], "remote": []}}
    table = PermissionTable.from_section(dataplane_snapshot(snapshot, "default", "api")["mesh"])
    decision = table.inbound[("10.6.0.10", 20000)][0].decide(
        (f"spiffe://meshway/mesh/default/service/{caller}", f"spiffe://default/{caller}",
         f"kuma://kuma.io/service/{caller}"))
    return decision.allowed, decision.why()


def test_a_deny_intention_overrides_the_mesh_allow_all():
    assert decide([intentions("api", ("web", "deny"))], "web") == (False, "service-intentions api Sources[0]: deny")
    assert decide([intentions("api", ("web", "deny"))], "billing") == (
        True, "MeshTrafficPermission allow-all from[0]: Allow")  # no intention matches: the mesh's default


def test_no_intention_and_no_permission_is_the_mesh_default_deny():
    assert decide([intentions("api", ("billing", "allow"))], "web", policies=()) == (
        False, "no MeshTrafficPermission allows it (mTLS is on: denied by default)")
    # an allow intention opens what the mesh's permissions leave closed, and beats a specific deny
    assert decide([intentions("api", ("web", "allow"))], "web", policies=()) == (
        True, "service-intentions api Sources[0]: allow")
    assert decide([intentions("api", ("web", "allow"))], "web", policies=(DENY_WEB,))[0] is True


def test_precedence_is_consul_s_destination_first_then_source():
    # exact source (9) beats any source (8) on the same destination, whatever the order in the file
    entry = intentions("api", ("*", "deny"), ("web", "allow"))
    assert decide([entry], "web") == (True, "service-intentions api Sources[0]: allow")  # stored by precedence
    assert decide([entry], "billing") == (False, "service-intentions api Sources[1]: deny")
    # an exact destination with any source (8) beats a wildcard destination with an exact source (6)
    both = [intentions("*", ("web", "allow")), intentions("api", ("*", "deny"))]
    assert decide(both, "web") == (False, "service-intentions api Sources[0]: deny")
    # the wildcard destination still decides for callers the exact one does not name
    assert decide([intentions("*", ("web", "deny"))], "web") == (False, "service-intentions * Sources[0]: deny")
    assert matching(both, "web", "api") == ("api", 0, "Deny")
    assert matching(both, "web", "billing") == ("*", 0, "Allow")
    assert matching(both, "other", "billing") is None


def test_an_l7_source_is_denied_per_connection_as_consul_s_l4_filter_does():
    l7 = [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]
    assert decide([intentions("api", ("web", l7))], "web") == (False, "service-intentions api Sources[0]: deny")


def test_explain_across_zones_names_the_intention():
    web = {"type": "Dataplane", "mesh": "default", "name": "web",
           "networking": {"address": "10.5.0.10", "inbound": [{"port": 20000, "servicePort": 9090,
                                                               "tags": {"kuma.io/service": "web"}}]}}
    zones = {"datacenter": "onprem", "gateways": [{"ID": "gw", "LAN": "10.5.0.33:8443", "WAN": "192.169.7.33:8443"}],
             "remote": [{"datacenter": "cloud", "gateways": [{"ID": "gw", "WAN": "192.169.7.140:443"}],
                         "services": {"default": ["api"]}}]}
    entries = [check_entry({"kind": "service-resolver", "name": "api", "redirect": {"datacenter": "cloud"}}),
               check_entry({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}})]
    snapshot = {"mesh_resources": {"meshes": [MTLS_ON], "dataplanes": [web]}, "zones": zones}
    lines, routed = explain_call({**snapshot, "config_entries": [*entries, intentions("api", ("web", "deny"))]},
                                 "default", "web", "api")
    assert routed is False
    assert lines[-1] == "  REFUSED by the destination's data plane (in cloud): service-intentions api Sources[0]: deny"
    lines, routed = explain_call({**snapshot, "config_entries": entries}, "default", "web", "api")
    assert routed is True
    assert lines[-1] == ("  allowed or not: no service-intentions match web -> api: the MeshTrafficPermissions "
                         "of datacenter cloud decide")


def test_explain_in_one_zone_names_the_intention():
    from meshway.mesh._explain import explain
    from meshway.zones._intentions import with_intentions

    web = {**API, "name": "web", "networking": {"address": "10.6.0.11", "inbound": [
        {"port": 20000, "servicePort": 9090, "tags": {"kuma.io/service": "web"}}]}}
    section = {"meshes": [MTLS_ON], "dataplanes": [API, web], "policies": [ALLOW_ALL]}
    lines, allowed = explain(with_intentions(section, [intentions("api", ("web", "deny"))]), "default", "web", "api")
    # in one zone the source's data plane already leaves api out of its reachable services (derived
    # from the same permissions, as Consul's transparent proxy infers its upstreams from intentions)
    assert allowed is False
    assert lines[-1].startswith("  REFUSED by the source's data plane: service api is not among its reachable")
    # the destination's own check, as its sidecar takes it, names the intention
    assert decide([intentions("api", ("web", "deny"))], "web")[1] == "service-intentions api Sources[0]: deny"
    assert explain(section, "default", "web", "api")[1] is True
