"""Where a call goes (Consul's documented behaviour): local by default, resolver redirects and
failover, and the paths of the gateway modes local / remote / none."""
from __future__ import annotations

from pathlib import Path

import pytest

from meshway.zones import check_entry, parse_text
from meshway.zones._resolve import Entries, ResolveError, Target, gateway_mode, resolve

DATA = Path(__file__).parents[2] / "data" / "zones"
TD = "mesh.consul"


def entries(*raw) -> Entries:
    return Entries([check_entry(r) for r in raw])


def doc(name: str) -> dict:
    return parse_text((DATA / name).read_text(), name)


def where(*instances: tuple[str, str]):
    """Healthy instance counts: the (service, datacenter) pairs given have one each."""
    return lambda t: 1 if (t.service, t.datacenter) in instances or (t.service, t.datacenter, t.subset) in instances else 0


def test_by_default_a_service_resolves_to_the_callers_datacenter_and_fails_when_only_remote():
    route = resolve("api", local_dc="onprem", entries=entries(), healthy=where(("api", "cloud")), trust_domain=TD,
                    caller="web")
    assert route.target == Target("api", "onprem")
    assert route.error == "no healthy instance of api in datacenter onprem"


def test_the_documents_files_send_web_through_both_gateways():
    es = entries(doc("global_defaults.hcl"), doc("api_resolver.hcl"))
    route = resolve("api", local_dc="onprem", entries=es, healthy=where(("api", "cloud")), trust_domain=TD, caller="web")
    assert route.error is None and route.target == Target("api", "cloud")
    assert route.mode == "local"
    assert route.hops == ("gateway@onprem", "gateway@cloud", "api@cloud")
    assert route.sni == "api.default.cloud.internal.mesh.consul"


@pytest.mark.parametrize("mode, hops", [
    ("local", ("gateway@onprem", "gateway@cloud", "api@cloud")),   # two gateway hops
    ("remote", ("gateway@cloud", "api@cloud")),                    # the destination's gateway only
    ("none", ("api@cloud",)),                                      # straight to the instance
])
def test_gateway_modes_take_consuls_paths(mode, hops):
    es = entries({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": mode}}, doc("api_resolver.hcl"))
    route = resolve("api", local_dc="onprem", entries=es, healthy=where(("api", "cloud")), trust_domain=TD)
    assert (route.mode, route.hops) == (mode, hops)


def test_no_mode_anywhere_is_none():
    route = resolve("api", local_dc="onprem", entries=entries(doc("api_resolver.hcl")), healthy=where(("api", "cloud")),
                    trust_domain=TD)
    assert (route.mode, route.hops) == ("none", ("api@cloud",))


def test_a_local_target_never_uses_a_gateway():
    route = resolve("api", local_dc="onprem", entries=entries(doc("global_defaults.hcl")),
                    healthy=where(("api", "onprem")), trust_domain=TD)
    assert (route.mode, route.hops, route.error) == ("local", ("api@onprem",), None)


def test_mode_precedence():
    es = entries(
        {"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}},
        {"Kind": "service-defaults", "Name": "api", "MeshGateway": {"Mode": "remote"}},
        {"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {
            "Defaults": {"MeshGateway": {"Mode": "local"}},
            "Overrides": [{"Name": "billing", "MeshGateway": {"Mode": "none"}}]}},
    )
    assert gateway_mode("db", "db", es) == "local"                           # proxy-defaults
    assert gateway_mode("api", "api", es) == "remote"                        # the target's service-defaults
    assert gateway_mode("api", "api", es, caller="web") == "local"           # the caller's upstream defaults
    assert gateway_mode("billing", "billing", es, caller="web") == "none"    # the caller's override for that upstream
    assert gateway_mode("billing", "billing", es, caller="web", upstream_mode="remote") == "remote"  # the upstream's own


def test_failover_moves_to_the_other_datacenter_and_back():
    es = entries({"Kind": "service-resolver", "Name": "api", "Failover": {"*": {"Datacenters": ["cloud"]}}},
                 {"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}})
    both = resolve("api", local_dc="onprem", entries=es, healthy=where(("api", "onprem"), ("api", "cloud")),
                   trust_domain=TD)
    assert (both.target, both.failover, both.hops) == (Target("api", "onprem"), False, ("api@onprem",))
    gone = resolve("api", local_dc="onprem", entries=es, healthy=where(("api", "cloud")), trust_domain=TD)
    assert (gone.target, gone.failover, gone.error) == (Target("api", "cloud"), True, None)
    assert gone.hops == ("gateway@onprem", "gateway@cloud", "api@cloud")
    assert gone.sni == "api.default.cloud.internal.mesh.consul"
    back = resolve("api", local_dc="onprem", entries=es, healthy=where(("api", "onprem")), trust_domain=TD)
    assert (back.target, back.failover) == (Target("api", "onprem"), False)
    none = resolve("api", local_dc="onprem", entries=es, healthy=where(), trust_domain=TD)
    assert none.target == Target("api", "onprem") and none.error == "no healthy instance of api in datacenter onprem"


def test_failover_targets_in_order_skipping_those_without_instances():
    es = entries({"Kind": "service-resolver", "Name": "api", "Failover": {"*": {"Targets": [
        {"Datacenter": "dc2"}, {"Service": "api-legacy", "Datacenter": "dc3"}]}}})
    route = resolve("api", local_dc="dc1", entries=es, healthy=where(("api-legacy", "dc3")), trust_domain=TD)
    assert (route.target, route.failover) == (Target("api-legacy", "dc3"), True)


def test_failover_per_subset_and_default_subset():
    subsets = {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}
    es = entries({"Kind": "service-resolver", "Name": "api", "DefaultSubset": "v1", "Subsets": subsets,
                  "Failover": {"v1": {"ServiceSubset": "v2"}, "*": {"Datacenters": ["dc9"]}}})
    route = resolve("api", local_dc="dc1", entries=es, healthy=where(("api", "dc1", "v2")), trust_domain=TD)
    assert (route.target, route.failover) == (Target("api", "dc1", "v2"), True)
    assert route.sni == "v2.api.default.dc1.internal.mesh.consul"


def test_redirect_to_another_service_follows_its_resolver():
    es = entries({"Kind": "service-resolver", "Name": "api", "Redirect": {"Service": "api-v2"}},
                 {"Kind": "service-resolver", "Name": "api-v2", "Redirect": {"Service": "api-v2", "Datacenter": "cloud"}})
    route = resolve("api", local_dc="onprem", entries=es, healthy=where(("api-v2", "cloud")), trust_domain=TD)
    assert route.target == Target("api-v2", "cloud") and route.error is None


def test_a_redirect_loop_is_an_error():
    es = entries({"Kind": "service-resolver", "Name": "a", "Redirect": {"Service": "b"}},
                 {"Kind": "service-resolver", "Name": "b", "Redirect": {"Service": "a"}})
    with pytest.raises(ResolveError) as e:
        resolve("a", local_dc="dc1", entries=es, healthy=where(), trust_domain=TD)
    assert "circular resolver redirect: a@dc1 -> b@dc1 -> a@dc1" in str(e.value)
