"""Kuma's legacy `TrafficPermission` (sources/destinations): validation, the single most specific
policy per inbound (a specific one shadows a broader one), `*` wildcards, and MeshTrafficPermission
taking over where it selects an inbound."""
from __future__ import annotations

import pytest

from meshway.mesh._permissions import client_identity, compile_inbound, decide, kuma_uris
from meshway.mesh._resources import ResourceError, parse_resource


def tp(name: str, sources: list[dict], destinations: list[dict]) -> dict:
    return parse_resource({"type": "TrafficPermission", "mesh": "default", "name": name,
                           "sources": [{"match": m} for m in sources], "destinations": [{"match": m} for m in destinations]})


def dataplane(name: str, **tags: str) -> tuple[dict, dict]:
    inbound = {"port": 10001, "address": "127.0.0.1", "tags": {"kuma.io/service": name, **tags}}
    return {"name": name, "mesh": "default", "networking": {"address": "127.0.0.1", "inbound": [inbound]}}, inbound


def allowed(policies: list[dict], to: str, caller: str, **caller_tags: str) -> str:
    dp, inbound = dataplane(to)
    client = client_identity("default", kuma_uris("default", dataplane(caller, **caller_tags)[0]))
    decision = decide(compile_inbound(policies, dp, inbound), client)
    return decision.why() if decision.allowed else "denied"


def test_the_resource_is_validated_as_kuma_does():
    with pytest.raises(ResourceError) as e:
        parse_resource({"type": "TrafficPermission", "name": "p", "sources": [{"match": {"version": "v1"}}],
                        "destinations": []})
    assert e.value.causes == [("sources[0].match", 'mandatory tag "kuma.io/service" is missing'),
                              ("destinations", "list should have at least 1 item after validation, not 0")]


def test_allow_all_and_the_most_specific_policy_shadows_the_broader_one():
    allow_all = tp("allow-all-traffic", [{"kuma.io/service": "*"}], [{"kuma.io/service": "*"}])
    assert allowed([allow_all], "backend", "web") == "TrafficPermission allow-all-traffic sources[0]: Allow"
    only_web = tp("web-to-backend", [{"kuma.io/service": "web"}], [{"kuma.io/service": "backend"}])
    # Kuma picks one policy per inbound, the best destination match: backend now takes web only
    assert allowed([allow_all, only_web], "backend", "web") == "TrafficPermission web-to-backend sources[0]: Allow"
    assert allowed([allow_all, only_web], "backend", "other") == "denied"
    assert allowed([allow_all, only_web], "frontend", "other").startswith("TrafficPermission allow-all-traffic")
    assert allowed([], "backend", "web") == "denied"


def test_wildcards_need_the_tag_and_any_value_matches():
    by_version = tp("versioned", [{"kuma.io/service": "*", "version": "*"}], [{"kuma.io/service": "backend"}])
    assert allowed([by_version], "backend", "web", version="v2") == "TrafficPermission versioned sources[0]: Allow"
    assert allowed([by_version], "backend", "web") == "denied"


def test_a_mesh_traffic_permission_takes_over_where_it_selects_the_inbound():
    allow_all = tp("allow-all-traffic", [{"kuma.io/service": "*"}], [{"kuma.io/service": "*"}])
    deny_web = parse_resource({"type": "MeshTrafficPermission", "mesh": "default", "name": "deny-web", "spec": {
        "targetRef": {"kind": "MeshService", "name": "backend"},
        "from": [{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}}]}})
    assert allowed([allow_all, deny_web], "backend", "web") == "denied"
    assert allowed([allow_all, deny_web], "backend", "other") == "denied"  # the legacy allow-all no longer applies
    assert allowed([allow_all, deny_web], "frontend", "web").startswith("TrafficPermission allow-all-traffic")
