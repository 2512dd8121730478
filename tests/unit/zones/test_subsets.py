"""Subset filters (go-bexpr, Consul's language) evaluated against instances, and the gateway routes
they make: a subset's SNI name goes only to the instances its Filter selects."""
from __future__ import annotations

import pytest

from meshway.zones import check_entry
from meshway.zones._catalog import gateway_config
from meshway.zones._filter import FilterError, compile_filter

VIEW = {"Service": {"ID": "api-1", "Service": "api", "Meta": {"version": "v1", "env": ""},
                    "Tags": ["api", "v1"], "Address": "10.6.0.10", "Port": 20000},
        "Node": {"Node": "api-1", "Datacenter": "cloud", "Meta": {"rack": "r1"}}}


@pytest.mark.parametrize("expression,expected", [
    ("Service.Meta.version == v1", True),
    ('Service.Meta.version == "v2"', False),
    ("Service.Meta.version != v2", True),
    ('Service.Meta["version"] == v1', True),
    ('Service.Tags contains "v1"', True),
    ('"canary" in Service.Tags', False),
    ('"canary" not in Service.Tags', True),
    ("v1 in Service.Tags", True),
    ("Service.Meta.env is empty", True),
    ("Service.Meta.missing is empty", True),
    ("Service.Meta.version is not empty", True),
    ('Service.ID matches "^api-[0-9]+$"', True),
    ('Service.ID not matches "^web"', True),
    ("Node.Meta.rack == r1 and (Service.Meta.version == v2 or not Service.Tags contains v2)", True),
    ("Node.Datacenter == onprem or Service.Port == 20000", True),
])
def test_filter_evaluation(expression, expected):
    assert compile_filter(expression)(VIEW) is expected


def test_a_bad_regular_expression_is_refused():
    with pytest.raises(FilterError):
        compile_filter('Service.ID matches "("')


def _dp(name: str, port: int, version: str) -> dict:
    return {"type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": "10.6.0.10", "inbound": [
                {"port": port, "servicePort": 9090, "tags": {"kuma.io/service": "api", "version": version}}]}}


def test_the_gateway_routes_each_subset_name_to_its_instances_only():
    resolver = check_entry({"Kind": "service-resolver", "Name": "api", "DefaultSubset": "v1", "Subsets": {
        "v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"},
        "all": {}}})
    snapshot = {"mesh_resources": {"dataplanes": [_dp("a", 20001, "v1"), _dp("b", 20002, "v2"), _dp("c", 20003, "v1")]},
                "config_entries": [resolver], "zones": {"datacenter": "cloud", "gateways": [], "remote": []}}
    document = gateway_config(snapshot, "cloud")
    routes = {r["name"]: (r["snis"], s["host"]) for s in document["services"] for r in s["routes"]}
    targets = {u["name"]: [t["target"] for t in u["targets"]] for u in document["upstreams"]}
    sni = "api.default.cloud.internal.mesh.meshway"
    assert routes["local-default-api"][0] == [sni]  # no wildcard: only the subsets the resolver names
    assert routes["local-default-api-v1"][0] == [f"v1.{sni}"]
    assert targets[routes["local-default-api-v1"][1]] == ["10.6.0.10:20001", "10.6.0.10:20003"]
    assert targets[routes["local-default-api-v2"][1]] == ["10.6.0.10:20002"]
    assert len(targets[routes["local-default-api-all"][1]]) == 3  # an empty filter selects every instance
    # without subsets, any subset name still reaches every instance, as before
    plain = gateway_config({**snapshot, "config_entries": []}, "cloud")
    assert [r["snis"] for s in plain["services"] for r in s["routes"]] == [[sni, f"*.{sni}"]]
