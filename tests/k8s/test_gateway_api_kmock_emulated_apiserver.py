"""Gateway API end to end, against kmock's EMULATED Kubernetes API server (no real kube-apiserver
can run here): GatewayClass + Gateway + HTTPRoute with a 90/10 canary split, a header match and a
request header filter, through a real DB-less node."""
from __future__ import annotations

import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time

import httpx
import pytest

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


def _conditions(status: dict) -> dict:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


def test_status_written_back_to_ingress_gateway_and_httproutes_kmock_emulated_apiserver(
        apiserver, start_controller, origins):
    node, log = start_controller("--publish-status-address", "192.0.2.10,lb.example", "--log-level", "debug")
    apiserver.create(service("stable"))
    apiserver.create(endpoints("stable", origins[0]))
    apiserver.create(GATEWAY_CLASS)
    gateway = {**GATEWAY, "spec": {**GATEWAY["spec"], "listeners": [
        {"name": "proxy", "port": 80, "protocol": "HTTP", "hostname": "*.example"},
        {"name": "raw", "port": 9000, "protocol": "SCTP"}]}}
    apiserver.create(gateway)
    good = {**ROUTE, "metadata": {"name": "good", "namespace": "default"}, "spec": {
        "parentRefs": [{"name": "kong"}], "hostnames": ["shop.example"],
        "rules": [{"backendRefs": [{"name": "stable", "port": 80}]}]}}
    missing_backend = {**good, "metadata": {"name": "missing-backend", "namespace": "default"}, "spec": {
        **good["spec"], "hostnames": ["missing.example"], "rules": [{"backendRefs": [{"name": "nope", "port": 80}]}]}}
    wrong_host = {**good, "metadata": {"name": "wrong-host", "namespace": "default"},
                  "spec": {**good["spec"], "hostnames": ["shop.elsewhere"]}}
    for route in (good, missing_backend, wrong_host):
        apiserver.create(route)
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "legacy", "namespace": "default"},
               "spec": {"ingressClassName": "kong", "rules": [{"host": "legacy.example", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "stable", "port": {"number": 80}}}}]}}]}}
    apiserver.create(ingress)

    def status(kind, name, ns="default"):
        [obj] = [o for o in apiserver.list(kind, ns) if o["metadata"]["name"] == name]
        return obj.get("status") or {}

    ing = eventually(lambda: status("Ingress", "legacy"), lambda s: s.get("loadBalancer"), "Ingress status")
    assert ing["loadBalancer"]["ingress"] == [{"ip": "192.0.2.10"}, {"hostname": "lb.example"}]

    gw = eventually(lambda: status("Gateway", "kong"), lambda s: s.get("listeners"), "Gateway status")
    assert _conditions(gw) == {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
    assert gw["addresses"] == [{"type": "IPAddress", "value": "192.0.2.10"}, {"type": "Hostname", "value": "lb.example"}]
    listeners = {lst["name"]: lst for lst in gw["listeners"]}
    assert listeners["proxy"]["attachedRoutes"] == 2  # good and missing-backend; wrong-host is not attached
    assert _conditions(listeners["raw"])["Accepted"] == ("False", "UnsupportedProtocol")

    [parent] = eventually(lambda: status("HTTPRoute", "good"), lambda s: s.get("parents"), "route status")["parents"]
    assert parent["controllerName"] == "konghq.com/kic-gateway-controller"
    assert _conditions(parent) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs"),
                                   "Programmed": ("True", "ConfiguredInGateway")}
    [parent] = status("HTTPRoute", "missing-backend")["parents"]
    assert _conditions(parent)["ResolvedRefs"] == ("False", "BackendNotFound")
    [parent] = status("HTTPRoute", "wrong-host")["parents"]
    assert _conditions(parent)["Accepted"] == ("False", "NoMatchingListenerHostname")
    [gc] = [o for o in apiserver.list("GatewayClass") if o["metadata"]["name"] == "kong"]
    assert _conditions(gc["status"]) == {"Accepted": ("True", "Accepted")}

    # what the statuses say is what the proxy does: the good route serves, the unresolved one answers 500
    def get(host):
        return httpx.get(node.proxy + "/", headers={"Host": host}, timeout=5)
    assert eventually(lambda: get("shop.example"), lambda r: r.status_code == 200, "good route").status_code == 200
    assert get("missing.example").status_code == 500
    assert get("shop.elsewhere").status_code == 404

    # each status is written once, not again on the watch event our own write causes
    writes = log.read_text().count(" written")
    time.sleep(1.5)
    assert log.read_text().count(" written") == writes <= 8, log.read_text()


def test_grpcroute_calls_reach_the_grpc_backend_kmock_emulated_apiserver(apiserver, start_controller):
    import grpc

    from tests.helpers.node import free_port
    from tests.integration.http2.h2_for_test import GrpcOrigin, grpc_channel_for_test, method_for_test

    origin = GrpcOrigin()
    proxy_port = free_port()
    node, log = start_controller(proxy_listen=f"127.0.0.1:{proxy_port} http2")
    try:
        apiserver.create(service("rpc"))
        apiserver.create(endpoints("rpc", origin.port))
        apiserver.create(GATEWAY_CLASS)
        apiserver.create(GATEWAY)
        apiserver.create({"apiVersion": GW, "kind": "GRPCRoute", "metadata": {"name": "echo", "namespace": "default"},
                          "spec": {"parentRefs": [{"name": "kong"}], "hostnames": ["grpc.example"], "rules": [{
                              "matches": [{"method": {"service": "test.Echo", "method": "Unary"}}],
                              "backendRefs": [{"name": "rpc", "port": 80}]}]}})
        channel = grpc_channel_for_test(proxy_port, options=[("grpc.default_authority", "grpc.example")])

        def call():
            try:
                return method_for_test(channel, "Unary")(b"hi", metadata=(("x-client", "k8s"),), timeout=5)
            except grpc.RpcError as e:
                return e.code()
        assert eventually(call, lambda r: r == b"echo:hi", "the GRPCRoute serves") == b"echo:hi", log.read_text()
        assert origin.metadata[-1]["x-client"] == "k8s"
        # another method of the service is not routed (the match names Unary only)
        other = method_for_test(channel, "ServerStream", "unary_stream")
        with pytest.raises(grpc.RpcError) as refused:
            list(other(b"1", timeout=5))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND  # no route: the proxy's 404 as gRPC
        assert refused.value.details() == "no Route matched with those values"
        channel.close()
    finally:
        origin.server.stop(0)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        data = self.request.recv(100)
        self.request.sendall(self.server.prefix + data)


def _echo_server(prefix: bytes, tls: tuple[str, str] | None = None):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.prefix = prefix
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert, key = tls
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
            pem.write(cert + key)
            pem.flush()
            context.load_cert_chain(pem.name)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_tcproute_and_tls_passthrough_tlsroute_kmock_emulated_apiserver(apiserver, start_controller):
    from tests.fixtures.certs import cert_pair_for_test
    from tests.helpers.node import free_port

    cert, key = cert_pair_for_test("tls.example")
    plain, secure = _echo_server(b"tcp:"), _echo_server(b"tls:", (cert, key))
    tcp_port, tls_port = free_port(), free_port()
    node, log = start_controller(stream_listen=f"127.0.0.1:{tcp_port}, 127.0.0.1:{tls_port}")
    try:
        for name, server in (("db", plain), ("secure", secure)):
            apiserver.create(service(name))
            apiserver.create(endpoints(name, server.server_address[1]))
        apiserver.create(GATEWAY_CLASS)
        apiserver.create({**GATEWAY, "spec": {"gatewayClassName": "kong", "listeners": [
            {"name": "tcp", "port": tcp_port, "protocol": "TCP"},
            {"name": "tls", "port": tls_port, "protocol": "TLS", "tls": {"mode": "Passthrough"}}]}})
        v1alpha2 = "gateway.networking.k8s.io/v1alpha2"
        apiserver.create({"apiVersion": v1alpha2, "kind": "TCPRoute", "metadata": {"name": "db", "namespace": "default"},
                          "spec": {"parentRefs": [{"name": "kong", "sectionName": "tcp"}],
                                   "rules": [{"backendRefs": [{"name": "db", "port": 80}]}]}})
        apiserver.create({"apiVersion": v1alpha2, "kind": "TLSRoute",
                          "metadata": {"name": "secure", "namespace": "default"},
                          "spec": {"parentRefs": [{"name": "kong", "sectionName": "tls"}],
                                   "hostnames": ["tls.example"],
                                   "rules": [{"backendRefs": [{"name": "secure", "port": 80}]}]}})

        def tcp():
            try:
                with socket.create_connection(("127.0.0.1", tcp_port), timeout=3) as s:
                    s.sendall(b"ping")
                    return s.recv(100)
            except OSError as e:
                return e
        assert eventually(tcp, lambda r: r == b"tcp:ping", "the TCPRoute") == b"tcp:ping", log.read_text()

        def tls():
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            try:
                with socket.create_connection(("127.0.0.1", tls_port), timeout=3) as raw, \
                        context.wrap_socket(raw, server_hostname="tls.example") as s:
                    s.sendall(b"ping")
                    return s.recv(100), s.getpeercert(binary_form=True)
            except OSError as e:
                return e
        answer, peer = eventually(tls, lambda r: isinstance(r, tuple) and r[0] == b"tls:ping", "the TLSRoute")
        # passthrough: the certificate is the backend's own, the proxy never decrypted anything
        assert peer == ssl.PEM_cert_to_DER_cert(cert)
    finally:
        plain.shutdown()
        secure.shutdown()


def test_a_backend_in_another_namespace_serves_once_a_reference_grant_allows_it_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    backend = {**service("db"), "metadata": {"name": "db", "namespace": "data"}}
    slice_ = endpoints("db", origins[0])
    slice_["metadata"]["namespace"] = "data"
    apiserver.create(backend)
    apiserver.create(slice_)
    apiserver.create(GATEWAY_CLASS)
    apiserver.create(GATEWAY)
    apiserver.create({**ROUTE, "spec": {"parentRefs": [{"name": "kong"}], "hostnames": ["shop.example"],
                                        "rules": [{"backendRefs": [{"name": "db", "namespace": "data", "port": 80}]}]}})

    def get():
        return httpx.get(node.proxy + "/", headers={"Host": "shop.example"}, timeout=5)
    # not permitted: the rule answers 500, as the Gateway API asks
    eventually(get, lambda r: r.status_code == 500, "the route without a grant")
    apiserver.create({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
                      "metadata": {"name": "shop-to-db", "namespace": "data"},
                      "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                         "namespace": "default"}],
                               "to": [{"group": "", "kind": "Service", "name": "db"}]}})
    served = eventually(get, lambda r: r.status_code == 200, "the route once the grant exists")
    assert served.text.startswith("origin-a /"), log.read_text()


def _in_namespace(obj: dict, ns: str) -> dict:
    return {**obj, "metadata": {**obj["metadata"], "namespace": ns}}


def test_a_listener_takes_routes_from_the_namespaces_its_selector_picks_kmock_emulated_apiserver(
        apiserver, controller, origins):
    node, log = controller
    apiserver.create(GATEWAY_CLASS)
    apiserver.create({**GATEWAY, "spec": {"gatewayClassName": "kong", "listeners": [
        {"name": "proxy", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {
            "from": "Selector", "selector": {"matchLabels": {"shared-gateway-access": "true"}}}}}]}})
    team_b = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}}
    apiserver.create({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": "team-a", "labels": {"shared-gateway-access": "true"}}})
    apiserver.create(team_b)
    for ns in ("team-a", "team-b"):
        apiserver.create(_in_namespace(service("web"), ns))
        apiserver.create(_in_namespace(endpoints("web", origins[0]), ns))
        apiserver.create({"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": "web", "namespace": ns},
                          "spec": {"parentRefs": [{"name": "kong", "namespace": "default"}],
                                   "hostnames": [f"{ns}.example"], "rules": [{"backendRefs": [
                                       {"name": "web", "port": 80}]}]}})

    def get(ns):
        return httpx.get(node.proxy + "/", headers={"Host": f"{ns}.example"}, timeout=5)
    eventually(lambda: get("team-a"), lambda r: r.status_code == 200, "the selected namespace's route")
    assert get("team-b").status_code == 404
    status = eventually(lambda: apiserver.list("HTTPRoute", "team-b")[0].get("status") or {},
                        lambda s: s.get("parents"), "team-b's route status")
    [parent] = status["parents"]
    assert _conditions(parent)["Accepted"] == ("False", "NotAllowedByListeners"), log.read_text()
    # team-b gets the label: the controller follows Namespaces, its route attaches
    apiserver.patch(team_b, {"metadata": {"labels": {"shared-gateway-access": "true"}}})
    eventually(lambda: get("team-b"), lambda r: r.status_code == 200, "team-b's route once labelled")


def test_udproute_relays_datagrams_kmock_emulated_apiserver(apiserver, start_controller):
    from tests.integration.balancer.dns_server_for_test import DnsServer_for_test

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a free UDP port for the listener
        probe.bind(("127.0.0.1", 0))
        udp_port = probe.getsockname()[1]
    dns = DnsServer_for_test("db.example. 60 IN A 10.9.8.7").start()
    node, log = start_controller(stream_listen=f"127.0.0.1:{udp_port} udp")
    try:
        apiserver.create(service("dns"))
        apiserver.create(endpoints("dns", dns.port))
        apiserver.create(GATEWAY_CLASS)
        apiserver.create({**GATEWAY, "spec": {"gatewayClassName": "kong", "listeners": [
            {"name": "dns", "port": udp_port, "protocol": "UDP"}]}})
        apiserver.create({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "UDPRoute",
                          "metadata": {"name": "dns", "namespace": "default"},
                          "spec": {"parentRefs": [{"name": "kong", "sectionName": "dns"}],
                                   "rules": [{"backendRefs": [{"name": "dns", "port": 80}]}]}})

        def dig():
            done = subprocess.run(["dig", "@127.0.0.1", "-p", str(udp_port), "db.example", "A", "+short",
                                   "+time=1", "+tries=1"], capture_output=True, text=True, timeout=20)
            return done.stdout.strip()
        assert eventually(dig, lambda out: out == "10.9.8.7", "dig through the UDPRoute") == "10.9.8.7", log.read_text()
        gateway = eventually(lambda: apiserver.list("Gateway")[0],
                             lambda g: ((g.get("status") or {}).get("listeners") or [{}])[0].get("attachedRoutes") == 1,
                             "the UDP listener accepted, one route attached")
        assert gateway["status"]["listeners"][0]["supportedKinds"] == [{"group": "gateway.networking.k8s.io",
                                                                        "kind": "UDPRoute"}]
    finally:
        dns.stop()
