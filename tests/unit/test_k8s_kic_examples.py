"""Real manifests from KIC's own examples and from Kong's operator samples (tests/data/k8s/*/SOURCE.md)
translated as KIC translates them, and accepted by the node's declarative schema. There are no pods here, so each
Service gets one ready endpoint on its targetPort, as the cluster would make for it."""
from __future__ import annotations

from pathlib import Path

import yaml

from meshway.k8s._translate import KIND_ATTRS, Objects, translate
from meshway.model import parse_declarative

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "k8s" / "kic-examples"
OPERATOR_SAMPLES = EXAMPLES.parent / "kong-operator-samples"
CLUSTER_SCOPED = {"IngressClass", "KongClusterPlugin", "GatewayClass", "Namespace"}
OPERATOR = "konghq.com/gateway-operator"  # the samples' GatewayClass controllerName


def load(name: str, directory: Path = EXAMPLES) -> Objects:
    o = Objects()
    o.namespaces[("", "default")] = {"metadata": {"name": "default"}}  # every cluster has it
    for i, doc in enumerate(d for d in yaml.safe_load_all((directory / name).read_text()) if d):
        if doc["kind"] not in KIND_ATTRS:
            continue  # Deployments: the pods they make are the endpoints below
        meta = doc["metadata"]
        if doc["kind"] not in CLUSTER_SCOPED:
            meta.setdefault("namespace", "default")  # what kubectl apply does
        getattr(o, KIND_ATTRS[doc["kind"]])[(meta.get("namespace", ""), meta["name"])] = doc
        if doc["kind"] == "Service":
            o.endpoint_slices[(meta["namespace"], meta["name"] + "-abc")] = {
                "metadata": {"name": meta["name"] + "-abc", "namespace": meta["namespace"],
                             "labels": {"kubernetes.io/service-name": meta["name"]}},
                # a named targetPort is the container's port of that name: 8080 here
                "ports": [{"name": p.get("name", ""), "port": p.get("targetPort", p["port"])
                           if isinstance(p.get("targetPort", p["port"]), int) else 8080}
                          for p in doc["spec"]["ports"]],
                "endpoints": [{"addresses": [f"10.0.0.{i + 1}"], "conditions": {"ready": True}}]}
    return o


def translated(name: str):
    result = translate(load(name))
    parse_declarative(result.config)  # the node accepts what we would push
    return result


def routes(config) -> dict:
    return {r["name"]: r for s in config["services"] for r in s.get("routes", [])}


def test_ingress_http():
    result = translated("ingress-http.yaml")
    assert result.errors == []
    route = routes(result.config)["default.httpbin-ingress.httpbin-deployment._.80"]
    assert (route["paths"], route["strip_path"], route["protocols"]) == (["/"], True, ["http"])


def test_kong_consumer_key_auth():
    result = translated("kong-consumer-key-auth.yaml")
    assert result.errors == []
    [consumer] = result.config["consumers"]
    assert consumer["username"] == "consumer1" and len(consumer["keyauth_credentials"]) == 1
    [plugin] = result.config["plugins"]
    assert plugin["name"] == "key-auth" and plugin["route"] == "default.httpbin-ingress.httpbin-deployment._.80"


def test_gateway_httproute_weights_and_listener_section():
    result = translated("gateway-httproute.yaml")
    assert result.errors == []
    [service] = result.config["services"]
    assert service["name"] == "httproute.default.svc.default.echo-1.80.75_default.echo-2.8080.25"
    [route] = service["routes"]
    assert route["name"] == "httproute.default.httproute-testing.0.0"
    assert route["paths"] == ["~/httproute-testing$", "/httproute-testing/"]
    assert route["protocols"] == ["https"] and route["strip_path"] is True  # sectionName https; annotation
    assert sorted(t["weight"] for t in result.config["upstreams"][0]["targets"]) == [25, 75]


def test_gateway_httproute_rewrite_path():
    result = translated("gateway-httproute-rewrite-path.yaml")
    assert result.errors == []
    by_route = {p["route"]: p for p in result.config["plugins"]}
    assert by_route["httproute.default.rewrite-path-full.0.0"]["config"] == {"replace": {"uri": "/echo?msg=hello"}}
    prefix = routes(result.config)["httproute.default.rewrite-path-prefix.0.0"]
    assert prefix["paths"] == ["~/old-prefix$", "~/old-prefix(/.*)"]
    assert by_route[prefix["name"]]["config"] == {"replace": {"uri": "/echo$(uri_captures[1])"}}


def test_kong_upstream_policy_as_shipped_is_refused_by_the_schema_and_named():
    # KIC's example sets cookiePath "cookie-path"; Kong's (and meshway's) hash_on_cookie_path must start
    # with "/", so Kong would refuse the whole push. Here the Service is left out, named with the field.
    result = translated("kong-upstream-policy-ingress.yaml")
    assert result.config["services"] == []
    first = result.errors[0]
    assert (first.kind, first.name, first.field) == ("Service", "httpbin-deployment", "hash_on_cookie_path")
    assert sorted(e.name for e in result.errors[1:]) == ["httpbin-ingress", "httpbin-ingress-2"]
    assert "Service default/httpbin-deployment is left out (hash_on_cookie_path: " in result.errors[1].reason


def test_kong_upstream_policy_on_every_upstream_of_the_service():
    objects = load("kong-upstream-policy-ingress.yaml")
    objects.kong_upstream_policies[("default", "httpbin-upstream-policy")]["spec"]["hashOn"]["cookiePath"] = "/"
    result = translate(objects)
    assert result.errors == []
    parse_declarative(result.config)
    upstreams = result.config["upstreams"]
    assert len(upstreams) == 2
    for upstream in upstreams:
        assert (upstream["algorithm"], upstream["slots"], upstream["hash_on"]) == ("consistent-hashing", 100, "cookie")
        assert (upstream["hash_on_cookie"], upstream["hash_on_cookie_path"]) == ("session-id", "/")
        assert upstream["healthchecks"]["active"]["unhealthy"]["timeouts"] == 5


def test_ingress_broken_plugin_is_isolated():
    result = translated("ingress-broken-plugin-fallback.yaml")
    names = {r["name"].split(".")[1] for r in routes(result.config).values()}
    assert "working-ingress" in names and "for-auth" not in names
    errors = {(e.kind, e.name): e for e in result.errors}
    assert errors[("KongPlugin", "key-auth")].field == "config.keys"
    assert "KongPlugin default/key-auth is invalid" in errors[("Ingress", "for-auth")].reason


def test_kong_upstream_policy_on_httproute_upstreams_through_the_backend_services():
    # the example's HTTPRoute points at a Gateway "kong" defined elsewhere in KIC's docs: add it;
    # and its cookiePath "cookie-path" is refused by Kong's schema (see above): fix it
    objects = load("kong-upstream-policy-httproute.yaml")
    objects.gateway_classes[("", "kong")] = {"metadata": {"name": "kong"},
                                             "spec": {"controllerName": "konghq.com/kic-gateway-controller"}}
    objects.gateways[("default", "kong")] = {"metadata": {"name": "kong", "namespace": "default"}, "spec": {
        "gatewayClassName": "kong", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}}
    objects.kong_upstream_policies[("default", "httpbin-httproute")]["spec"]["hashOn"]["cookiePath"] = "/"
    result = translate(objects)
    assert result.errors == []
    parse_declarative(result.config)
    upstreams = {u["name"]: u for u in result.config["upstreams"]}
    assert set(upstreams) == {"httproute.default.svc.default.httpbin-prod.80",
                              "httproute.default.svc.default.httpbin-prod.80.75_default.httpbin-test.80.25"}
    for upstream in upstreams.values():
        assert (upstream["algorithm"], upstream["hash_on"], upstream["hash_on_cookie"]) == \
            ("consistent-hashing", "cookie", "session-id")
    assert all(r["strip_path"] for r in routes(result.config).values())


def operator_sample(name: str):
    result = translate(load(name, OPERATOR_SAMPLES), gateway_controller=OPERATOR)
    parse_declarative(result.config)
    return result


def test_operator_sample_allowed_routes_selects_the_namespace_by_its_name_label():
    result = operator_sample("gateway-httproute-allowedroutes.yaml")
    assert result.errors == []
    [route] = routes(result.config).values()
    assert route["name"] == "httproute.default.httproute-echo.0.0"
    assert route["paths"] == ["~/echo$", "/echo/"] and route["strip_path"] is True
    [parent] = result.gateway_status[("HTTPRoute", "default", "httproute-echo")]["parents"]
    assert parent["reason"] == "Accepted"
    # the same route from another namespace is not selected by the listener
    objects = load("gateway-httproute-allowedroutes.yaml", OPERATOR_SAMPLES)
    route_obj = objects.http_routes.pop(("default", "httproute-echo"))
    route_obj["metadata"]["namespace"] = "other"
    route_obj["spec"]["parentRefs"] = [{"name": "kong", "namespace": "default"}]
    objects.http_routes[("other", "httproute-echo")] = route_obj
    objects.namespaces[("", "other")] = {"metadata": {"name": "other"}}
    moved = translate(objects, gateway_controller=OPERATOR)
    assert routes(moved.config) == {}
    [parent] = moved.gateway_status[("HTTPRoute", "other", "httproute-echo")]["parents"]
    assert parent["reason"] == "NotAllowedByListeners"


def test_operator_sample_reference_grant_lets_the_route_reach_another_namespace():
    result = operator_sample("gateway-referencegrant-httproute.yaml")
    assert result.errors == []
    [service] = result.config["services"]
    assert service["name"] == "httproute.default.svc.http.nginx.8080"
    assert [t["target"] for t in result.config["upstreams"][0]["targets"]] == ["10.0.0.3:80"]
    [route] = service["routes"]
    assert route["paths"] == ["~/httproute-testing$", "/httproute-testing/"]
    # without the grant: the route answers 500 (no resolvable backend), as the Gateway API asks
    objects = load("gateway-referencegrant-httproute.yaml", OPERATOR_SAMPLES)
    objects.reference_grants.clear()
    refused = translate(objects, gateway_controller=OPERATOR)
    assert [p["config"]["status_code"] for p in refused.config["plugins"]] == [500]


def test_operator_sample_ingress_https_only():
    result = operator_sample("ingress-https.yaml")
    assert result.errors == []
    [route] = routes(result.config).values()
    assert route["name"] == "default.httpbin-ingress.httpbin-deployment._.80"
    assert (route["protocols"], route["strip_path"], route["paths"]) == (["https"], True, ["/"])
