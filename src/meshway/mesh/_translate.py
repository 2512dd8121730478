"""One data plane's view of the mesh: the snapshot's `mesh_resources` as routes its proxy runs.

A `meshway dp run` data plane receives the control plane's whole snapshot and compiles, from
its `mesh_resources` section, the stream routes of its own listeners (validated through
`parse_declarative`, so the proxy gets entities of the usual shape):
- **own inbounds**: a connection whose original destination is `address:port` of one of its
  inbounds goes to `serviceAddress:servicePort` (the app), after mesh termination;
- **other data planes' inbounds** (same mesh, not Ignored): a connection to `address:port`
  goes there, upgraded to mesh mutual TLS (the `mesh` section lists them as endpoints);
- **VIPs** (`<service>.mesh`): a connection to `VIP:80` is balanced over every inbound of the
  service (round robin);
- **HTTP inbounds**: our own inbound tagged `kuma.io/protocol: http` is served, once the mesh hop
  is terminated and permitted, by the HTTP/1.1 server (`inbound-N-http`: per-request access log,
  502/503/504 as HTTP answers), as Kuma's inbound HTTP listener;
- **HTTP**: a destination whose service is tagged `kuma.io/protocol: http` takes the HTTP path
  (the stream listener hands the connection to the HTTP/1.1 server: routes on the original
  destination, retries, per-request access log), the hop still mutual TLS;
- **outbounds** (without transparent proxying): `address:port` (default 127.0.0.1) of each
  `outbound[]` is balanced over the inbounds of its `kuma.io/service`;
- **anything else** goes, unchanged and in the clear, to where the client meant to go (Kuma's
  passthrough; the Mesh's `networking.outbound.passthrough: false` turns it off).
The gateway's own Kong entities are not served by a mesh data plane.
"""
from __future__ import annotations

from typing import Any

from ._permissions import permissions_section, split_reachable
from ._resources import PROTOCOL_TAG, SERVICE_TAG, inbounds
from ._vips import VIP_PORT

# The stream proxy's sentinel host: dial the connection's original destination (Envoy's ORIGINAL_DST).
ORIGINAL_DESTINATION = "original-destination.meshway.invalid"
# With transparent proxying, hops to our own app leave from here: the rules let 127.0.0.6 over
# `lo` through (Kuma's and Istio's convention) instead of redirecting it to the inbound port again.
INBOUND_SOURCE = "127.0.0.6"

OUTBOUND_DEFAULT_ADDRESS = "127.0.0.1"


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _live_inbounds(dp: dict) -> list[dict]:
    return [i for i in inbounds(dp) if i.get("state") != "Ignored" and (i.get("health") or {}).get("ready") is not False]


def _upstream(name: str, endpoints: list[tuple[str, int]]) -> dict:
    return {"name": name, "targets": [{"target": _hostport(ip, port)} for ip, port in sorted(set(endpoints))]}


def _route(name: str, ip: str, port: int) -> dict:
    return {"name": name, "protocols": ["tcp"], "destinations": [{"ip": ip, "port": port}]}


def _http_route(name: str, ip: str, port: int) -> dict:
    """Matched on the original destination, whatever the Host header says; the Host is kept.
    Kong's schema refuses `destinations` on an http route (nginx cannot match them); meshway's
    router can, so they are set after validation (`_HTTP_DESTINATIONS`)."""
    _HTTP_DESTINATIONS[name] = [{"ip": ip, "port": port}]
    return {"name": name, "protocols": ["http"], "paths": ["/"], "preserve_host": True, "strip_path": False}


_HTTP_DESTINATIONS: dict[str, list[dict]] = {}


def declarative_view(section: dict[str, Any], mesh: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(declarative document, `mesh` section) for data plane `mesh/name`."""
    _HTTP_DESTINATIONS.clear()
    dataplanes = [d for d in section.get("dataplanes") or () if d.get("mesh") == mesh]
    me = next((d for d in dataplanes if d["name"] == name), None)
    others = [d for d in dataplanes if d["name"] != name]
    services: list[dict] = []
    upstreams: list[dict] = []
    by_service: dict[str, list[tuple[str, int]]] = {}
    http_services: set[str] = set()
    for dp in others:
        for inbound in _live_inbounds(dp):
            by_service.setdefault(inbound["service"], []).append((inbound["address"], inbound["port"]))
            if (inbound.get("tags") or {}).get(PROTOCOL_TAG) == "http":
                http_services.add(inbound["service"])
    by_service, unreachable = split_reachable(section, mesh, me, others, by_service)  # reachable services
    http_inbound: list[str] = []
    named: dict[str, list[str]] = {}  # route name -> [direction, service], for the per-service metrics
    if me is not None:
        for i, inbound in enumerate(inbounds(me)):
            named[f"inbound-{i}"] = named[f"inbound-{i}-http"] = ["inbound", inbound["service"]]
            target = _hostport(inbound["serviceAddress"], inbound["servicePort"])
            services.append({"name": f"inbound-{i}", "url": f"tcp://{target}",
                             "routes": [_route(f"inbound-{i}", inbound["address"], inbound["port"])]})
            if (inbound.get("tags") or {}).get(PROTOCOL_TAG) == "http":  # the receiving side's HTTP path
                services.append({"name": f"inbound-{i}-http", "url": f"http://{target}",
                                 "routes": [_http_route(f"inbound-{i}-http", inbound["address"], inbound["port"])]})
                http_inbound.append(_hostport(inbound["address"], inbound["port"]))
    seen: set[tuple[str, int]] = {(i["address"], i["port"]) for i in inbounds(me)} if me else set()
    http: list[tuple[str, int]] = []
    for service, endpoints in sorted(by_service.items()):
        for ip, port in sorted(set(endpoints)):
            if (ip, port) in seen:
                continue
            seen.add((ip, port))
            name = f"outbound-{ip}-{port}"
            named[name] = named[f"{name}-http"] = ["outbound", service]
            routes = [_route(name, ip, port)]
            if service in http_services:
                routes.append(_http_route(f"{name}-http", ip, port))
                http.append((ip, port))
            services.append({"name": name, "url": f"tcp://{_hostport(ip, port)}", "routes": routes})
            if service in http_services:  # the HTTP path: same destination, an http service
                services[-1] = {**services[-1], "routes": routes[:1]}
                services.append({"name": f"{name}-http", "url": f"http://{_hostport(ip, port)}", "routes": routes[1:]})
    for service, vip in sorted((section.get("vips") or {}).get(mesh, {}).items()):
        if service not in by_service:
            continue
        upstreams.append(_upstream(f"{service}.{mesh}.vip", by_service[service]))
        named[f"vip-{service}"] = named[f"vip-{service}-http"] = ["outbound", service]
        services.append({"name": f"vip-{service}", "host": f"{service}.{mesh}.vip", "port": VIP_PORT, "protocol": "tcp",
                         "routes": [_route(f"vip-{service}", vip, VIP_PORT)]})
        if service in http_services:
            services.append({"name": f"vip-{service}-http", "host": f"{service}.{mesh}.vip", "port": VIP_PORT,
                             "protocol": "http", "routes": [_http_route(f"vip-{service}-http", vip, VIP_PORT)]})
            http.append((vip, VIP_PORT))
    for i, outbound in enumerate(((me or {}).get("networking") or {}).get("outbound") or ()):
        service = (outbound.get("tags") or {}).get(SERVICE_TAG) or (outbound.get("backendRef") or {}).get("name")
        if not service or service not in by_service:
            continue
        ups = f"{service}.{mesh}.outbound-{i}"
        named[f"outbound-{i}"] = ["outbound", service]
        upstreams.append(_upstream(ups, by_service[service]))
        services.append({"name": f"outbound-{i}", "host": ups, "port": outbound["port"], "protocol": "tcp",
                         "routes": [_route(f"outbound-{i}", outbound.get("address") or OUTBOUND_DEFAULT_ADDRESS,
                                           outbound["port"])]})
    if _passthrough(section, mesh):
        services.append({"name": "passthrough", "host": ORIGINAL_DESTINATION, "port": 1, "protocol": "tcp",
                         "routes": [{"name": "passthrough", "protocols": ["tcp"],
                                     "destinations": [{"ip": "0.0.0.0/0"}, {"ip": "::/0"}]}]})
    document = {"_format_version": "3.0", "services": services, "upstreams": upstreams}
    mesh_section = {
        "endpoints": [{"node_id": f"dataplane:{mesh}/{d['name']}",
                       "inbound": [_hostport(i["address"], i["port"]) for i in _live_inbounds(d)]}
                      for d in others if _live_inbounds(d)],
        "inbound": [_hostport(i["address"], i["port"]) for i in inbounds(me)] if me else [],
    }
    if ((me or {}).get("networking") or {}).get("transparentProxying"):
        mesh_section["inbound_source"] = INBOUND_SOURCE
    if http:
        mesh_section["http"] = [_hostport(ip, port) for ip, port in http]
    if http_inbound:
        mesh_section["http_inbound"] = http_inbound
    mesh_section.update(_metrics_section(mesh, me, named))
    mesh_section.update(permissions_section(section, mesh, me))  # mTLS on: STRICT/PERMISSIVE, permissions
    mesh_section.update(unreachable)
    return document, mesh_section


def _metrics_section(mesh: str, me: dict | None, named: dict[str, list[str]]) -> dict[str, Any]:
    """What the per-service metrics (`_metrics`) need: our service, our inbounds' services, and
    the service each route of this configuration calls."""
    if me is None:
        return {}
    own = inbounds(me)
    gateway = (((me.get("networking") or {}).get("gateway") or {}).get("tags") or {}).get(SERVICE_TAG)
    return {"metrics": {"mesh": mesh, "self_service": own[0]["service"] if own else gateway or me["name"],
                        "inbound_services": {_hostport(i["address"], i["port"]): i["service"] for i in own},
                        "routes": named}}


def _passthrough(section: dict[str, Any], mesh: str) -> bool:
    """Kuma's `Mesh.networking.outbound.passthrough` (default true)."""
    spec = next((m for m in section.get("meshes") or () if m.get("name") == mesh), {})
    return ((spec.get("networking") or {}).get("outbound") or {}).get("passthrough", True) is not False


def dataplane_snapshot(snapshot: dict[str, Any], mesh: str, name: str) -> dict[str, Any]:
    """The normalized snapshot this data plane's workers compile (docs/snapshot.md shape)."""
    from meshway.model import parse_declarative

    section = snapshot.get("mesh_resources") or {}
    if snapshot.get("config_entries"):  # Consul's service-intentions, on the same permissions (meshway.zones)
        from meshway.zones._intentions import with_intentions

        section = with_intentions(section, snapshot["config_entries"])
    document, mesh_section = declarative_view(section, mesh, name)
    out = parse_declarative(document)
    for route in out["routes"]:
        if route["name"] in _HTTP_DESTINATIONS:
            route["destinations"] = _HTTP_DESTINATIONS[route["name"]]
    hybrid = (snapshot.get("mesh") or {}).get("endpoints") or []
    out["mesh"] = {**mesh_section, "endpoints": [*hybrid, *mesh_section["endpoints"]]}
    out["mesh_resources"] = section
    out["config_entries"] = snapshot.get("config_entries") or []  # the zone's config entries (meshway.zones)
    if snapshot.get("zones"):  # calls to other zones through mesh gateways, their trust (meshway.zones)
        from meshway.zones._dpview import apply_zones

        out["zones"] = snapshot["zones"]
        apply_zones(snapshot, out, mesh, name)
    return out


def registered(snapshot: dict[str, Any], mesh: str, name: str) -> bool:
    """Whether this data plane's own Dataplane is in the snapshot (its inbounds are served)."""
    return any(d.get("mesh") == mesh and d.get("name") == name
               for d in (snapshot.get("mesh_resources") or {}).get("dataplanes") or ())
