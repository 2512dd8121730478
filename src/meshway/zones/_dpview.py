"""A data plane's calls to services in other zones (Consul's discovery chain, applied to outbounds).

Rules, per `outbound[]` of the data plane (Kuma's outbound, the document's upstream on 9091):
- The call resolves with the zone's config entries (`_resolve`): to this zone by default; a
  resolver's `Redirect` or a `Failover` (when no instance of the primary target is left) may send
  it to another datacenter.
- To another datacenter, the hop is mutual TLS from this sidecar to the target's sidecar, with
  Consul's SNI (`<service>.<mesh>.<dc>.internal.mesh.meshway`) and the target's SPIFFE id
  required of the certificate that answers (`zone_hops`, checked by the proxy after the
  handshake). It is dialled, by the gateway mode: `local`, this zone's gateways (LAN); `remote`,
  the target zone's gateways (WAN); `none` needs a flat network meshway does not know of, so the
  call fails with that reason.
- A call that resolves nowhere (no instance, no failover) gets a route to an upstream without
  targets, named after the reason, so the sidecar's log says why (`no healthy target`).
- Every data plane of a federated zone trusts the other zones' CA certificates of its mesh, so a
  caller from another zone is verified (and then permitted or not by the mesh's permissions).
"""
from __future__ import annotations

import logging
from typing import Any

from ._catalog import local_gateways, remote_zones, split
from ._gateway import TRUST_DOMAIN, local_instances, sni_label_ok
from ._intentions import matching
from ._resolve import Entries, ResolveError, Target, resolve
from ._sni import service_sni

VIP_PORT = 80  # meshway.mesh._vips.VIP_PORT (Kuma's serviceVipPort)

SERVICE_TAG = "kuma.io/service"
log = logging.getLogger("meshway.zones")


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_identity(mesh: str, service: str) -> str:
    """The SPIFFE id a data plane of `service` presents (see meshway.mesh._ca.service_spiffe_id)."""
    return f"spiffe://meshway/mesh/{mesh}/service/{service}"


class _Zones:
    def __init__(self, snapshot: dict[str, Any], mesh: str) -> None:
        zones = snapshot.get("zones") or {}
        self.datacenter = zones.get("datacenter") or "dc1"
        self.mesh = mesh
        self.local = local_instances(snapshot.get("mesh_resources") or {})
        self.remote = remote_zones(snapshot)
        self.gateways = [split(g["LAN"]) for g in local_gateways(snapshot)]

    def healthy(self, target: Target) -> int:
        if target.datacenter == self.datacenter:
            return len(self.local.get((self.mesh, target.service)) or ())
        zone = self.remote.get(target.datacenter) or {}
        known = target.service in ((zone.get("services") or {}).get(self.mesh) or ())
        return 1 if known and zone.get("gateways") else 0

    def hops(self, target: Target, mode: str) -> tuple[list[tuple[str, int]], str]:
        """(endpoints to dial, reason when there are none) for a target in another zone."""
        if mode == "local":
            return self.gateways, f"no mesh gateway registered in datacenter {self.datacenter}"
        if mode == "remote":
            gateways = [split(g["WAN"]) for g in (self.remote.get(target.datacenter) or {}).get("gateways") or ()]
            return gateways, f"no mesh gateway known in datacenter {target.datacenter}"
        return [], (f"{target.service} is in datacenter {target.datacenter}: set MeshGateway mode local or "
                    "remote (proxy-defaults or service-defaults) to reach it through mesh gateways")


def _outbounds(me: dict[str, Any]) -> list[tuple[int, dict[str, Any], str]]:
    out = []
    for i, outbound in enumerate(((me.get("networking") or {}).get("outbound")) or ()):
        service = (outbound.get("tags") or {}).get(SERVICE_TAG) or (outbound.get("backendRef") or {}).get("name")
        if service:
            out.append((i, outbound, service))
    return out


def _reason_name(text: str) -> str:
    """An upstream name (a hostname: labels of at most 63 characters) that says why a call has
    nowhere to go."""
    words = [w for w in "".join(c if c.isalnum() else "-" for c in text.lower()).split("-") if w]
    labels: list[str] = []
    for word in words:
        word = word[:63]
        if labels and len(labels[-1]) + 1 + len(word) <= 63:
            labels[-1] += "-" + word
        else:
            labels.append(word)
    return ".".join([*labels, "unresolved"])[:240]


def apply_zones(snapshot: dict[str, Any], out: dict[str, Any], mesh: str, name: str) -> None:
    """Rewrite data plane `mesh/name`'s compiled view (`out`, `dataplane_snapshot`'s result) for
    calls that leave the zone; add the other zones' trust. Nothing changes without zones."""
    zones = snapshot.get("zones") or {}
    section = snapshot.get("mesh_resources") or {}
    me = next((d for d in section.get("dataplanes") or () if d.get("mesh") == mesh and d.get("name") == name), None)
    if not zones or me is None:
        return
    view = _Zones(snapshot, mesh)
    _add_trust(out, view, mesh)
    entries = Entries(snapshot.get("config_entries") or [])
    caller = next((s for s in ((i.get("tags") or {}).get(SERVICE_TAG) for i in
                               (me.get("networking") or {}).get("inbound") or ()) if s), "")
    hops: dict[str, dict[str, str]] = {}
    calls = [(f"outbound-{i}", outbound.get("address") or "127.0.0.1", int(outbound["port"]), service)
             for i, outbound, service in _outbounds(me)]
    # transparent proxying's `<service>.mesh`: VIPs of services other zones report too (Kuma gives
    # zone-ingress services VIPs in every zone); the call resolves as an outbound's does
    calls += [(f"vip-{service}", vip, VIP_PORT, service)
              for service, vip in sorted(((section.get("vips") or {}).get(mesh) or {}).items())]
    for label, address, port, service in calls:
        try:
            hop = _route_call(out, view, entries, mesh, caller, label, (address, port), service)
        except Exception as e:  # one odd outbound must not cost the data plane its whole config
            log.warning("%s (%s): left to the mesh: %s", label, service, e)
            continue
        if hop is not None:
            hops[label] = hop
            if any(s.get("name") == f"{label}-http" for s in out.get("services") or ()):
                hops[f"{label}-http"] = hop  # the same hop from the HTTP path
    if hops:
        out.setdefault("mesh", {})["zone_hops"] = hops


def speaks_http(entries: Entries, service: str) -> bool:
    """Consul's protocol of a service: its service-defaults `Protocol`, else proxy-defaults'
    `config { protocol }`; `http` takes the HTTP path across zones (HTTP/1.1 between sidecars)."""
    protocol = entries.get("service-defaults", service).get("Protocol") or \
        (entries.get("proxy-defaults", "global").get("Config") or {}).get("protocol") or "tcp"
    return str(protocol).lower() == "http"


def _route_call(out: dict[str, Any], view: _Zones, entries: Entries, mesh: str, caller: str, label: str,
                listener: tuple[str, int], service: str) -> dict[str, str] | None:
    """Rewrite call `label` (an outbound or a VIP, listening on `listener`) when it leaves the zone or
    has nowhere to go; its zone hop, if any."""
    try:
        route = resolve(service, local_dc=view.datacenter, entries=entries, healthy=view.healthy,
                        trust_domain=TRUST_DOMAIN, caller=caller)
    except ResolveError as e:
        _replace(out, label, listener, [], _reason_name(str(e)))
        return None
    target = route.target
    if target.datacenter == view.datacenter and not route.error:
        return None  # the mesh's own outbound (built by meshway.mesh) serves it
    # Leaving the zone, or nowhere to go: the mesh's "not reachable" (derived from the local
    # permissions, which cannot name a service that does not run here) does not apply; the
    # target's sidecar decides by its zone's permissions.
    _reachable(out, listener)
    endpoints, reason = ([], route.error) if route.error else view.hops(target, route.mode)
    if not endpoints or not sni_label_ok(target.service):
        _replace(out, label, listener, [], _reason_name(reason or f"{target.service} is not a valid SNI label"))
        return None
    _replace(out, label, listener, endpoints, f"{target.service}.{mesh}.{target.datacenter}.{label}",
             http=speaks_http(entries, target.service))
    metrics = (out.get("mesh") or {}).get("metrics")
    if metrics is not None:  # per-service metrics name the called service on both routes
        metrics.setdefault("routes", {}).update({label: ["outbound", service], f"{label}-http": ["outbound", service]})
    return {"sni": service_sni(target.service, target.datacenter, TRUST_DOMAIN, subset=target.subset, namespace=mesh),
            "identity": service_identity(mesh, target.service)}


def _reachable(out: dict[str, Any], listener: tuple[str, int]) -> None:
    unreachable = (out.get("mesh") or {}).get("unreachable")
    if unreachable:
        unreachable.pop(_hostport(*listener), None)


def _add_trust(out: dict[str, Any], view: _Zones, mesh: str) -> None:
    """The other zones' CAs of this mesh, and their node CAs (which sign data planes' certificates
    where the mesh's mTLS is off): a zone hop is mutual TLS whatever the meshes' mTLS says."""
    mesh_section = out.setdefault("mesh", {})
    extra = [pem for zone in view.remote.values()
             for pem in [*((zone.get("trust") or {}).get(mesh) or ()), *([zone["node_ca"]] if zone.get("node_ca") else [])]]
    if extra:
        mesh_section["trust"] = list(dict.fromkeys([*(mesh_section.get("trust") or ()), *extra]))


def _replace(out: dict[str, Any], label: str, listener: tuple[str, int], endpoints: list[tuple[str, int]],
             upstream: str, *, http: bool = False) -> None:
    """Make call `label` (its service, route and upstream) go to `endpoints` through `upstream`; an
    HTTP service also gets `<label>-http`, which the stream listener hands its connections to (the
    HTTP path: retries, per-request access log, answers as HTTP)."""
    from meshway.model import parse_declarative

    # without endpoints the service is named after the reason: the proxy logs "service <name>
    # has no healthy target" for each call, which then says why
    name = label if endpoints else f"{label}.{upstream.removesuffix('.unresolved')}"[:250]
    address, port = listener
    destination = {"ip": address, "port": port}
    services = [{"name": name, "host": upstream, "port": port, "protocol": "tcp",
                 "routes": [{"name": label, "protocols": ["tcp"], "destinations": [destination]}]}]
    if http and endpoints:
        services.append({"name": f"{label}-http", "host": upstream, "port": port, "protocol": "http",
                         "routes": [{"name": f"{label}-http", "protocols": ["http"], "paths": ["/"],
                                     "preserve_host": True, "strip_path": False}]})
    document = {"_format_version": "3.0", "services": services,
                "upstreams": [{"name": upstream, "targets": [{"target": _hostport(ip, p)} for ip, p in endpoints]}]}
    parsed = parse_declarative(document)
    for route in parsed.get("routes") or ():
        if route["name"] == f"{label}-http":  # as meshway.mesh's HTTP routes: on the original destination
            route["destinations"] = [destination]
    _drop(out, label)
    _drop(out, f"{label}-http")
    for key in ("services", "routes", "upstreams", "targets"):
        out.setdefault(key, []).extend(parsed.get(key) or [])
    mesh = out.setdefault("mesh", {})
    listed = [e for e in mesh.get("http") or () if e != _hostport(address, port)]
    mesh["http"] = [*listed, _hostport(address, port)] if http and endpoints else listed


def _drop(out: dict[str, Any], label: str) -> None:
    """Remove the mesh's own `outbound-<i>` (service, route, upstream and targets), if any."""
    gone = {s["id"] for s in out.get("services") or () if s.get("name") == label}
    hosts = {s["host"] for s in out.get("services") or () if s["id"] in gone}
    out["services"] = [s for s in out.get("services") or () if s["id"] not in gone]
    out["routes"] = [r for r in out.get("routes") or () if (r.get("service") or {}).get("id") not in gone]
    ups = {u["id"] for u in out.get("upstreams") or () if u.get("name") in hosts}
    out["upstreams"] = [u for u in out.get("upstreams") or () if u["id"] not in ups]
    out["targets"] = [t for t in out.get("targets") or () if (t.get("upstream") or {}).get("id") not in ups]


def explain_call(snapshot: dict[str, Any], mesh: str, source: str, service: str) -> tuple[list[str], bool | None]:
    """`meshway explain SOURCE SERVICE` for a service that may be in another zone: (lines, routed);
    routed None when no zone runs it and no resolver names it (the caller's own error stands)."""
    view = _Zones(snapshot, mesh)
    entries = Entries(snapshot.get("config_entries") or [])
    known = entries.get("service-resolver", service) or any(
        service in ((z.get("services") or {}).get(mesh) or ()) for z in view.remote.values())
    if not known:
        return [], None
    dps = (snapshot.get("mesh_resources") or {}).get("dataplanes") or ()
    me = next((d for d in dps if d.get("mesh") == mesh and d.get("name") == source), {})
    caller = next((s for s in ((i.get("tags") or {}).get(SERVICE_TAG) for i in
                               (me.get("networking") or {}).get("inbound") or ()) if s), source)
    try:
        route = resolve(service, local_dc=view.datacenter, entries=entries, healthy=view.healthy,
                        trust_domain=TRUST_DOMAIN, caller=caller)
    except ResolveError as e:
        return [f"resolution: {service} from {source} in datacenter {view.datacenter}: {e}"], False
    target = route.target
    how = "by default (a service resolves to the caller's datacenter)"
    if target.service != service or target.datacenter != view.datacenter:
        how = "failover" if route.failover else f"service-resolver {service}"
    lines = [f"resolution: {service} from {source} (datacenter {view.datacenter}) resolves to "
             f"{target.service}{'/' + target.subset if target.subset else ''} in datacenter {target.datacenter}, {how}"]
    if route.error:
        return [*lines, f"  REFUSED by the source's data plane: {route.error}"], False
    if target.datacenter == view.datacenter:
        return [*lines, "  in this zone: see the local explanation"], True
    endpoints, reason = view.hops(target, route.mode)
    if not endpoints:
        return [*lines, f"  REFUSED by the source's data plane: {reason}"], False
    sni = service_sni(target.service, target.datacenter, TRUST_DOMAIN, subset=target.subset, namespace=mesh)
    lines += [f"  path (MeshGateway mode {route.mode}): {' -> '.join((source, *route.hops))}",
              f"  dialled: {', '.join(_hostport(ip, port) for ip, port in endpoints)} with SNI {sni}, mutual TLS "
              "to the target's data plane (the gateways only route on the SNI)",
              f"  identity required of the answer: {service_identity(mesh, target.service)}"]
    return _permission_lines(lines, entries, caller, target)


def _permission_lines(lines: list[str], entries: Entries, caller: str, target: Target) -> tuple[list[str], bool]:
    """Whether the target's sidecar lets the call in: the intention that matches (config entries are
    the same in every zone), else the target zone's MeshTrafficPermissions."""
    found = matching(entries.by.values(), caller, target.service)
    if found is None:
        return [*lines, f"  allowed or not: no service-intentions match {caller} -> {target.service}: the "
                        f"MeshTrafficPermissions of datacenter {target.datacenter} decide"], True
    name, index, action = found
    verdict = "ALLOWED" if action == "Allow" else f"REFUSED by the destination's data plane (in {target.datacenter})"
    return [*lines, f"  {verdict}: service-intentions {name} Sources[{index}]: {action.lower()}"], action == "Allow"
