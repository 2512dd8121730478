"""Gateway API translation as KIC's traditional router does it (names, matches, weights, filters)."""
from __future__ import annotations

import base64

from meshway.k8s._translate import translate
from meshway.model import parse_declarative
from tests.fixtures.certs import cert_pair_for_test
from tests.unit.test_k8s_crds import add
from tests.unit.test_k8s_translate import eps, objects, svc

GW = "gateway.networking.k8s.io/v1"


def gateway_objects(route_spec: dict, listeners=None, controller="konghq.com/kic-gateway-controller"):
    o = objects(("services", svc("echo")), ("endpoint_slices", eps("echo")),
                ("services", svc("canary")), ("endpoint_slices", eps("canary", addresses=("10.0.0.2",))))
    add(o, "gateway_classes", {"metadata": {"name": "kong"}, "spec": {"controllerName": controller}})
    add(o, "gateways", {"metadata": {"name": "gw", "namespace": "default"},
                        "spec": {"gatewayClassName": "kong", "listeners": listeners or [
                            {"name": "http", "protocol": "HTTP", "port": 80}]}})
    add(o, "http_routes", {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "default"},
                           "spec": {"parentRefs": [{"name": "gw"}], **route_spec}})
    return o


def rule(*matches, backends=(("echo", 80, None),), filters=None):
    out = {"backendRefs": [{"name": n, "port": p, **({"weight": w} if w is not None else {})}
                           for n, p, w in backends]}
    if matches:
        out["matches"] = list(matches)
    if filters:
        out["filters"] = filters
    return out


def routes(config):
    return {r["name"]: r for s in config["services"] for r in s.get("routes", [])}


def test_names_paths_methods_headers_as_kic():
    o = gateway_objects({"hostnames": ["web.example"], "rules": [rule(
        {"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"},
        {"path": {"type": "Exact", "value": "/login"},
         "headers": [{"name": "x-env", "value": "canary"}, {"name": "x-re", "type": "RegularExpression",
                                                            "value": "^a.*"}]})]})
    result = translate(o)
    assert result.errors == []
    [service] = result.config["services"]
    assert service["name"] == "httproute.default.svc.default.echo.80"
    r = routes(result.config)
    assert r["httproute.default.web.0.0"]["paths"] == ["~/api$", "/api/"]
    assert r["httproute.default.web.0.0"]["methods"] == ["GET"]
    assert r["httproute.default.web.0.1"]["paths"] == ["~/login$"]
    assert r["httproute.default.web.0.1"]["headers"] == {"x-env": ["canary"], "x-re": ["~*^a.*"]}
    assert r["httproute.default.web.0.0"]["hosts"] == ["web.example"]
    assert r["httproute.default.web.0.0"]["protocols"] == ["http"]
    assert r["httproute.default.web.0.0"]["preserve_host"] is True
    parse_declarative(result.config)


def test_weights_split_over_the_backends_endpoints():
    o = gateway_objects({"rules": [rule(backends=(("echo", 80, 90), ("canary", 80, 10)))]})
    config = translate(o).config
    assert config["services"][0]["name"] == "httproute.default.svc.default.canary.80.10_default.echo.80.90"
    assert config["upstreams"][0]["targets"] == [{"target": "10.0.0.1:8080", "weight": 90},
                                                 {"target": "10.0.0.2:8080", "weight": 10}]


def test_a_route_of_another_controller_is_not_ours():
    o = gateway_objects({"rules": [rule()]}, controller="example.com/other")
    result = translate(o)
    assert result.config["services"] == [] and result.gateway_status == {}


def test_query_params_are_refused_as_kics_traditional_router_does():
    o = gateway_objects({"rules": [rule({"queryParams": [{"name": "a", "value": "b"}]})]})
    result = translate(o)
    assert result.config["services"] == []
    assert result.errors[0].field == "spec.rules[0].matches[0].queryParams"


def test_listener_namespace_policy_and_hostnames_decide_attachment():
    o = gateway_objects({"hostnames": ["other.example"], "rules": [rule()]},
                        listeners=[{"name": "http", "protocol": "HTTP", "port": 80, "hostname": "web.example"}])
    result = translate(o)
    assert result.config["services"] == []
    [parent] = result.gateway_status[("HTTPRoute", "default", "web")]["parents"]
    assert parent["reason"] == "NoMatchingListenerHostname"
    o.http_routes[("default", "web")]["metadata"]["namespace"] = "elsewhere"
    o.http_routes[("elsewhere", "web")] = o.http_routes.pop(("default", "web"))
    o.http_routes[("elsewhere", "web")]["spec"]["parentRefs"] = [{"name": "gw", "namespace": "default"}]
    [parent] = translate(o).gateway_status[("HTTPRoute", "elsewhere", "web")]["parents"]
    assert parent["reason"] == "NotAllowedByListeners"


def _route_from(ns: str, allowed: dict, namespace_labels: dict | None) -> str:
    """The attachment reason of an HTTPRoute in `ns` to a listener with `allowedRoutes.namespaces`."""
    o = gateway_objects({"rules": [rule()]}, listeners=[
        {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": allowed}}])
    route = o.http_routes.pop(("default", "web"))
    route["metadata"]["namespace"] = ns
    route["spec"]["parentRefs"] = [{"name": "gw", "namespace": "default"}]
    o.http_routes[(ns, "web")] = route
    if namespace_labels is not None:
        add(o, "namespaces", {"metadata": {"name": ns, "labels": namespace_labels}})
    [parent] = translate(o).gateway_status[("HTTPRoute", ns, "web")]["parents"]
    return parent["reason"]


def test_allowed_routes_namespaces_same_all_and_selector():
    assert _route_from("default", {}, None) == "Accepted"  # Same is the default
    assert _route_from("team-a", {}, {}) == "NotAllowedByListeners"
    assert _route_from("team-a", {"from": "Same"}, {}) == "NotAllowedByListeners"
    assert _route_from("team-a", {"from": "All"}, None) == "Accepted"
    shared = {"from": "Selector", "selector": {"matchLabels": {"shared-gateway": "true"}}}
    assert _route_from("team-a", shared, {"shared-gateway": "true"}) == "Accepted"
    assert _route_from("team-a", shared, {"shared-gateway": "false"}) == "NotAllowedByListeners"
    assert _route_from("team-a", shared, None) == "NotAllowedByListeners"  # the Namespace is not known
    # kube-apiserver's own label on every namespace
    by_name = {"from": "Selector", "selector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]}}
    assert _route_from("team-a", by_name, {}) == "Accepted"
    assert _route_from("team-c", by_name, {}) == "NotAllowedByListeners"
    not_in = {"from": "Selector", "selector": {"matchExpressions": [
        {"key": "env", "operator": "NotIn", "values": ["prod"]}, {"key": "team", "operator": "Exists"},
        {"key": "legacy", "operator": "DoesNotExist"}]}}
    assert _route_from("team-a", not_in, {"env": "dev", "team": "a"}) == "Accepted"
    assert _route_from("team-a", not_in, {"env": "prod", "team": "a"}) == "NotAllowedByListeners"
    assert _route_from("team-a", not_in, {"env": "dev"}) == "NotAllowedByListeners"
    assert _route_from("team-a", not_in, {"team": "a", "legacy": ""}) == "NotAllowedByListeners"
    assert _route_from("team-a", {"from": "Selector", "selector": {}}, {}) == "Accepted"  # {} selects all
    assert _route_from("team-a", {"from": "Selector"}, {}) == "NotAllowedByListeners"  # no selector: none
    odd = {"from": "Selector", "selector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}
    assert _route_from("team-a", odd, {"a": "2"}) == "NotAllowedByListeners"


def test_unresolved_backends_answer_500_and_are_reported():
    o = gateway_objects({"rules": [rule(backends=(("missing", 80, None),))]})
    result = translate(o)
    [plugin] = result.config["plugins"]
    assert plugin["name"] == "request-termination" and plugin["config"]["status_code"] == 500
    [unresolved] = result.gateway_status[("HTTPRoute", "default", "web")]["unresolved"]
    assert unresolved["reason"] == "BackendNotFound"


def test_filters_become_transformer_and_redirect_plugins():
    filters = [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "x-set", "value": "1"}], "add": [{"name": "x-add", "value": "2"}], "remove": ["x-gone"]}},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-resp", "value": "3"}]}}]
    o = gateway_objects({"rules": [rule({"path": {"type": "PathPrefix", "value": "/a"}}, filters=filters)]})
    result = translate(o)
    plugins = {p["name"]: p for p in result.config["plugins"]}
    assert plugins["request-transformer"]["config"] == {
        "replace": {"headers": ["x-set:1"]}, "add": {"headers": ["x-set:1"]},
        "append": {"headers": ["x-add:2"]}, "remove": {"headers": ["x-gone"]}}
    assert plugins["response-transformer"]["config"] == {"append": {"headers": ["x-resp:3"]}}
    assert plugins["request-transformer"]["route"] == "httproute.default.web.0.0"
    parse_declarative(result.config)


def test_prefix_rewrite_captures_the_rest_of_the_path():
    filters = [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                               "replacePrefixMatch": "/v2"}}}]
    o = gateway_objects({"rules": [rule({"path": {"type": "PathPrefix", "value": "/v1"}}, filters=filters)]})
    result = translate(o)
    assert routes(result.config)["httproute.default.web.0.0"]["paths"] == ["~/v1$", "~/v1(/.*)"]
    assert result.config["plugins"][0]["config"] == {"replace": {"uri": "/v2$(uri_captures[1])"}}
    parse_declarative(result.config)


def test_https_listener_certificate_from_its_secret():
    cert, key = cert_pair_for_test("web.example")
    o = gateway_objects({"rules": [rule()]}, listeners=[
        {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "web.example",
         "tls": {"certificateRefs": [{"name": "web-tls"}]}}])
    o.secrets[("default", "web-tls")] = {"metadata": {"name": "web-tls", "namespace": "default"},
                                         "type": "kubernetes.io/tls",
                                         "data": {"tls.crt": base64.b64encode(cert.encode()).decode(),
                                                  "tls.key": base64.b64encode(key.encode()).decode()}}
    result = translate(o)
    assert result.config["certificates"][0]["snis"] == [{"name": "web.example"}]
    assert routes(result.config)["httproute.default.web.0.0"]["protocols"] == ["https"]


def test_grpcroute_as_kic_names_and_matches_it():
    o = gateway_objects({"rules": [rule()]})
    add(o, "grpc_routes", {"metadata": {"name": "rpc", "namespace": "default"}, "spec": {
        "parentRefs": [{"name": "gw"}], "hostnames": ["grpc.example"], "rules": [{
            "matches": [{"method": {"service": "test.Echo", "method": "Unary"}},
                        {"method": {"service": "test.Echo"}, "headers": [{"name": "x-up", "value": "a"}]}],
            "backendRefs": [{"name": "echo", "port": 80}]}]}})
    result = translate(o)
    assert result.errors == []
    service = next(s for s in result.config["services"] if s["name"] == "grpcroute.default.rpc.0")
    assert service["protocol"] == "grpc" and "path" not in service
    r = routes(result.config)
    assert r["grpcroute.default.rpc.0.0"]["paths"] == ["~/test.Echo/Unary"]
    assert r["grpcroute.default.rpc.0.1"]["paths"] == ["~/test.Echo/"]
    assert r["grpcroute.default.rpc.0.1"]["headers"] == {"x-up": ["a"]}
    assert r["grpcroute.default.rpc.0.0"]["protocols"] == ["grpc"]
    assert r["grpcroute.default.rpc.0.0"]["hosts"] == ["grpc.example"]
    assert result.gateway_status[("GRPCRoute", "default", "rpc")]["parents"][0]["accepted"]
    parse_declarative(result.config)


def test_tcproute_and_tlsroute_as_kic():
    o = gateway_objects({"rules": [rule()]}, listeners=[
        {"name": "tcp", "protocol": "TCP", "port": 9000},
        {"name": "tls", "protocol": "TLS", "port": 9443, "tls": {"mode": "Passthrough"}}])
    add(o, "tcp_routes", {"metadata": {"name": "db", "namespace": "default"}, "spec": {
        "parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "echo", "port": 80}]}]}})
    add(o, "tls_routes", {"metadata": {"name": "secure", "namespace": "default"}, "spec": {
        "parentRefs": [{"name": "gw"}], "hostnames": ["tls.example"],
        "rules": [{"backendRefs": [{"name": "canary", "port": 80}]}]}})
    add(o, "tls_routes", {"metadata": {"name": "nameless", "namespace": "default"}, "spec": {
        "parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "canary", "port": 80}]}]}})
    result = translate(o)
    r = routes(result.config)
    assert r["tcproute.default.db.0.0"]["destinations"] == [{"port": 9000}]
    assert r["tcproute.default.db.0.0"]["protocols"] == ["tcp"]
    assert r["tlsroute.default.secure.0.0"]["snis"] == ["tls.example"]
    assert r["tlsroute.default.secure.0.0"]["protocols"] == ["tls_passthrough"]
    services = {s["name"]: s for s in result.config["services"]}
    assert services["tcproute.default.db.0"]["protocol"] == "tcp"
    # the HTTPRoute of gateway_objects finds no HTTP listener
    assert result.gateway_status[("HTTPRoute", "default", "web")]["parents"][0]["reason"] == "NotAllowedByListeners"
    [error] = result.errors
    assert (error.kind, error.name, error.field) == ("TLSRoute", "nameless", "spec.hostnames")
    parse_declarative(result.config)


def test_udproute_as_kic():
    o = gateway_objects({"rules": [rule()]}, listeners=[{"name": "dns", "protocol": "UDP", "port": 5353}])
    add(o, "udp_routes", {"metadata": {"name": "dns", "namespace": "default"}, "spec": {
        "parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "echo", "port": 80}]}]}})
    result = translate(o)
    r = routes(result.config)
    assert r["udproute.default.dns.0.0"]["destinations"] == [{"port": 5353}]
    assert r["udproute.default.dns.0.0"]["protocols"] == ["udp"]
    services = {s["name"]: s for s in result.config["services"]}
    assert services["udproute.default.dns.0"]["protocol"] == "udp"
    assert result.gateway_status[("UDPRoute", "default", "dns")]["parents"][0]["accepted"]
    parse_declarative(result.config)


def test_a_backend_of_another_namespace_needs_a_reference_grant():
    o = gateway_objects({"rules": [rule()]})
    o.http_routes[("default", "web")]["spec"]["rules"][0]["backendRefs"] = [
        {"name": "db", "namespace": "data", "port": 80}]
    o.services[("data", "db")] = svc("db", ns="data")
    o.endpoint_slices[("data", "db-abc")] = eps("db", ns="data", addresses=("10.1.0.1",))
    refused = translate(o)
    [unresolved] = refused.gateway_status[("HTTPRoute", "default", "web")]["unresolved"]
    assert unresolved["reason"] == "RefNotPermitted"
    add(o, "reference_grants", {"metadata": {"name": "g", "namespace": "data"}, "spec": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}],
        "to": [{"group": "", "kind": "Service"}]}})
    result = translate(o)
    assert result.gateway_status[("HTTPRoute", "default", "web")]["unresolved"] == []
    assert result.config["upstreams"][0]["targets"] == [{"target": "10.1.0.1:8080", "weight": 100}]


def test_backend_service_annotations_apply_to_the_routes_kong_service():
    o = gateway_objects({"rules": [rule()]})
    o.services[("default", "echo")]["metadata"]["annotations"] = {
        "konghq.com/plugins": "cors", "konghq.com/read-timeout": "5000", "konghq.com/protocol": "https"}
    add(o, "kong_plugins", {"metadata": {"name": "cors", "namespace": "default"}, "plugin": "cors",
                            "config": {"origins": ["*"]}})
    result = translate(o)
    assert result.errors == []
    [service] = result.config["services"]
    assert (service["read_timeout"], service["protocol"]) == (5000, "https")
    [plugin] = result.config["plugins"]
    assert plugin["service"] == service["name"] and plugin["name"] == "cors"
    o.services[("default", "echo")]["metadata"]["annotations"]["konghq.com/retries"] = "many"
    [error] = translate(o).errors
    assert error.field == "spec.rules[0].backendRefs[0]" and "konghq.com/retries" in error.reason


def test_a_listener_certificate_of_another_namespace_needs_a_reference_grant():
    cert, key = cert_pair_for_test("web.example")
    o = gateway_objects({"rules": [rule()]}, listeners=[
        {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "web.example",
         "tls": {"certificateRefs": [{"name": "web-tls", "namespace": "certs"}]}}])
    o.secrets[("certs", "web-tls")] = {"metadata": {"name": "web-tls", "namespace": "certs"},
                                       "data": {"tls.crt": base64.b64encode(cert.encode()).decode(),
                                                "tls.key": base64.b64encode(key.encode()).decode()}}
    refused = translate(o)
    assert refused.config["certificates"] == []
    assert refused.errors[0].field == "spec.listeners[0].tls.certificateRefs[0]"
    add(o, "reference_grants", {"metadata": {"name": "g", "namespace": "certs"}, "spec": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default"}],
        "to": [{"group": "", "kind": "Secret", "name": "web-tls"}]}})
    assert translate(o).config["certificates"][0]["snis"] == [{"name": "web.example"}]


def test_each_gateway_counts_only_the_routes_on_its_own_listeners():
    o = gateway_objects({"rules": [rule()]})
    add(o, "gateways", {"metadata": {"name": "other", "namespace": "default"}, "spec": {
        "gatewayClassName": "kong", "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}]}})
    result = translate(o)
    assert result.gateway_status[("Gateway", "default", "gw")]["attached"] == {"http": 1}
    assert result.gateway_status[("Gateway", "default", "other")]["attached"] == {"http": 0}
