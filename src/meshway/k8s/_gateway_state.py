"""The Gateway API part of the snapshot under construction (a mixin of `_translate._State`):
Gateways' certificates and attached-route counts, and each route kind staged whole, with the
per-parent results `_status` writes back."""
from __future__ import annotations

from meshway.k8s import _gateway, _grants, _grpcroute, _httproute, _l4route
from meshway.k8s._annotations import Bad as _Bad
from meshway.k8s._common import find_port as _find_port, meta as _meta, tags as _tags


class GatewayState:
    """Gateways and their routes, for `_translate._State` (which holds the snapshot and its helpers)."""

    ROUTE_TRANSLATORS = {"HTTPRoute": _httproute.translate_route, "GRPCRoute": _grpcroute.translate_route,
                         "TCPRoute": _l4route.translate_tcp_route, "UDPRoute": _l4route.translate_udp_route,
                         "TLSRoute": _l4route.translate_tls_route}
    ROUTE_KINDS = tuple(ROUTE_TRANSLATORS)

    def add_gateway(self, gateway: dict) -> None:
        """Certificates of the HTTPS listeners and of the TLS listeners in Terminate mode (their first
        certificateRef: a Secret of the Gateway's namespace, or of another one that grants it), for
        the listener's hostname; attached-route counts start at 0."""
        ns, name = _meta(gateway).get("namespace", ""), _meta(gateway).get("name")
        listeners = (gateway.get("spec") or {}).get("listeners") or []
        self.gateway_status[("Gateway", ns, name)] = {"attached": {lst.get("name"): 0 for lst in listeners}}
        for i, lst in enumerate(listeners):
            refs = (lst.get("tls") or {}).get("certificateRefs") or []
            terminated = lst.get("protocol") == "HTTPS" or (
                lst.get("protocol") == "TLS" and (lst.get("tls") or {}).get("mode", "Terminate") == "Terminate")
            if not terminated or not refs:
                continue
            hosts = [lst["hostname"]] if lst.get("hostname") else []
            where = f"spec.listeners[{i}].tls.certificateRefs[0]"
            secret_ns, secret = refs[0].get("namespace") or ns, refs[0].get("name")
            if secret_ns != ns and not _grants.permitted(self.objects, "Gateway", ns, "Secret", secret_ns, secret):
                self.error("Gateway", gateway, where, f"no ReferenceGrant in namespace {secret_ns!r} lets Gateway "
                                                      f"{ns}/{name} use Secret {secret}")
                continue
            self.add_certificate(gateway, "Gateway", secret_ns, secret, hosts, where)

    def add_gateway_route(self, route: dict, gateways: dict, kind: str) -> None:
        """An HTTPRoute, GRPCRoute, TCPRoute or TLSRoute, staged whole; its per-parent results kept
        for the status."""
        ns, name = _meta(route).get("namespace", ""), _meta(route).get("name")
        listeners, parents = _gateway.attach(route, gateways, kind, self.objects.namespaces)
        if not parents:
            return  # no parent of ours: another controller's route
        status = self.gateway_status[(kind, ns, name)] = {"parents": parents, "unresolved": []}
        if not listeners:
            return
        self._unresolved = status["unresolved"]
        try:
            staged = self.ROUTE_TRANSLATORS[kind](self, route, listeners, _tags(route, kind))
        except _Bad as bad:
            status["error"] = f"{bad.field}: {bad.reason}"
            return self.error(kind, route, bad.field, bad.reason)
        for service, upstream, kong_route, plugins in staged:
            if service.pop("_terminate", False) and service["protocol"] != "tcp":  # a stream has no 500
                self.bindings.append((("HTTPRoute500", service["name"]), {
                    "name": "request-termination", "tags": service["tags"],
                    "config": {"status_code": 500, "message": "no existing backendRef provided"}},
                    {"service": service["name"]}))
            self.commit_route(service, upstream, kong_route, plugins, service.pop("_plugins", []))
        for parent in parents:  # each parent counts the route on its own listeners
            counts = self.gateway_status[("Gateway", parent["namespace"], parent["ref"].get("name"))]["attached"]
            for name in parent["listeners"]:
                counts[name] = counts.get(name, 0) + 1

    def unresolved(self, where: str, reason: str, message: str) -> None:
        self._unresolved.append({"field": where, "reason": reason, "message": message})

    def service_targets(self, ns: str, name: str, port, where: str) -> list[str]:
        svc = self.objects.services.get((ns, name))
        if svc is None:
            raise _Bad(where, self._missing("Service", ns, name))
        return [t["target"] for t in self._targets(svc, _find_port(svc, port, where))]

