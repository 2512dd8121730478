"""A mesh gateway's routes, as a declarative document its (DB-less) proxy runs.

Rules (Consul's mesh gateway, `agent/xds/listeners.go` `makeMeshGatewayListener`):
- A gateway never decrypts: every route is `tls_passthrough`, matched on the ClientHello's SNI
  alone; the client's TLS goes through untouched to the next hop, which terminates it.
- Its own zone's services: `<service>.<mesh>.<datacenter>.internal.<trust-domain>` (and any
  subset `*.<service>...`) go to the service's instances (the inbounds of the zone's data planes,
  Consul's "local service clusters"). When the service's `service-resolver` defines `Subsets`,
  each subset's name `<subset>.<service>...` goes only to the instances its `Filter` selects
  (Consul's subset clusters; an empty filter selects all), and no other subset name is routed.
  An instance is seen as Consul's health query sees it (`instance_view`): `Service.Meta` is the
  inbound's tags (Kuma's `version: v1`), `Service.Tags` their values, `Service.ID` and
  `Node.Node` the data plane's name, `Node.Meta` its labels.
- Another zone's names, `*.<datacenter>.internal.<trust-domain>`, go to that zone's gateways
  at their WAN addresses (Consul's "remote datacenter clusters"), round robin.
- Anything else matches no route and is closed (Consul's gateway has no default chain either).
The mesh (Kuma's) takes the SNI's namespace label, so one gateway serves every mesh of its zone.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from ._sni import service_sni

# The trust domain of meshway's SNI names: the mesh hop's own suffix (`sidecar.mesh.meshway`),
# so a receiving sidecar recognises a zone hop as a mesh connection by the same test.
TRUST_DOMAIN = "mesh.meshway"
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def sni_label_ok(name: str) -> bool:
    """Can `name` be one label of an SNI name (a DNS label: Kong's and TLS's rule)?"""
    return bool(_LABEL.match(name))


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def local_instances(mesh_resources: Mapping[str, Any]) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """(mesh, service) -> the live inbounds (address, port) of this zone's data planes."""
    from meshway.mesh._resources import inbounds  # the mesh's reading of a Dataplane

    out: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for dp in mesh_resources.get("dataplanes") or ():
        for inbound in inbounds(dp):
            if inbound.get("state") == "Ignored" or (inbound.get("health") or {}).get("ready") is False:
                continue
            if inbound["service"]:
                out.setdefault((dp.get("mesh") or "default", inbound["service"]), []).append(
                    (inbound["address"], int(inbound["port"])))
    return out


def instance_view(dp: Mapping[str, Any], inbound: Mapping[str, Any], datacenter: str) -> dict[str, Any]:
    """An instance as a subset `Filter` sees it (Consul's `ServiceEntry` fields that apply)."""
    tags = dict(inbound.get("tags") or {})
    return {"Service": {"ID": dp.get("name", ""), "Service": inbound["service"], "Meta": tags,
                        "Tags": sorted(set(tags.values())), "Address": inbound["address"], "Port": inbound["port"]},
            "Node": {"Node": dp.get("name", ""), "Datacenter": datacenter, "Meta": dict(dp.get("labels") or {})}}


def local_subsets(mesh_resources: Mapping[str, Any], resolvers: Mapping[str, Mapping[str, Any]],
                  datacenter: str) -> dict[tuple[str, str], dict[str, list[tuple[str, int]]]]:
    """(mesh, service) -> {subset: its live instances} for the services whose resolver has Subsets."""
    from meshway.mesh._resources import inbounds

    from ._filter import FilterError, compile_filter

    filters: dict[str, dict[str, Any]] = {}
    for service, entry in resolvers.items():
        for name, subset in (entry.get("Subsets") or {}).items():
            try:
                filters.setdefault(service, {})[name] = compile_filter(subset["Filter"]) if subset.get("Filter") else None
            except FilterError:  # checked when written; a stored one that does not parse selects nothing
                filters.setdefault(service, {})[name] = lambda view: False
    out: dict[tuple[str, str], dict[str, list[tuple[str, int]]]] = {}
    for dp in mesh_resources.get("dataplanes") or ():
        for inbound in inbounds(dp):
            if inbound["service"] not in filters or inbound.get("state") == "Ignored" or \
                    (inbound.get("health") or {}).get("ready") is False:
                continue
            view = instance_view(dp, inbound, datacenter)
            subsets = out.setdefault((dp.get("mesh") or "default", inbound["service"]),
                                     {name: [] for name in filters[inbound["service"]]})
            for name, predicate in filters[inbound["service"]].items():
                if predicate is None or predicate(view):
                    subsets[name].append((inbound["address"], int(inbound["port"])))
    return out


def _passthrough(name: str, snis: list[str], upstream: str) -> dict[str, Any]:
    return {"name": name, "host": upstream, "port": 8443, "protocol": "tcp",
            "routes": [{"name": name, "protocols": ["tls_passthrough"], "snis": snis}]}


def _upstream(name: str, endpoints: Iterable[tuple[str, int]]) -> dict[str, Any]:
    return {"name": name, "targets": [{"target": _hostport(ip, port)} for ip, port in sorted(set(endpoints))]}


def gateway_document(datacenter: str, local: Mapping[tuple[str, str], list[tuple[str, int]]],
                     remote_gateways: Mapping[str, list[tuple[str, int]]],
                     trust_domain: str = TRUST_DOMAIN,
                     subsets: Mapping[tuple[str, str], Mapping[str, list[tuple[str, int]]]] | None = None,
                     ) -> dict[str, Any]:
    """The declarative document of one gateway of `datacenter`."""
    services: list[dict[str, Any]] = []
    upstreams: list[dict[str, Any]] = []
    for (mesh, service), endpoints in sorted(local.items()):
        if not (endpoints and sni_label_ok(service) and sni_label_ok(mesh)):
            continue  # a name that cannot be an SNI label cannot be asked for
        sni = service_sni(service, datacenter, trust_domain, namespace=mesh)
        ups = f"{service}.{mesh}.{datacenter}.local-service"
        upstreams.append(_upstream(ups, endpoints))
        own = (subsets or {}).get((mesh, service))
        services.append(_passthrough(f"local-{mesh}-{service}", [sni] if own else [sni, f"*.{sni}"], ups))
        for name, members in sorted((own or {}).items()):
            if not sni_label_ok(name):
                continue
            ups = f"{name}.{service}.{mesh}.{datacenter}.local-subset"
            upstreams.append(_upstream(ups, members))
            services.append(_passthrough(f"local-{mesh}-{service}-{name}", [f"{name}.{sni}"], ups))
    for dc, gateways in sorted(remote_gateways.items()):
        if dc == datacenter or not gateways or not sni_label_ok(dc):
            continue
        ups = f"{dc}.remote-gateways"
        upstreams.append(_upstream(ups, gateways))
        services.append(_passthrough(f"remote-{dc}", [f"*.{dc}.internal.{trust_domain}"], ups))
    return {"_format_version": "3.0", "services": services, "upstreams": upstreams}
