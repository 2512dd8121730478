"""Kubernetes objects -> a meshway declarative snapshot, as the Kong Ingress Controller translates.

Pure: `translate(objects, ingress_class)` reads plain dicts (the API server's JSON) and returns the
snapshot plus the objects it had to leave out. The rules follow KIC's
`internal/dataplane/translator/subtranslator/ingress.go` and `internal/annotations/`:

- one service per Kubernetes Service and port, named `<ns>.<svc>.<port>`, whose host is the upstream
  `<svc>.<ns>.<port>.svc`; targets are the ready endpoints of the Service's EndpointSlices, or the
  ClusterIP with `ingress.kubernetes.io/service-upstream: "true"`;
- one route per Ingress, host, Service and port, named `<ns>.<ingress>.<svc>.<host>.<port>` (`*` in the
  host becomes `_`), with KIC's defaults `strip_path: false`, `preserve_host: true`;
- TLS sections become certificates with their hosts as SNIs, from `kubernetes.io/tls` Secrets.

One bad object never blocks the others: it is left out and listed in `Translation.errors` with the
field and the reason (KIC instead lets one bad object stop every update: KIC#571, #6519).
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from meshway.k8s import _annotations as ann
from meshway.k8s import _check, _consumers, _gateway, _plugins, _tls, _upstreams
from meshway.k8s._annotations import Bad as _Bad
from meshway.k8s._common import MANAGED_TAG, find_port as _find_port, meta as _meta, tags as _tags  # noqa: F401
from meshway.k8s._gateway_state import GatewayState

DEFAULT_CLASS = "kong"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
SERVICE_UPSTREAM = "ingress.kubernetes.io/service-upstream"


@dataclass(frozen=True)
class ObjectError:
    """An object left out of the snapshot: which one, which field, why."""

    kind: str
    namespace: str
    name: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}: {self.field}: {self.reason}"


@dataclass
class Translation:
    config: dict
    errors: list[ObjectError] = field(default_factory=list)
    # Gateway API results for `_status`: ("HTTPRoute", ns, name) -> {"parents": [...], "unresolved": [...]},
    # ("Gateway", ns, name) -> {"attached": {listener name: route count}}
    gateway_status: dict = field(default_factory=dict)


KIND_ATTRS = {"Ingress": "ingresses", "IngressClass": "ingress_classes", "Service": "services",
              "EndpointSlice": "endpoint_slices", "Secret": "secrets", "KongPlugin": "kong_plugins",
              "KongClusterPlugin": "kong_cluster_plugins", "KongConsumer": "kong_consumers",
              "KongConsumerGroup": "kong_consumer_groups",
              "KongIngress": "kong_ingresses", "KongUpstreamPolicy": "kong_upstream_policies",
              "GatewayClass": "gateway_classes", "Gateway": "gateways", "HTTPRoute": "http_routes",
              "GRPCRoute": "grpc_routes", "TCPRoute": "tcp_routes", "UDPRoute": "udp_routes", "TLSRoute": "tls_routes",
              "ReferenceGrant": "reference_grants", "Namespace": "namespaces"}


@dataclass
class Objects:
    """The controller's cache, one dict per kind keyed by (namespace, name)."""

    ingresses: dict = field(default_factory=dict)
    ingress_classes: dict = field(default_factory=dict)
    services: dict = field(default_factory=dict)
    endpoint_slices: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)
    kong_plugins: dict = field(default_factory=dict)
    kong_cluster_plugins: dict = field(default_factory=dict)
    kong_consumers: dict = field(default_factory=dict)
    kong_consumer_groups: dict = field(default_factory=dict)
    kong_ingresses: dict = field(default_factory=dict)
    kong_upstream_policies: dict = field(default_factory=dict)
    gateway_classes: dict = field(default_factory=dict)
    gateways: dict = field(default_factory=dict)
    http_routes: dict = field(default_factory=dict)
    grpc_routes: dict = field(default_factory=dict)
    tcp_routes: dict = field(default_factory=dict)
    udp_routes: dict = field(default_factory=dict)
    tls_routes: dict = field(default_factory=dict)
    reference_grants: dict = field(default_factory=dict)
    namespaces: dict = field(default_factory=dict)  # for Gateway listeners' allowedRoutes selectors
    # objects left out because the node's schema refuses what they translate to: key -> why
    left_out: dict = field(default_factory=dict)

    def find(self, kind: str, namespace: str, name: str) -> dict | None:
        cache = getattr(self, KIND_ATTRS.get(kind, ""), None) or {}
        return cache.get((namespace or "", name))


def in_class(ingress: dict, ingress_class: str, classes: dict) -> bool:
    """KIC's rule (its store's ListIngressesV1): the legacy annotation when set, else
    `spec.ingressClassName`; an object with neither is ours only when the IngressClass named by
    --ingress-class is marked the cluster's default. Like KIC, the class is matched by name: its
    `spec.controller` (ingress-controllers.konghq.com/kong in KIC's manifests) is not checked."""
    name = (_meta(ingress).get("annotations") or {}).get(CLASS_ANNOTATION) or \
        (ingress.get("spec") or {}).get("ingressClassName")
    if name:
        return name == ingress_class
    ours = classes.get(("", ingress_class))
    return bool(ours) and (_meta(ours).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"


MAX_ROUNDS = 5


def translate(objects: Objects, ingress_class: str = DEFAULT_CLASS,
              gateway_controller: str = _gateway.DEFAULT_CONTROLLER) -> Translation:
    """Translate; then leave out the objects whose entities the node's schema would refuse, and
    translate again without them (bounded: a few rounds, each removing at least one object)."""
    left_out: dict = {}
    for _ in range(MAX_ROUNDS):
        result = _translate_once(_without(objects, left_out), ingress_class, gateway_controller)
        found = _check.offenders(result.config)
        if not found or ("", "", "") in found or not set(found) - set(left_out):
            break
        left_out.update(found)
    result.errors[:0] = [ObjectError(kind, ns, name, field_, reason)
                         for (kind, ns, name), (field_, reason) in sorted(left_out.items())]
    return result


def _without(objects: Objects, left_out: dict) -> Objects:
    if not left_out:
        return objects
    copy = Objects(**{name: dict(getattr(objects, name)) for name in KIND_ATTRS.values()})
    for kind, ns, name in left_out:
        getattr(copy, KIND_ATTRS.get(kind, ""), {}).pop((ns, name), None)
    copy.left_out = {key: f"{f}: {r}" for key, (f, r) in left_out.items()}
    return copy


def _translate_once(objects: Objects, ingress_class: str, gateway_controller: str) -> Translation:
    state = _State(objects)
    ours = lambda obj: in_class(obj, ingress_class, objects.ingress_classes)  # noqa: E731
    for key in sorted(objects.ingresses):
        if ours(objects.ingresses[key]):
            state.add_ingress(objects.ingresses[key])
    gateways = _gateway.our_gateways(objects, gateway_controller)
    for key in sorted(gateways):
        state.add_gateway(gateways[key])
    for kind in GatewayState.ROUTE_KINDS:
        routes = getattr(objects, KIND_ATTRS[kind])
        for key in sorted(routes):
            state.add_gateway_route(routes[key], gateways, kind)
    for key in sorted(objects.kong_consumer_groups):
        if ours(objects.kong_consumer_groups[key]):
            state.add_consumer_group(objects.kong_consumer_groups[key])
    for key in sorted(objects.kong_consumers):
        if ours(objects.kong_consumers[key]):
            state.add_consumer(objects.kong_consumers[key])
    state.global_plugins = state.plugins.global_plugins(ours)
    return Translation(state.snapshot(), state.errors, state.gateway_status)


class _State(GatewayState):
    """The snapshot under construction; an Ingress is staged whole, then committed or dropped."""

    def __init__(self, objects: Objects):
        self.objects = objects
        self.services: dict[str, dict] = {}
        self.upstreams: dict[str, dict] = {}
        self.certificates: dict[str, dict] = {}
        self.snis: set[str] = set()
        self.errors: list[ObjectError] = []
        self.consumers: list[dict] = []
        self.consumer_groups: dict[tuple, dict] = {}  # (namespace, KongConsumerGroup name) -> consumer group
        self.memberships: list[dict] = []
        self.bad_groups: dict[tuple, str] = {}  # KongConsumerGroups left out -> why
        self.credential_owners: dict[tuple, str] = {}
        self.bindings: list[tuple[tuple, dict, dict]] = []
        self.global_plugins: list[dict] = []
        self.plugins = _plugins.Plugins(objects, _tags, self.error)
        self.gateway_status: dict = {}
        self.ca_certificates, self.ca_by_secret = _tls.ca_certificates(objects.secrets, _tags, self.error)
        self._unresolved: list[dict] = []

    def error(self, kind: str, obj: dict, field_: str, reason: str) -> None:
        meta = _meta(obj)
        self.errors.append(ObjectError(kind, meta.get("namespace", ""), meta.get("name", ""), field_, reason))

    def add_ingress(self, ingress: dict) -> None:
        try:
            routes = _ingress_routes(ingress)
            route_plugins = self.plugins.for_referrer(ingress, "Ingress")
            staged = [(self._backend(ingress, svc, port, where), route) for svc, port, where, route in routes]
        except _Bad as bad:
            self.error("Ingress", ingress, bad.field, bad.reason)
            return
        for (service, upstream, service_plugins), route in staged:
            self.commit_route(service, upstream, route, route_plugins, service_plugins)
        self._add_tls(ingress)

    def commit_route(self, service: dict, upstream: dict, route: dict, route_plugins, service_plugins) -> None:
        existing = self.services.setdefault(service["name"], service)
        self.upstreams.setdefault(upstream["name"], upstream)
        _merge_route(existing.setdefault("routes", []), route)
        self.bindings += [(key, tpl, {"route": route["name"]}) for key, tpl in route_plugins]
        self.bindings += [(key, tpl, {"service": service["name"]}) for key, tpl in service_plugins]

    def _missing(self, kind: str, ns: str, name: str) -> str:
        why = self.objects.left_out.get((kind, ns, name))
        return f"{kind} {ns}/{name} is left out ({why})" if why else f"{kind} {ns}/{name} not found"

    def add_consumer(self, obj: dict) -> None:
        error = lambda field_, reason: self.error("KongConsumer", obj, field_, reason)  # noqa: E731
        try:
            consumer = _consumers.consumer_entity(obj, _tags(obj, "KongConsumer"))
            plugins = self.plugins.for_referrer(obj, "KongConsumer")
            groups = self._groups_of(obj)
        except _Bad as bad:
            return error(bad.field, bad.reason)
        creds = _consumers.credentials(obj, self.objects.secrets, _tags, error)
        name = f"{_meta(obj).get('namespace')}/{_meta(obj).get('name')}"
        for collection, credential, unique in creds:
            if unique and self.credential_owners.get(unique, name) != name:
                return error("credentials", f"{collection} {unique[1]!r} already belongs to KongConsumer "
                                            f"{self.credential_owners[unique]}")
        for collection, credential, unique in creds:
            consumer.setdefault(collection, []).append(credential)
            if unique:
                self.credential_owners[unique] = name
        self.consumers.append(consumer)
        self.memberships += [{"consumer": consumer["id"], "consumer_group": group["name"], "tags": consumer["tags"]}
                             for group in groups]
        self.bindings += [(key, tpl, {"consumer": consumer["id"]}) for key, tpl in plugins]

    def add_consumer_group(self, obj: dict) -> None:
        group, plugins, problem = _consumers.consumer_group(obj, self.consumer_groups, self.plugins, _tags)
        if problem:
            self.bad_groups[(_meta(obj).get("namespace") or "", _meta(obj).get("name"))] = f"{problem[0]}: {problem[1]}"
            return self.error("KongConsumerGroup", obj, *problem)
        self.consumer_groups[(_meta(obj).get("namespace") or "", _meta(obj).get("name"))] = group
        self.bindings += [(key, tpl, {"consumer_group": group["name"]}) for key, tpl in plugins]

    def _groups_of(self, obj: dict) -> list[dict]:
        """KongConsumer.consumerGroups: KongConsumerGroups of its namespace; a missing or left-out one
        leaves the consumer out (KIC keeps it without the group: its group's rate limit would not apply)."""
        ns = _meta(obj).get("namespace") or ""
        out = []
        for i, name in enumerate(obj.get("consumerGroups") or []):
            group = self.consumer_groups.get((ns, name))
            if (ns, name) in self.bad_groups:
                raise _Bad(f"consumerGroups[{i}]", f"KongConsumerGroup {ns}/{name} is invalid: {self.bad_groups[(ns, name)]}")
            if group is None:
                raise _Bad(f"consumerGroups[{i}]", self._missing("KongConsumerGroup", ns, name))
            out.append(group)
        return out

    def _backend(self, ingress: dict, svc_name: str, port, where: str) -> tuple[dict, dict]:
        ns = _meta(ingress).get("namespace", "default")
        svc = self.objects.services.get((ns, svc_name))
        if svc is None:
            raise _Bad(where + ".service.name", self._missing("Service", ns, svc_name))
        svc_port = _find_port(svc, port, where)
        port_key = port if port not in (None, "") else "implicitPort"
        upstream_name = f"{svc_name}.{ns}.{port_key}.svc"
        try:
            service = ann.service_fields(_meta(svc).get("annotations") or {})
            overrides = _upstreams.overrides(svc, self.objects)
            plugins = self.plugins.for_referrer(svc, "Service")
            service.update(self.upstream_tls(svc))
        except _Bad as bad:  # the Service's own annotations: name the Service, not the Ingress
            raise _Bad(where, f"Service {ns}/{svc_name}: {bad.field}: {bad.reason}") from None
        service = {"name": f"{ns}.{svc_name}.{port_key}", "host": upstream_name, "port": 80, "protocol": "http",
                   "path": "/", "connect_timeout": 60000, "read_timeout": 60000, "write_timeout": 60000,
                   "retries": 5, **service, "tags": _tags(svc, "Service")}
        upstream = {"name": upstream_name, "targets": self._targets(svc, svc_port), "tags": _tags(svc, "Service")}
        host_header = service.pop("host_header", None)
        if host_header:
            upstream["host_header"] = host_header
        upstream.update(overrides)
        return service, upstream, plugins

    def _targets(self, svc: dict, svc_port: dict) -> list[dict]:
        spec = svc.get("spec") or {}
        port = svc_port.get("port")
        if spec.get("type") == "ExternalName":
            return [{"target": f"{spec.get('externalName')}:{port}", "weight": 100}]
        if (_meta(svc).get("annotations") or {}).get(SERVICE_UPSTREAM) == "true" and spec.get("clusterIP"):
            return [{"target": f"{spec['clusterIP']}:{port}", "weight": 100}]
        return [{"target": t, "weight": 100} for t in _endpoint_targets(self.objects, svc, svc_port)]

    def _add_tls(self, ingress: dict) -> None:
        ns = _meta(ingress).get("namespace", "default")
        for i, tls in enumerate((ingress.get("spec") or {}).get("tls") or []):
            if tls.get("secretName"):  # without a Secret, the default certificate serves these hosts
                self.add_certificate(ingress, "Ingress", ns, tls["secretName"], tls.get("hosts") or [],
                                     f"spec.tls[{i}].secretName")

    def upstream_tls(self, svc: dict) -> dict:
        """`client_certificate` and `ca_certificates` of the Kong service from the Service's annotations."""
        fields, client_cert = _tls.service_tls(svc, self.ca_by_secret)
        if client_cert:
            ns = _meta(svc).get("namespace") or ""
            secret = self.objects.secrets.get((ns, client_cert))
            cert = _certificate(secret, ns, client_cert)  # Bad names the Secret
            key = f"{ns}/{client_cert}"
            self.certificates.setdefault(key, {**cert, "id": _tls.certificate_id(ns, client_cert), "snis": [],
                                               "tags": _tags(secret, "Secret")})
            fields["client_certificate"] = {"id": self.certificates[key]["id"]}
        return fields

    def add_certificate(self, owner: dict, kind: str, ns: str, secret_name: str, hosts: list, where: str) -> None:
        hosts = [h for h in hosts if h not in self.snis]
        secret = self.objects.secrets.get((ns, secret_name))
        try:
            cert = _certificate(secret, ns, secret_name)
        except _Bad as bad:  # the routes still work over plain HTTP, only this certificate is left out
            self.error(kind, owner, where, bad.reason)
            return
        key = f"{ns}/{secret_name}"
        entry = self.certificates.setdefault(key, {**cert, "id": _tls.certificate_id(ns, secret_name), "snis": [],
                                                   "tags": _tags(secret, "Secret")})
        entry["snis"].extend({"name": h} for h in hosts)
        self.snis.update(hosts)

    def snapshot(self) -> dict:
        services = sorted(self.services.values(), key=lambda s: s["name"])
        for service in services:
            service["routes"] = sorted(service.get("routes", []), key=lambda r: r["name"])
        return {
            "_format_version": "3.0",
            "services": services,
            "upstreams": sorted(self.upstreams.values(), key=lambda u: u["name"]),
            "certificates": [self.certificates[k] for k in sorted(self.certificates)],
            "ca_certificates": self.ca_certificates,
            "consumers": self.consumers,
            "consumer_groups": [self.consumer_groups[k] for k in sorted(self.consumer_groups)],
            "consumer_group_consumers": self.memberships,
            "plugins": _plugins.bind(self.bindings) + self.global_plugins,
        }


def _endpoint_targets(objects: Objects, svc: dict, svc_port: dict) -> list[str]:
    """Ready endpoints of the Service's EndpointSlices, on the slice port named as the Service port."""
    meta = _meta(svc)
    ns, name, port_name = meta.get("namespace", "default"), meta.get("name"), svc_port.get("name") or ""
    targets: set[str] = set()
    for (slice_ns, _), es in objects.endpoint_slices.items():
        labels = _meta(es).get("labels") or {}
        if slice_ns != ns or labels.get("kubernetes.io/service-name") != name:
            continue
        ports = [p.get("port") for p in es.get("ports") or [] if (p.get("name") or "") == port_name]
        for endpoint in es.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:  # unset means ready
                continue
            for address in endpoint.get("addresses") or []:
                host = f"[{address}]" if ":" in address else address
                targets.update(f"{host}:{p}" for p in ports if p)
    return sorted(targets)


def _certificate(secret: dict | None, ns: str, name: str) -> dict:
    if secret is None:
        raise _Bad("secretName", f"Secret {ns}/{name} not found")
    data = secret.get("data") or {}
    try:
        cert, key = (base64.b64decode(data[k], validate=True).decode() for k in ("tls.crt", "tls.key"))
    except KeyError as e:
        raise _Bad("secretName", f"Secret {ns}/{name} has no {e.args[0]}") from None
    except (binascii.Error, UnicodeDecodeError):
        raise _Bad("secretName", f"Secret {ns}/{name}: tls.crt / tls.key is not base64 PEM") from None
    return {"cert": cert, "key": key}


def _ingress_routes(ingress: dict):
    """(service, port, field, route) for every rule path and the default backend."""
    meta = _meta(ingress)
    ns, name = meta.get("namespace", "default"), meta.get("name")
    spec = ingress.get("spec") or {}
    fields = ann.route_fields(meta.get("annotations") or {})
    aliases = ann.host_aliases(meta.get("annotations") or {})
    tags = _tags(ingress, "Ingress")
    out = []
    for i, rule in enumerate(spec.get("rules") or []):
        host = rule.get("host") or ""
        for j, path in enumerate(((rule.get("http") or {}).get("paths")) or []):
            where = f"spec.rules[{i}].http.paths[{j}]"
            svc, port = _backend_ref(path.get("backend"), where + ".backend")
            paths = ann.kong_paths(path.get("path") or "", path.get("pathType") or "ImplementationSpecific", where)
            route = {"name": _route_name(ns, name, svc, host, port), "paths": paths, **fields, "tags": tags}
            if host:  # KIC adds the aliases to routes that have a host
                route["hosts"] = [host, *(a for a in aliases if a != host)]
            out.append((svc, port, where + ".backend", route))
    if spec.get("defaultBackend"):
        svc, port = _backend_ref(spec["defaultBackend"], "spec.defaultBackend")
        route = {"name": f"{ns}.{name}.{svc}.{port}", "paths": ["/"], **fields, "tags": tags}
        out.append((svc, port, "spec.defaultBackend", route))
    return out


def _backend_ref(backend: dict | None, where: str):
    svc = (backend or {}).get("service")
    if not svc or not svc.get("name"):
        raise _Bad(where + ".service", "only Service backends are supported")
    port = svc.get("port") or {}
    return svc["name"], port.get("number") or port.get("name") or ""


def _route_name(ns: str, ingress: str, svc: str, host: str, port) -> str:
    return f"{ns}.{ingress}.{svc}.{host.replace('*', '_') or '_'}.{port}"


def _merge_route(routes: list[dict], route: dict) -> None:
    """Paths of the same Ingress, host, Service and port share one route, as KIC combines them."""
    for existing in routes:
        if existing["name"] == route["name"]:
            existing["paths"].extend(p for p in route["paths"] if p not in existing["paths"])
            return
    routes.append(route)
