"""Gateway API end to end, against kmock's EMULATED Kubernetes API server (no real kube-apiserver
can run here): GatewayClass + Gateway + HTTPRoute with a 90/10 canary split, a header match and a
request header filter, through a real DB-less node."""
from __future__ import annotations

import httpx

from tests.k8s.conftest import eventually

GW = "gateway.networking.k8s.io/v1"


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.11", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def endpoints(name: str, port: int) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-s1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}


GATEWAY_CLASS = {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "kong"},
                 "spec": {"controllerName": "konghq.com/kic-gateway-controller"}}
GATEWAY = {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "kong", "namespace": "default"},
           "spec": {"gatewayClassName": "kong", "listeners": [{"name": "proxy", "port": 80, "protocol": "HTTP"}]}}
ROUTE = {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "shop", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "kong"}], "hostnames": ["shop.example"], "rules": [
             {"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                           "headers": [{"name": "x-beta", "value": "yes"}]}],
              "backendRefs": [{"name": "canary", "port": 80}],
              "filters": [{"type": "RequestHeaderModifier",
                           "requestHeaderModifier": {"set": [{"name": "x-via", "value": "beta-rule"}]}}]},
             {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
              "backendRefs": [{"name": "stable", "port": 80, "weight": 90},
                              {"name": "canary", "port": 80, "weight": 10}]}]}}


def test_httproute_canary_split_header_match_and_filter_kmock_emulated_apiserver(apiserver, controller, origins):
    node, log = controller
    stable_port, canary_port = origins
    for name, port in (("stable", stable_port), ("canary", canary_port)):
        apiserver.create(service(name))
        apiserver.create(endpoints(name, port))
    apiserver.create(GATEWAY_CLASS)
    apiserver.create(GATEWAY)
    apiserver.create(ROUTE)

    def get(**headers):
        return httpx.get(node.proxy + "/cart", headers={"Host": "shop.example", **headers}, timeout=5)

    beta = eventually(lambda: get(**{"x-beta": "yes"}), lambda r: r.status_code == 200, "the HTTPRoute serves")
    # the header match sends beta users to the canary, with the rule's request header set
    assert beta.text.startswith("origin-b /cart"), log.read_text()
    assert beta.headers["Echo-X-Via"] == "beta-rule"
    # everyone else: 90/10 over a bounded number of requests
    eventually(lambda: get(), lambda r: r.status_code == 200, "the weighted rule serves")
    answers = [get().text.split()[0] for _ in range(100)]
    canary = answers.count("origin-b")
    assert answers.count("origin-a") + canary == 100
    assert 4 <= canary <= 20, canary
    assert httpx.get(node.proxy + "/cart", headers={"Host": "other.example"}).status_code == 404

    # the HTTPRoute deleted, its routes are gone
    apiserver.delete(ROUTE)
    eventually(lambda: get(), lambda r: r.status_code == 404, "the route is gone with the HTTPRoute")
