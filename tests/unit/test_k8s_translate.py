"""KIC's Ingress translation rules, one test per rule (expectations from KIC's subtranslator tests)."""
from __future__ import annotations

import base64

import pytest

from meshway.k8s._annotations import kong_paths
from meshway.k8s._translate import MANAGED_TAG, Objects, translate
from meshway.model import parse_declarative
from tests.fixtures.certs import cert_pair_for_test


def svc(name="echo", ns="default", ports=(("http", 80),), annotations=None, **spec):
    return {"metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
            "spec": {"ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
                     "clusterIP": "10.96.0.10", **spec}}


def eps(service="echo", ns="default", addresses=("10.0.0.1",), port=8080, port_name="http", ready=True,
        name=None):
    return {"metadata": {"name": name or f"{service}-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses]}


def ing(name="demo", ns="default", rules=None, annotations=None, cls="kong", **spec):
    if rules is None:
        rules = [{"host": "example.com", "http": {"paths": [
            {"path": "/foo", "pathType": "Prefix",
             "backend": {"service": {"name": "echo", "port": {"number": 80}}}}]}}]
    out = {"metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
           "spec": {"rules": rules, **spec}}
    if cls:
        out["spec"]["ingressClassName"] = cls
    return out


def objects(*items) -> Objects:
    o = Objects()
    for kind, obj in items:
        getattr(o, kind)[(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
    return o


def basic(**ingress_kw):
    return objects(("services", svc()), ("endpoint_slices", eps()), ("ingresses", ing(**ingress_kw)))


def route_of(config):
    [service] = config["services"]
    [route] = service["routes"]
    return route


def test_service_upstream_and_route_names_and_kic_defaults():
    result = translate(basic())
    assert result.errors == []
    [service] = result.config["services"]
    assert service["name"] == "default.echo.80"
    assert service["host"] == "echo.default.80.svc"
    assert (service["port"], service["protocol"], service["path"], service["retries"]) == (80, "http", "/", 5)
    assert service["connect_timeout"] == service["read_timeout"] == service["write_timeout"] == 60000
    route = route_of(result.config)
    assert route["name"] == "default.demo.echo.example.com.80"
    assert route["hosts"] == ["example.com"]
    assert route["strip_path"] is False and route["preserve_host"] is True and route["regex_priority"] == 0
    [upstream] = result.config["upstreams"]
    assert upstream["name"] == "echo.default.80.svc"
    assert upstream["targets"] == [{"target": "10.0.0.1:8080", "weight": 100}]
    # what we produce is a document the node accepts
    parse_declarative(result.config)


def test_tags_name_the_kubernetes_objects():
    route = route_of(translate(basic()).config)
    assert route["tags"] == ["k8s-name:demo", "k8s-namespace:default", "k8s-kind:Ingress", MANAGED_TAG]
    service = translate(basic()).config["services"][0]
    assert "k8s-kind:Service" in service["tags"] and "k8s-name:echo" in service["tags"]


@pytest.mark.parametrize("path, path_type, expected", [
    ("/foo", "Prefix", ["/foo/", "~/foo$"]),
    ("/foo/", "Prefix", ["/foo/", "~/foo$"]),
    ("/", "Prefix", ["/"]),
    ("/foo", "Exact", ["~/foo$"]),
    ("/foo/", "Exact", ["~/foo/$"]),
    ("/foo", "ImplementationSpecific", ["/foo"]),
    ("", "ImplementationSpecific", ["/"]),
    ("/~/v[0-9]+/users", "ImplementationSpecific", ["~/v[0-9]+/users"]),
])
def test_path_types_map_as_kic_maps_them(path, path_type, expected):
    assert kong_paths(path, path_type, "p") == expected


def test_unset_path_type_is_implementation_specific():
    rules = [{"http": {"paths": [{"path": "/raw", "backend": {"service": {"name": "echo", "port": {"number": 80}}}}]}}]
    route = route_of(translate(basic(rules=rules)).config)
    assert route["paths"] == ["/raw"]
    assert "hosts" not in route and route["name"] == "default.demo.echo._.80"


def test_paths_of_one_host_and_service_share_a_route():
    backend = {"service": {"name": "echo", "port": {"number": 80}}}
    rules = [{"host": "a.com", "http": {"paths": [{"path": "/x", "pathType": "Exact", "backend": backend},
                                                  {"path": "/y", "pathType": "Exact", "backend": backend}]}}]
    assert route_of(translate(basic(rules=rules)).config)["paths"] == ["~/x$", "~/y$"]


def test_wildcard_host_keeps_the_wildcard_and_names_it_with_underscore():
    backend = {"service": {"name": "echo", "port": {"number": 80}}}
    rules = [{"host": "*.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]
    route = route_of(translate(basic(rules=rules)).config)
    assert route["hosts"] == ["*.example.com"]
    assert route["name"] == "default.demo.echo._.example.com.80"


def test_port_by_name_names_the_service_by_the_port_name():
    rules = [{"host": "a.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "echo", "port": {"name": "http"}}}}]}}]
    config = translate(basic(rules=rules)).config
    assert config["services"][0]["name"] == "default.echo.http"
    assert config["upstreams"][0]["targets"] == [{"target": "10.0.0.1:8080", "weight": 100}]


def test_only_ready_endpoints_are_targets():
    o = basic()
    o.endpoint_slices[("default", "echo-def")] = eps(addresses=("10.0.0.9",), ready=False, name="echo-def")
    o.endpoint_slices[("default", "echo-ghi")] = eps(addresses=("10.0.0.2",), name="echo-ghi")
    targets = [t["target"] for t in translate(o).config["upstreams"][0]["targets"]]
    assert targets == ["10.0.0.1:8080", "10.0.0.2:8080"]


def test_service_upstream_annotation_targets_the_cluster_ip():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={"ingress.kubernetes.io/service-upstream": "true"})
    assert translate(o).config["upstreams"][0]["targets"] == [{"target": "10.96.0.10:80", "weight": 100}]


@pytest.mark.parametrize("ingress_cls, annotation, default, kept", [
    ("kong", None, False, True),
    ("nginx", None, False, False),
    (None, "kong", False, True),
    (None, "nginx", False, False),
    (None, None, False, False),
    (None, None, True, True),  # our IngressClass is the cluster's default
])
def test_ingress_class(ingress_cls, annotation, default, kept):
    annotations = {"kubernetes.io/ingress.class": annotation} if annotation else {}
    o = objects(("services", svc()), ("endpoint_slices", eps()),
                ("ingresses", ing(cls=ingress_cls, annotations=annotations)))
    o.ingress_classes[("", "kong")] = {"metadata": {"name": "kong", "annotations": {
        "ingressclass.kubernetes.io/is-default-class": "true" if default else "false"}},
        "spec": {"controller": "ingress-controllers.konghq.com/kong"}}
    assert bool(translate(o).config["services"]) is kept


def test_another_ingress_class_flag():
    o = basic(cls="internal")
    assert translate(o, "internal").config["services"] and not translate(o).config["services"]


def test_route_annotations():
    route = route_of(translate(basic(annotations={
        "konghq.com/strip-path": "true", "konghq.com/preserve-host": "false", "konghq.com/methods": "get,POST",
        "konghq.com/protocols": "https", "konghq.com/regex-priority": "10",
        "konghq.com/https-redirect-status-code": "301"})).config)
    assert route["strip_path"] is True and route["preserve_host"] is False
    assert route["methods"] == ["GET", "POST"] and route["protocols"] == ["https"]
    assert route["regex_priority"] == 10 and route["https_redirect_status_code"] == 301


def test_service_annotations():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={
        "konghq.com/path": "/api", "konghq.com/connect-timeout": "1000", "konghq.com/read-timeout": "2000",
        "konghq.com/write-timeout": "3000", "konghq.com/retries": "1", "konghq.com/host-header": "internal.svc",
        "konghq.com/protocol": "https"})
    config = translate(o).config
    service = config["services"][0]
    assert (service["path"], service["connect_timeout"], service["read_timeout"], service["write_timeout"],
            service["retries"], service["protocol"]) == ("/api", 1000, 2000, 3000, 1, "https")
    assert config["upstreams"][0]["host_header"] == "internal.svc"
    parse_declarative(config)


def test_default_backend():
    o = objects(("services", svc()), ("endpoint_slices", eps()), ("ingresses", ing(
        rules=[], defaultBackend={"service": {"name": "echo", "port": {"number": 80}}})))
    route = route_of(translate(o).config)
    assert route["paths"] == ["/"] and "hosts" not in route and route["name"] == "default.demo.echo.80"


def _tls_secret(name="tls-demo"):
    cert, key = cert_pair_for_test("example.com")
    return {"metadata": {"name": name, "namespace": "default"}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(cert.encode()).decode(),
                     "tls.key": base64.b64encode(key.encode()).decode()}}


def test_tls_sections_become_certificates_with_snis():
    o = basic(tls=[{"hosts": ["example.com", "www.example.com"], "secretName": "tls-demo"}])
    o.secrets[("default", "tls-demo")] = _tls_secret()
    config = translate(o).config
    [cert] = config["certificates"]
    assert [s["name"] for s in cert["snis"]] == ["example.com", "www.example.com"]
    assert cert["cert"].startswith("-----BEGIN CERTIFICATE-----")
    parse_declarative(config)


def test_missing_tls_secret_leaves_out_the_certificate_only():
    result = translate(basic(tls=[{"hosts": ["example.com"], "secretName": "nope"}]))
    assert result.config["certificates"] == [] and route_of(result.config)
    [error] = result.errors
    assert (error.kind, error.name, error.field) == ("Ingress", "demo", "spec.tls[0].secretName")
    assert "default/nope not found" in error.reason


def test_one_bad_ingress_is_left_out_and_reported_the_rest_translates():
    o = basic()
    o.ingresses[("default", "bad")] = ing(name="bad", annotations={"konghq.com/regex-priority": "high"})
    o.ingresses[("default", "orphan")] = ing(name="orphan", rules=[{"http": {"paths": [
        {"path": "/", "backend": {"service": {"name": "missing", "port": {"number": 80}}}}]}}])
    result = translate(o)
    assert [r["name"] for r in route_of_all(result.config)] == ["default.demo.echo.example.com.80"]
    errors = {e.name: e for e in result.errors}
    assert errors["bad"].field == "metadata.annotations[konghq.com/regex-priority]"
    assert "expected an integer" in errors["bad"].reason
    assert errors["orphan"].field == "spec.rules[0].http.paths[0].backend.service.name"
    assert "Service default/missing not found" in errors["orphan"].reason


def test_a_service_with_a_bad_annotation_leaves_out_the_ingress_naming_the_service():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={"konghq.com/retries": "-1"})
    result = translate(o)
    assert result.config["services"] == []
    assert "Service default/echo: metadata.annotations[konghq.com/retries]" in result.errors[0].reason


def test_unknown_service_port_is_reported():
    rules = [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "echo", "port": {"number": 81}}}}]}}]
    [error] = translate(basic(rules=rules)).errors
    assert error.field.endswith("backend.service.port") and "no port 81" in error.reason


def route_of_all(config):
    return [r for s in config["services"] for r in s["routes"]]


def test_host_aliases_headers_path_handling_and_snis_annotations():
    result = translate(basic(annotations={
        "konghq.com/host-aliases": "alias.example.com,example.com", "konghq.com/headers.x-env": "blue, green",
        "konghq.com/headers.x-team": "a;b", "konghq.com/path-handling": "v1", "konghq.com/protocols": "https",
        "konghq.com/snis": "example.com"}))
    assert result.errors == []
    route = route_of(result.config)
    assert route["hosts"] == ["example.com", "alias.example.com"]
    assert route["headers"] == {"x-env": ["blue", "green"], "x-team": ["a;b"]}
    assert (route["path_handling"], route["snis"]) == ("v1", ["example.com"])
    parse_declarative(result.config)
    separated = route_of(translate(basic(annotations={"konghq.com/headers.x-team": "a;b",
                                                      "konghq.com/headers-separator": ";"})).config)
    assert separated["headers"] == {"x-team": ["a", "b"]}


def test_bad_host_alias_or_path_handling_names_the_annotation():
    for key, value in (("host-aliases", "not a host"), ("path-handling", "v2")):
        [error] = translate(basic(annotations={f"konghq.com/{key}": value})).errors
        assert error.field == f"metadata.annotations[konghq.com/{key}]"


def test_tls_verify_annotations_on_the_service():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={"konghq.com/protocol": "https", "konghq.com/tls-verify": "true",
                                                       "konghq.com/tls-verify-depth": "2"})
    [service] = translate(o).config["services"]
    assert (service["tls_verify"], service["tls_verify_depth"]) == (True, 2)


def _client_tls_secret(name, cn, **labels):
    cert, key = cert_pair_for_test(cn)
    return {"metadata": {"name": name, "namespace": "default", "labels": labels}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(cert.encode()).decode(),
                     "tls.key": base64.b64encode(key.encode()).decode()}}


def test_client_cert_and_ca_certificates_secrets_on_the_service():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={
        "konghq.com/protocol": "https", "konghq.com/client-cert": "client",
        "konghq.com/ca-certificates-secrets": "root-ca"})
    o.secrets[("default", "client")] = _client_tls_secret("client", "client.example")
    ca, _ = cert_pair_for_test("Root CA", ca=True)
    ca_id = "8e9f2a4c-1d3b-4f5e-9a7b-0c1d2e3f4a5b"
    o.secrets[("default", "root-ca")] = {
        "metadata": {"name": "root-ca", "namespace": "default", "labels": {"konghq.com/ca-cert": "true"}},
        "data": {"id": base64.b64encode(ca_id.encode()).decode(), "cert": base64.b64encode(ca.encode()).decode()}}
    result = translate(o)
    assert result.errors == []
    [service] = result.config["services"]
    [certificate] = result.config["certificates"]
    assert service["client_certificate"] == {"id": certificate["id"]}
    assert service["ca_certificates"] == [ca_id]
    assert result.config["ca_certificates"][0]["id"] == ca_id
    parse_declarative(result.config)


def test_user_tags_annotation_is_added_to_the_entities():
    route = route_of(translate(basic(annotations={"konghq.com/tags": "team-a, billing"})).config)
    assert route["tags"][-2:] == ["team-a", "billing"] and MANAGED_TAG in route["tags"]


def test_a_missing_ca_certificate_secret_names_the_annotation():
    o = basic()
    o.services[("default", "echo")] = svc(annotations={"konghq.com/ca-certificates-secrets": "nope"})
    [error] = translate(o).errors
    assert "konghq.com/ca-certificates-secrets" in error.reason and "nope" in error.reason
