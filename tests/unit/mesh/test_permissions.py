"""MeshTrafficPermission: validation, Kuma's merging, and the decision for a client identity."""
from __future__ import annotations

import pytest

from meshway.mesh._permissions import (ALLOW, DENY, SHADOW, InboundPermissions, Rule, client_identity,
                                       compile_inbound, decide)
from meshway.mesh._resources import ResourceError, parse_resource

WEB = {"type": "Dataplane", "mesh": "default", "name": "web-1", "labels": {"team": "a"},
       "networking": {"address": "10.0.0.1", "inbound": [
           {"port": 8080, "name": "main", "tags": {"kuma.io/service": "web", "version": "v1"}},
           {"port": 9090, "tags": {"kuma.io/service": "web-admin"}}]}}


def mtp(name: str, target: dict | None, *entries: tuple[dict, str]) -> dict:
    spec: dict = {"from": [{"targetRef": ref, "default": {"action": action}} for ref, action in entries]}
    if target is not None:
        spec["targetRef"] = target
    return parse_resource({"type": "MeshTrafficPermission", "mesh": "default", "name": name, "spec": spec})


MESH = {"kind": "Mesh"}


def svc(name: str) -> dict:
    return {"kind": "MeshService", "name": name}


def client(service: str, **tags: str):
    return client_identity("default", (f"spiffe://default/{service}", *(f"kuma://{k}/{v}" for k, v in tags.items())))


def verdict(policies: list[dict], who, inbound: int = 0) -> str:
    return decide(compile_inbound(policies, WEB, WEB["networking"]["inbound"][inbound]), who).action


# ---- validation ---------------------------------------------------------------------------------
def test_a_valid_policy_round_trips_in_kumas_universal_shape():
    p = mtp("allow-all", MESH, (MESH, "Allow"))
    assert p == {"type": "MeshTrafficPermission", "mesh": "default", "name": "allow-all",
                 "spec": {"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"},
                                                                    "default": {"action": "Allow"}}]}}


@pytest.mark.parametrize("spec, field, words", [
    ({"from": [{"targetRef": MESH, "default": {"action": "allow"}}]}, "spec.from[0].default.action", "'Allow'"),
    ({"from": []}, "spec.from", "at least one"),
    ({"from": [{"targetRef": {"kind": "MeshService"}, "default": {"action": "Allow"}}]},
     "spec.from[0].targetRef.name", "MeshService"),
    ({"from": [{"targetRef": {"kind": "Dataplane"}, "default": {"action": "Allow"}}]},
     "spec.from[0].targetRef.kind", "not supported in from"),
    ({"targetRef": {"kind": "Mesh", "name": "x"}, "from": [{"targetRef": MESH, "default": {"action": "Deny"}}]},
     "spec.targetRef.kind", "takes no name"),
    ({"from": [{"targetRef": MESH, "default": {"action": "Deny"}, "extra": 1}]}, "spec.from[0].extra", "unknown"),
])
def test_invalid_policies_name_the_field(spec, field, words):
    with pytest.raises(ResourceError) as e:
        parse_resource({"type": "MeshTrafficPermission", "name": "p", "spec": spec})
    assert any(f == field and words in m for f, m in e.value.causes), e.value.causes


# ---- merging (Kuma's documented cases) ------------------------------------------------------------
def test_no_policy_denies():
    assert verdict([], client("frontend")) == DENY


def test_allow_all():
    assert verdict([mtp("allow-all", MESH, (MESH, "Allow"))], client("anything")) == ALLOW


def test_deny_all_but_one_service_the_docs_example():
    policies = [mtp("allow-orders", svc("web"), (MESH, "Deny"), (svc("frontend"), "Allow"))]
    assert verdict(policies, client("frontend")) == ALLOW
    assert verdict(policies, client("other")) == DENY
    assert verdict(policies, client("frontend"), inbound=1) == DENY  # web-admin is not selected


def test_a_later_from_entry_overrides_an_earlier_one_for_the_same_client():
    policies = [mtp("p", MESH, (svc("frontend"), "Allow"), (svc("frontend"), "Deny"))]
    assert verdict(policies, client("frontend")) == DENY


def test_the_more_specific_top_level_target_wins():
    policies = [mtp("a-mesh", MESH, (MESH, "Deny")), mtp("z-web", svc("web"), (MESH, "Allow"))]
    assert verdict(policies, client("frontend")) == ALLOW
    assert verdict(policies, client("frontend"), inbound=1) == DENY
    dp = [mtp("a-mesh", MESH, (MESH, "Allow")), mtp("z-dp", {"kind": "Dataplane", "name": "web-1"}, (MESH, "Deny"))]
    assert verdict(dp, client("frontend")) == DENY


def test_ties_go_by_name_the_name_that_sorts_first_wins():
    assert verdict([mtp("a", MESH, (MESH, "Deny")), mtp("b", MESH, (MESH, "Allow"))], client("x")) == DENY
    assert verdict([mtp("a", MESH, (MESH, "Allow")), mtp("b", MESH, (MESH, "Deny"))], client("x")) == ALLOW


def test_a_specific_deny_is_not_shadowed_by_a_broader_allow_kuma_16873():
    # a mesh-wide allow named to sort first, and a deny of one client in another policy
    policies = [mtp("a-allow-all", MESH, (MESH, "Allow")), mtp("z-deny-legacy", MESH, (svc("legacy"), "Deny"))]
    assert verdict(policies, client("legacy")) == DENY
    assert verdict(policies, client("frontend")) == ALLOW
    subset = [mtp("a-allow-all", MESH, (MESH, "Allow")),
              mtp("b", MESH, ({"kind": "MeshSubset", "tags": {"version": "v0"}}, "Deny"))]
    assert verdict(subset, client("frontend", version="v0")) == DENY
    assert verdict(subset, client("frontend", version="v2")) == ALLOW


def test_subset_targets_and_dataplane_sections():
    v1 = mtp("v1-only", {"kind": "MeshSubset", "tags": {"version": "v1"}}, (MESH, "Allow"))
    assert verdict([v1], client("x")) == ALLOW and verdict([v1], client("x"), inbound=1) == DENY
    section = mtp("main", {"kind": "Dataplane", "labels": {"team": "a"}, "sectionName": "main"}, (MESH, "Allow"))
    assert verdict([section], client("x")) == ALLOW and verdict([section], client("x"), inbound=1) == DENY
    by_port = mtp("admin", {"kind": "Dataplane", "sectionName": "9090"}, (MESH, "Allow"))
    assert verdict([by_port], client("x"), inbound=1) == ALLOW
    other = mtp("other", {"kind": "Dataplane", "labels": {"team": "b"}}, (MESH, "Allow"))
    assert verdict([other], client("x")) == DENY


def test_shadow_deny_allows_and_says_so():
    policies = [mtp("trial", MESH, (MESH, "AllowWithShadowDeny"))]
    d = decide(compile_inbound(policies, WEB, WEB["networking"]["inbound"][0]), client("x"))
    assert d.action == SHADOW and d.allowed and "trial" in d.why()


def test_clients_of_another_mesh_or_without_a_service_match_nothing():
    policies = [mtp("allow-all", MESH, (MESH, "Allow"))]
    assert verdict(policies, client_identity("default", ("spiffe://other/frontend",))) == DENY
    assert client_identity("default", ("spiffe://meshway/node/abc",)) is None


def test_the_compiled_form_decides_once_per_identity():
    rules = compile_inbound([mtp("allow-fe", MESH, (svc("frontend"), "Allow"))], WEB, WEB["networking"]["inbound"][0])
    compiled = InboundPermissions.from_section("default", [r.as_dict() for r in rules])
    assert compiled.rules == rules
    uris = ("spiffe://meshway/node/n1", "spiffe://default/frontend", "kuma://version/v1")
    first = compiled.decide(uris)
    assert first.action == ALLOW and compiled.decide(uris) is first
    assert compiled.decide(("spiffe://default/backend",)).action == DENY
    assert isinstance(rules[0], Rule)


# ---- reachable services -----------------------------------------------------------------------------
def _dp(name: str, service: str, port: int, **net) -> dict:
    return {"type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": "10.0.0.9", "inbound": [{"port": port, "tags": {"kuma.io/service": service}}],
                           **net}}


MTLS = {"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1"}]}}


def test_reachable_services_explicit_derived_or_all():
    from meshway.mesh._permissions import reachable_services, split_reachable

    web, db = _dp("web-1", "web", 8080), _dp("db-1", "db", 5432)
    me = _dp("fe-1", "frontend", 80, outbound=[{"port": 10001, "tags": {"kuma.io/service": "db"}}])
    section = {"meshes": [{"type": "Mesh", "name": "default"}], "dataplanes": [web, db, me]}
    assert reachable_services(section, "default", me, [web, db]) is None  # mTLS off, nothing set: all
    on = {**section, "meshes": [MTLS], "policies": [mtp("fe-to-web", svc("web"), (svc("frontend"), "Allow"))]}
    assert reachable_services(on, "default", me, [web, db]) == {"web"}  # derived from the permissions
    explicit = {**me, "networking": {**me["networking"], "transparentProxying": {"reachableServices": ["db"]}}}
    assert reachable_services(on, "default", explicit, [web, db]) == {"db"}  # explicit wins, as in Kuma
    by_service = {"web": [("10.0.0.9", 8080)], "db": [("10.0.0.9", 5432)]}
    kept, extra = split_reachable({**on, "vips": {"default": {"db": "240.0.0.2"}}}, "default", me, [web, db],
                                  by_service)
    assert kept == {"web": [("10.0.0.9", 8080)]}
    db_ = ["db", False]
    assert extra == {"unreachable": {"10.0.0.9:5432": db_, "240.0.0.2:80": db_, "127.0.0.1:10001": db_}}


def test_reachable_backends_as_kuma_reads_them():
    """`reachableBackends: {}` means nothing (Kuma's "doesn't need to communicate with any service"),
    refs by name or by labels (inbound tags or the data plane's labels); absent means all."""
    from meshway.mesh._permissions import dns_vips, reachable_services

    web, db = _dp("web-1", "web", 8080), _dp("db-1", "db", 5432)
    db["networking"]["inbound"][0]["tags"]["team"] = "data"
    section = {"meshes": [{"type": "Mesh", "name": "default"}], "dataplanes": [web, db],
               "vips": {"default": {"web": "240.0.0.1", "db": "240.0.0.2"}}}

    def me(tp):
        return _dp("fe-1", "frontend", 80, transparentProxying=tp)

    assert reachable_services(section, "default", me({"reachableBackends": {}}), [web, db]) == set()
    assert reachable_services(section, "default", me({"reachableBackends": {"refs": [
        {"kind": "MeshService", "name": "web", "port": 8080}]}}), [web, db]) == {"web"}
    assert reachable_services(section, "default", me({"reachableBackends": {"refs": [
        {"kind": "MeshService", "labels": {"team": "data"}}]}}), [web, db]) == {"db"}
    assert reachable_services(section, "default", me({}), [web, db]) is None
    # the DNS proxy answers the reachable services' names only
    fe = me({"reachableServices": ["db"]})
    shown, hidden = dns_vips({**section, "dataplanes": [web, db, fe]}, "default", "fe-1")
    assert shown == {"db": "240.0.0.2"} and hidden == {"web": "240.0.0.1"}
    assert dns_vips({**section, "dataplanes": [web, db, me({})]}, "default", "fe-1") == (
        section["vips"]["default"], {})


def test_explain_says_which_permission_and_why():
    from meshway.mesh._explain import ExplainError, explain, inbound_policies

    web, fe = _dp("web-1", "web", 8080), _dp("fe-1", "frontend", 80)
    fe["networking"]["address"] = "10.0.0.2"
    policies = [mtp("fe-to-web", svc("web"), (MESH, "Deny"), (svc("frontend"), "Allow"))]
    section = {"meshes": [MTLS], "dataplanes": [web, fe], "policies": policies}
    lines, allowed = explain(section, "default", "fe-1", "10.0.0.9:8080")
    assert allowed and "  ALLOWED: MeshTrafficPermission fe-to-web from[1]: Allow" in lines
    assert lines[0] == "source: dataplane fe-1 (mesh default), identity spiffe://default/frontend, kuma://kuma.io/service/frontend"
    lines, allowed = explain(section, "default", "web-1", "frontend")
    assert not allowed and any("not among its reachable services" in line for line in lines)
    off = {**section, "meshes": [{"type": "Mesh", "name": "default"}]}
    assert explain(off, "default", "web-1", "frontend")[1]
    with pytest.raises(ExplainError):
        explain(section, "default", "nobody", "web")
    shown = inbound_policies(section, "default", "web-1")
    assert shown[2].split() == ["Allow", "from", "kuma.io/service=frontend", "(fe-to-web", "from[1])"]
    assert shown[-1].split()[0] == "Deny"


def test_inspect_policies_in_kumactls_shape():
    from meshway.mesh._explain import policies_list, policies_table

    web, fe = _dp("web-1", "web", 8080), _dp("fe-1", "frontend", 80)
    policies = [mtp("fe-to-web", svc("web"), (MESH, "Deny"), (svc("frontend"), "Allow")),
                mtp("all", MESH, (MESH, "Allow"))]
    section = {"meshes": [MTLS], "dataplanes": [web, fe], "policies": policies}
    listed = policies_list(section, "default", "web-1", "zone-1")
    assert [o["kri"] for o in listed["policies"][0]["origins"]] == ["kri_mtp_default_zone-1__all_",
                                                                   "kri_mtp_default_zone-1__fe-to-web_"]
    assert listed["policies"][0]["conf"]["inbounds"]["10.0.0.9:8080"][0]["action"] == "Allow"
    assert policies_table(listed) == [
        "Kind                    Origins",
        "MeshTrafficPermission   kri_mtp_default_zone-1__all_,kri_mtp_default_zone-1__fe-to-web_"]
    assert policies_table(policies_list({**section, "policies": []}, "default", "web-1", "z")) == ["Kind   Origins"]
