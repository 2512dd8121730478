"""Consul's validation of config entries, message by message (agent/structs/config_entry*.go)."""
from __future__ import annotations

import pytest

from meshway.zones import EntryError, check_entry

SUBSETS = {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}


def resolver(**fields):
    return {"Kind": "service-resolver", "Name": "api", **fields}


def intentions(*sources, name="api"):
    return {"Kind": "service-intentions", "Name": name, "Sources": list(sources)}


def perm(**http):
    return {"Action": "allow", "HTTP": http}


REFUSED = [
    # every kind
    ({"Kind": "service-defaults", "Name": ""}, "Name is required"),
    ({"Kind": "service-defaults", "Name": "web", "Meta": {"k" * 129: "v"}}, f'Meta key "{"k" * 129}" exceeds maximum length 128'),
    ({"Kind": "service-defaults", "Name": "web", "Meta": {"k": "v" * 513}}, 'Meta value for key "k" exceeds maximum length 512'),
    ({"Kind": "service-defaults", "Name": "web", "Meta": {str(i): "v" for i in range(65)}},
     "Meta exceeds maximum element count 64"),
    # proxy-defaults
    ({"Kind": "proxy-defaults", "Name": "web"}, 'invalid name ("web"), only "global" is supported'),
    ({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "nearest"}}, 'Invalid Mesh Gateway Mode: "nearest"'),
    ({"Kind": "proxy-defaults", "Name": "global", "Mode": "sideways"}, 'Invalid Proxy Mode: "sideways"'),
    # service-defaults
    ({"Kind": "service-defaults", "Name": "*"}, "service-defaults name must be the name of a service, and not a wildcard"),
    ({"Kind": "service-defaults", "Name": "web", "MeshGateway": {"Mode": "far"}}, 'Invalid Mesh Gateway Mode: "far"'),
    ({"Kind": "service-defaults", "Name": "web", "BalanceInboundConnections": "fair"},
     "invalid value for balance_inbound_connections: fair"),
    ({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {}, "Destination": {"Addresses": ["a"], "Port": 1}},
     "UpstreamConfig and Destination are mutually exclusive for service defaults"),
    ({"Kind": "service-defaults", "Name": "web", "Destination": {"Port": 443}},
     "Destination must contain at least one valid address"),
    ({"Kind": "service-defaults", "Name": "web", "Destination": {"Addresses": ["api.example"], "Port": 70000}},
     "Invalid Port number 70000"),
    # service-resolver
    (resolver(Subsets={"": {}}), "Subset defined with empty name"),
    (resolver(Subsets={"V1": {}}), 'Subset "V1" is invalid: must be 63 characters or fewer'),
    (resolver(Subsets={"v1": {"Filter": "Service.Meta.version = v1"}}),
     'Filter for subset "v1" is not a valid expression'),
    (resolver(DefaultSubset="v3", Subsets=SUBSETS), 'DefaultSubset "v3" is not a valid subset'),
    (resolver(Redirect={"Service": "api", "Datacenter": "cloud"}, Failover={"*": {"Datacenters": ["dc2"]}}),
     "Redirect and Failover cannot both be set"),
    (resolver(Redirect={}), "Redirect is empty"),
    (resolver(Redirect={"ServiceSubset": "v1"}, Subsets=SUBSETS), "Redirect.ServiceSubset defined without Redirect.Service"),
    (resolver(Redirect={"Namespace": "ns"}), "Redirect.Namespace defined without Redirect.Service"),
    (resolver(Redirect={"Service": "api", "ServiceSubset": "v9"}, Subsets=SUBSETS),
     'Redirect.ServiceSubset "v9" is not a valid subset of "api"'),
    (resolver(Redirect={"Service": "x", "Peer": "p", "Datacenter": "dc2"}), "Redirect.Peer cannot be set with Redirect.Datacenter"),
    (resolver(Redirect={"Service": "x", "Datacenter": "dc2", "Partition": "p2"}),
     "Cross-datacenter and cross-partition redirect is not supported"),
    (resolver(Failover={"v3": {"Datacenters": ["dc2"]}}, Subsets=SUBSETS), 'Bad Failover["v3"]: not a valid subset'),
    (resolver(Failover={"*": {}}),
     'Bad Failover["*"]: one of Service, ServiceSubset, Namespace, Targets, or Datacenters is required'),
    (resolver(Failover={"*": {"ServiceSubset": "v9"}}, Subsets=SUBSETS),
     'Bad Failover["*"]: ServiceSubset "v9" is not a valid subset of "api"'),
    (resolver(Failover={"*": {"Datacenters": ["dc2"], "Targets": [{"Datacenter": "dc3"}]}}),
     'Bad Failover["*"]: Targets cannot be set with Datacenters'),
    (resolver(Failover={"*": {"Service": "b", "Targets": [{"Datacenter": "dc3"}]}}),
     'Bad Failover["*"]: Targets cannot be set with Service'),
    (resolver(Failover={"*": {"Targets": [{"Peer": "p", "Datacenter": "dc3"}]}}),
     'Bad Failover["*"].Targets[0]: Peer cannot be set with Datacenter'),
    (resolver(Failover={"*": {"Targets": [{"ServiceSubset": "v9"}]}}, Subsets=SUBSETS),
     'Bad Failover["*"].Targets[0]: ServiceSubset "v9" is not a valid subset of "api"'),
    (resolver(Failover={"*": {"Datacenters": ["dc2", ""]}}), 'Bad Failover["*"].Datacenters: found empty datacenter'),
    (resolver(ConnectTimeout=-1_000_000_000), "Bad ConnectTimeout '-1s', must be >= 0"),
    (resolver(RequestTimeout=-5_000_000_000), "Bad RequestTimeout '-5s', must be >= 0"),
    (resolver(LoadBalancer={"Policy": "fastest"}), 'Bad LoadBalancer policy: "fastest" is not supported'),
    # service-intentions
    (intentions(name="ap*"), "Name: wildcard character '*' cannot be used with partial values"),
    (intentions(), "At least one source is required"),
    (intentions({"Action": "allow"}), "Sources[0].Name is required"),
    (intentions({"Name": "we*", "Action": "allow"}), "Sources[0].Name: wildcard character '*' cannot be used with partial values"),
    (intentions({"Name": "web"}), "Sources[0].Action must be set to 'allow' or 'deny'"),
    (intentions({"Name": "web", "Action": "permit"}), "Sources[0].Action must be set to 'allow' or 'deny'"),
    (intentions({"Name": "web", "Action": "allow", "Permissions": [perm(PathExact="/")]}),
     "Sources[0].Action must be omitted if Permissions are specified"),
    (intentions({"Name": "web", "Permissions": [perm(PathExact="/")]}, name="*"),
     "Sources[0].Permissions cannot be specified on intentions with wildcarded destinations"),
    (intentions({"Name": "web", "Action": "allow", "Type": "kuma"}), "Sources[0].Type must be set to 'consul'"),
    (intentions({"Name": "web", "Permissions": [{"Action": "maybe", "HTTP": {"PathExact": "/"}}]}),
     "Sources[0].Permissions[0].Action must be set to 'allow' or 'deny'"),
    (intentions({"Name": "web", "Permissions": [{"Action": "allow"}]}), "Sources[0].Permissions[0].HTTP is required"),
    (intentions({"Name": "web", "Permissions": [perm(PathExact="api")]}),
     "Sources[0].Permissions[0].HTTP.PathExact doesn't start with '/': \"api\""),
    (intentions({"Name": "web", "Permissions": [perm(PathPrefix="api")]}),
     "Sources[0].Permissions[0].HTTP.PathPrefix doesn't start with '/': \"api\""),
    (intentions({"Name": "web", "Permissions": [perm(PathExact="/a", PathRegex="/b.*")]}),
     "Sources[0].Permissions[0].HTTP should only contain at most one of PathExact, PathPrefix, or PathRegex"),
    (intentions({"Name": "web", "Permissions": [perm(Header=[{"Exact": "x"}])]}),
     "Sources[0].Permissions[0].HTTP.Header[0] missing required Name field"),
    (intentions({"Name": "web", "Permissions": [perm(Header=[{"Name": "x-a", "Exact": "1", "Prefix": "2"}])]}),
     "Sources[0].Permissions[0].HTTP.Header[0] should only contain one of Present, Exact, Prefix, Suffix, or Regex"),
    (intentions({"Name": "web", "Permissions": [perm(Methods=["FETCH"])]}),
     'Sources[0].Permissions[0].HTTP.Methods contains an invalid method "FETCH"'),
    (intentions({"Name": "web", "Permissions": [perm(Methods=["get", "GET"])]}),
     'Sources[0].Permissions[0].HTTP.Methods contains "GET" more than once'),
    (intentions({"Name": "web", "Permissions": [perm()]}), "Sources[0].Permissions[0].HTTP should not be empty"),
    (intentions({"Name": "web", "Action": "allow"}, {"Name": "web", "Action": "deny"}), 'Sources[1] defines "web" more than once'),
]


@pytest.mark.parametrize("entry, message", REFUSED, ids=[m[:60] for _, m in REFUSED])
def test_refused_with_consuls_message(entry, message):
    with pytest.raises(EntryError) as e:
        check_entry(entry)
    assert str(e.value).startswith(message)


ACCEPTED = [
    {"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "none"}},
    {"Kind": "service-defaults", "Name": "api", "Protocol": "HTTP", "MeshGateway": {"Mode": "remote"}},
    resolver(DefaultSubset="v1", Subsets=SUBSETS, Failover={"*": {"Datacenters": ["cloud", "dc3"]}},
             ConnectTimeout=15_000_000_000),
    resolver(Failover={"v1": {"Targets": [{"Datacenter": "cloud"}, {"Service": "api-v2", "Datacenter": "dc3"}]}},
             Subsets=SUBSETS),
    resolver(Redirect={"Service": "api", "ServiceSubset": "v2"}, Subsets=SUBSETS),
    intentions({"Name": "web", "Action": "allow", "Description": "the tutorial's caller"}, {"Name": "*", "Action": "deny"}),
    intentions({"Name": "web", "Permissions": [perm(PathPrefix="/v1", Methods=["get", "post"]),
                                               {"Action": "deny", "HTTP": {"Header": [{"Name": "x-debug", "Present": True}]}}]}),
]


@pytest.mark.parametrize("entry", ACCEPTED, ids=lambda e: e["Kind"])
def test_accepted(entry):
    check_entry(entry)


def test_normalisation():
    assert check_entry({"Kind": "proxy-defaults"})["Name"] == "global"  # Consul's Normalize names it
    assert check_entry({"Kind": "service-defaults", "Name": "api", "Protocol": "HTTP"})["Protocol"] == "http"
    entry = check_entry(intentions({"Name": "*", "Action": "deny"},
                                   {"Name": "web", "Permissions": [perm(PathPrefix="/", Methods=["get"])]}))
    # the exact source first (Consul's precedence: 9 for exact/exact, 8 for wildcard source), type consul
    assert [(s["Name"], s["Precedence"], s["Type"]) for s in entry["Sources"]] == [("web", 9, "consul"),
                                                                                   ("*", 8, "consul")]
    assert entry["Sources"][0]["Permissions"][0]["HTTP"]["Methods"] == ["GET"]
