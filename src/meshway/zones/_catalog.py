"""What a zone knows of itself and of the others, read from its snapshot (pure functions).

- Gateways register as Consul's agents register them (`PUT /v1/agent/service/register` with
  `Kind: mesh-gateway`, the LAN address as `Address`/`Port` and `TaggedAddresses.wan`); they are
  kept as `_gateway` records and reach the snapshot's `zones.gateways`, with their TTL check's
  `Status` (`_health`): a `critical` gateway stays listed but takes no traffic, in this zone (data
  planes' `local` mode) or from the others (it leaves the summary).
- The zone's summary (`GET /v1/zones/federation`) is what federated zones fetch from each other:
  its datacenter, its gateways' WAN addresses, the services its data planes run per mesh, the
  meshes' CA certificates (public; the keys never leave a zone) and, from the primary, the config
  entries. What a zone learns is kept as `_zone` records (`zones.remote`).
"""
from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from ._gateway import TRUST_DOMAIN, gateway_document, local_instances, local_subsets

GATEWAY_KIND = "mesh-gateway"


class RegistrationError(ValueError):
    """A gateway registration Consul's agent would refuse; the message names the field."""


def _address(value: Any, port: Any, field: str) -> tuple[str, int]:
    try:
        ip = str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise RegistrationError(f"{field}: {value!r} is not an IP address") from None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise RegistrationError(f"{field}: port {port!r} out of range")
    return ip, port


def gateway_record(body: Any) -> dict[str, Any]:
    """A registration body -> the stored gateway (`ID`, `Service`, `LAN`, `WAN` as `ip:port`)."""
    if not isinstance(body, dict):
        raise RegistrationError("the body must be a service definition (a JSON object)")
    if body.get("Kind") != GATEWAY_KIND:
        raise RegistrationError(f"Kind: only {GATEWAY_KIND!r} services register here "
                                "(data planes register with meshway dp run)")
    name = body.get("Name") or body.get("Service") or GATEWAY_KIND
    gid = body.get("ID") or name
    if not isinstance(gid, str) or not 0 < len(gid) <= 253:
        raise RegistrationError("ID: must be a non-empty string")
    lan = _address(body.get("Address"), body.get("Port"), "Address")
    wan_raw = ((body.get("TaggedAddresses") or {}).get("wan") or {})
    wan = _address(wan_raw.get("Address"), wan_raw.get("Port"), "TaggedAddresses.wan") if wan_raw else lan
    return {"ID": gid, "Service": name, "LAN": _join(*lan), "WAN": _join(*wan)}


def _join(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def zones_of(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    return snapshot.get("zones") or {"gateways": [], "remote": []}


def remote_zones(snapshot: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """datacenter -> its last summary, for every zone federation reached."""
    return {z["datacenter"]: z for z in zones_of(snapshot)["remote"] if z.get("datacenter")}


def remote_gateways(snapshot: Mapping[str, Any]) -> dict[str, list[tuple[str, int]]]:
    return {dc: [split(g["WAN"]) for g in z.get("gateways") or ()] for dc, z in remote_zones(snapshot).items()}


CRITICAL = "critical"


def local_gateways(snapshot: Mapping[str, Any], *, every: bool = False) -> list[dict[str, Any]]:
    """This zone's gateways that take traffic: those whose TTL check is not `critical` (a gateway
    killed without deregistering, or cut off from its control plane); `every`: all registered."""
    gateways = zones_of(snapshot)["gateways"]
    return list(gateways) if every else [g for g in gateways if g.get("Status") != CRITICAL]


def gateway_config(snapshot: Mapping[str, Any], datacenter: str) -> dict[str, Any]:
    """The declarative document every gateway of this zone runs."""
    section = snapshot.get("mesh_resources") or {}
    resolvers = {e["Name"]: e for e in snapshot.get("config_entries") or ()
                 if e.get("Kind") == "service-resolver" and e.get("Subsets")}
    return gateway_document(datacenter, local_instances(section), remote_gateways(snapshot),
                            subsets=local_subsets(section, resolvers, datacenter))


def elsewhere_services(snapshot: Mapping[str, Any], mesh: str) -> set[str]:
    """The services of `mesh` the other zones report running (their VIPs resolve here too)."""
    return {s for zone in remote_zones(snapshot).values() for s in ((zone.get("services") or {}).get(mesh) or ())}


def remote_services(zones: Mapping[str, Any]) -> dict[str, set[str]]:
    """mesh -> the services other zones report (a snapshot's `zones` section)."""
    out: dict[str, set[str]] = {}
    for zone in zones.get("remote") or ():
        for mesh, services in (zone.get("services") or {}).items():
            if isinstance(services, list):
                out.setdefault(mesh, set()).update(s for s in services if isinstance(s, str))
    return out


def services_by_mesh(snapshot: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for mesh, service in sorted(local_instances(snapshot.get("mesh_resources") or {})):
        out.setdefault(mesh, []).append(service)
    return out


def summary(snapshot: Mapping[str, Any], settings: Any) -> dict[str, Any]:
    """This zone as federated zones see it (`GET /v1/zones/federation`)."""
    datacenter = getattr(settings, "datacenter", "dc1")
    primary = getattr(settings, "primary_datacenter", "") or datacenter
    out = {"datacenter": datacenter, "primary_datacenter": primary, "trust_domain": TRUST_DOMAIN,
           "gateways": [{"ID": g["ID"], "WAN": g["WAN"]} for g in local_gateways(snapshot)],
           "services": services_by_mesh(snapshot),
           "dataplanes": len((snapshot.get("mesh_resources") or {}).get("dataplanes") or ()),
           "trust": (snapshot.get("mesh_resources") or {}).get("trust") or {}}
    node_ca = _node_ca(settings)
    if node_ca:  # what signs data planes' certificates in meshes with mTLS off
        out["node_ca"] = node_ca
    advertise = getattr(settings, "advertise_addr_wan", "")
    if advertise:
        from ._federation import peer_url

        out["control_plane"] = peer_url(advertise)
    if primary == datacenter:  # only the primary's entries are authoritative (Consul's replication)
        out["config_entries"] = snapshot.get("config_entries") or []
    return out


def _node_ca(settings: Any) -> str | None:
    """The control plane's node CA certificate (`<prefix>/mesh/ca.crt`), public."""
    try:
        return (settings.prefix_path / "mesh" / "ca.crt").read_text()
    except (OSError, AttributeError, TypeError):
        return None
