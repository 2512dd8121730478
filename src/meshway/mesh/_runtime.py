"""What a proxy worker knows about the mesh, compiled once per snapshot, and its decisions.

Rules:
- `mesh_mtls = off`: nothing is upgraded and nothing is terminated.
- Outbound (sender): a hop whose (ip, port), after `origins` and balancing, is fronted by
  another sidecar is dialled with mutual TLS (our node certificate, the peer's chained to the
  mesh CA, ALPN `meshway-mesh/1`, SNI `sidecar.mesh.meshway`); the service's own TLS, if any,
  is replaced on that hop (the receiving sidecar re-originates it).
- Inbound (receiver): a connection to a destination this sidecar fronts is preread; a
  ClientHello with the mesh SNI is terminated with the node certificate and must present a
  client certificate chained to the mesh CA. The decrypted stream is then routed by the
  original destination as if the client had connected there directly.
- `strict`: a plain connection to a destination this sidecar fronts is refused unless its
  source is itself an address this sidecar fronts (the local service's own traffic).
  `permissive` (default) accepts both.
- Without a node certificate (not yet issued) nothing is upgraded or terminated; strict mode
  then refuses plain connections to fronted destinations too (it never silently opens).
"""
from __future__ import annotations

import dataclasses
import hashlib
import ssl
from pathlib import Path
from typing import Any

from meshway import tlspolicy
from meshway.proxy.meshhooks import MESH_ALPN, MESH_SNI, ZoneHop, is_mesh_sni, peer_spiffe_id  # noqa: F401 (re-exported)

from . import _metrics
from ._permissions import SHADOW, Decision, PermissionTable, _uris
from ._membership import (NO_ENDPOINTS, MeshEndpoints, compile_endpoints, inbound_entries, normalize_entry,
                          remote_endpoints)

OFF, PERMISSIVE, STRICT = "off", "permissive", "strict"


def _context(purpose: int, identity: dict, trust: tuple[str, ...] = ()) -> ssl.SSLContext:
    ctx = tlspolicy.context(purpose)
    ctx.load_cert_chain(identity["cert_path"], identity["key_path"])
    ctx.load_verify_locations(cafile=identity["ca_path"])
    for pem in trust:  # the mesh's CAs (`_mtls`), trusted before our own certificate comes from them
        ctx.load_verify_locations(cadata=pem)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols([MESH_ALPN])
    return ctx


def client_context(identity: dict, trust: tuple[str, ...] = ()) -> ssl.SSLContext:
    """For dialling another sidecar: present our certificate, require one from the mesh CA."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, identity, trust)
    ctx.check_hostname = False  # sidecars are named by SPIFFE id, checked after the handshake
    return ctx


def server_context(identity: dict, trust: tuple[str, ...] = ()) -> ssl.SSLContext:
    """For terminating mesh connections: client certificate from the mesh CA required."""
    return _context(ssl.PROTOCOL_TLS_SERVER, identity, trust)


@dataclasses.dataclass(frozen=True)
class MeshRuntime:
    """The compiled mesh view of one worker: modes, memberships, contexts."""

    mode: str
    own: MeshEndpoints
    remote: MeshEndpoints
    client_ctx: ssl.SSLContext | None
    server_ctx: ssl.SSLContext | None
    spiffe_id: str | None
    inbound_source: str | None = None  # transparent proxying: the source of hops to our own app (127.0.0.6)
    http: frozenset = frozenset()  # (ip, port) of mesh destinations routed over HTTP (kuma.io/protocol http)
    permissions: PermissionTable | None = None  # MeshTrafficPermission of our inbounds; None: mTLS off
    unreachable: dict = dataclasses.field(default_factory=dict)  # (ip, port) -> (service we may not call, http?)
    http_inbound: frozenset = frozenset()  # (ip, port) of our own inbounds tagged kuma.io/protocol http
    zone_hops: dict = dataclasses.field(default_factory=dict)  # service name -> ZoneHop (meshway.zones)
    # per-service metrics (`_metrics`): route name -> (direction, service), our inbounds' services
    route_services: dict = dataclasses.field(default_factory=dict)
    inbound_services: dict = dataclasses.field(default_factory=dict)  # (ip, port) -> service
    self_service: str = _metrics.UNKNOWN
    mesh_name: str = ""

    def zone_hop(self, service_name: str | None) -> ZoneHop | None:
        """The hop to another zone a stream service makes (SNI, identity required), if it is one."""
        return self.zone_hops.get(service_name) if self.zone_hops else None

    @property
    def counts(self) -> bool:
        """Whether this data plane counts per-service metrics (a `dp run` data plane with a mesh)."""
        return bool(self.mesh_name)  # set by the `metrics` section, which only dp run data planes get

    def observe_session(self, record: Any, duration: float) -> None:
        if self.mesh_name:
            _metrics.observe_session(self, record, duration)

    def observe_exchange(self, ex: Any, now: float | None) -> None:
        _metrics.observe_exchange(self, ex, ex.loop.time() if now is None else now)

    def saw_peer(self, peer: str | None, der: bytes | None) -> None:
        """A calling sidecar verified on one of our inbounds: remember its service (once per peer)."""
        if self.mesh_name and peer is not None and peer not in _metrics.METRICS.peers:
            _metrics.METRICS.remember_peer(peer, _metrics.first_service(self.mesh_name, _uris(der)))

    def unreachable_service(self, ip: str, port: int) -> tuple[str, bool] | None:
        """(service, speaks HTTP) at (ip, port) when this data plane may not reach it (reachable services)."""
        return self.unreachable.get((ip, port)) if self.unreachable else None

    def check_peer(self, der: bytes | None, dst_ip: str, dst_port: int) -> tuple[Decision, bool] | None:
        """(decision, inbound speaks HTTP) for a verified mesh peer; None when permissions do not apply."""
        if self.permissions is None:
            return None
        verdict = self.permissions.check(der, dst_ip, dst_port)
        if verdict is not None and verdict[0].action == SHADOW and self.mesh_name:
            _metrics.observe_shadow(self, self.permissions.peer_uris(der), dst_ip, dst_port)
        return verdict

    @property
    def dials(self) -> bool:
        """Whether `upgrades` can answer yes for any hop: the proxy reads it once per config and
        does not ask per request where it cannot (no node certificate yet, no other sidecar)."""
        if self.client_ctx is None:
            return False
        return (self.mode != OFF and bool(self.remote)) or bool(self.zone_hops)  # zone hops: mutual TLS always

    def upgrades(self, ip: str, port: int) -> bool:
        """Should a hop to (ip, port) be mutual TLS?"""
        return self.mode != OFF and self.client_ctx is not None and self.remote.contains(ip, port)

    def fronts(self, ip: str, port: int) -> bool:
        """Is (ip, port) a destination this sidecar terminates mesh connections for?"""
        return self.mode != OFF and self.own.contains(ip, port)

    def source_for(self, ip: str, port: int) -> tuple[str, int] | None:
        """The source address a hop to (ip, port) must use, when the mesh decides it: a hop to
        this sidecar's own app leaves from 127.0.0.6 (::6), which the transparent-proxy rules
        let through instead of sending it back to the inbound port (Envoy's and Kuma's rule)."""
        if self.inbound_source is None or not self.fronts(ip, port):
            return None
        return ("::6", 0) if ":" in ip else (self.inbound_source, 0)

    def speaks_http(self, ip: str, port: int) -> bool:
        """Does a connection to (ip, port) take the HTTP path (a stream listener hands it over)?"""
        return (ip, port) in self.http

    def serves_http(self, ip: str, port: int) -> bool:
        """Is (ip, port) one of our own HTTP inbounds (the receiving side takes the HTTP path)?"""
        return (ip, port) in self.http_inbound

    def wants_preread(self, dst_ip: str, dst_port: int) -> bool:
        """Must the first client bytes be read to see whether this is a mesh connection?"""
        return self.server_ctx is not None and self.fronts(dst_ip, dst_port)

    def admits_plain(self, src_ip: str, dst_ip: str, dst_port: int) -> bool:
        """May a non-mesh connection from src reach dst (strict mode's rule)?"""
        if self.mode != STRICT or not self.own.contains(dst_ip, dst_port):
            return True
        return self.own.has_ip(src_ip)


MESH_OFF = MeshRuntime(OFF, NO_ENDPOINTS, NO_ENDPOINTS, None, None, None)


def _own_node_id(section: dict, settings: Any) -> str | None:
    identity = section.get("identity") or {}
    if identity.get("node_id"):
        return identity["node_id"]
    try:
        return (Path(settings.prefix) / "node_id").read_text().strip()
    except (OSError, AttributeError, TypeError):
        return None


def compile_mesh(snapshot: dict, settings: Any) -> MeshRuntime:
    """The mesh part of a worker snapshot (`mesh` section + `mesh.identity`, see node master)."""
    mode = getattr(settings, "mesh_mtls", OFF) or OFF
    section = snapshot.get("mesh") or {}
    if mode != OFF and section.get("mtls_mode") in (PERMISSIVE, STRICT):  # the Mesh resource says (dp run)
        mode = section["mtls_mode"]
    own_entries = inbound_entries(getattr(settings, "mesh_inbound", ()), getattr(settings, "origins", ()))
    if not own_entries:  # a `meshway dp run` data plane: its Dataplane's inbounds (see _translate)
        own_entries = tuple(normalize_entry(e) for e in section.get("inbound") or ())
    if mode == OFF or (not section and not own_entries):
        return dataclasses.replace(MESH_OFF, mode=mode)
    identity = section.get("identity")
    remote = remote_endpoints(section, _own_node_id(section, settings), own_entries)
    try:
        trust = tuple(section.get("trust") or ())
        client = client_context(identity, trust) if identity else None
        server = server_context(identity, trust) if identity else None
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"mesh identity {identity.get('cert_path')}: cannot load: {e}") from None
    spiffe = identity.get("spiffe_id") if identity else None
    http = frozenset(_split_hostport(e) for e in section.get("http") or ())
    metrics = section.get("metrics") or {}
    return MeshRuntime(mode, compile_endpoints(own_entries), remote, client, server, spiffe,
                       section.get("inbound_source"), http, PermissionTable.from_section(section),
                       {_split_hostport(k): tuple(v) for k, v in (section.get("unreachable") or {}).items()},
                       frozenset(_split_hostport(e) for e in section.get("http_inbound") or ()),
                       {k: ZoneHop(v["sni"], v["identity"]) for k, v in (section.get("zone_hops") or {}).items()},
                       route_services={name: tuple(v) for name, v in (metrics.get("routes") or {}).items()},
                       inbound_services={_split_hostport(k): v
                                         for k, v in (metrics.get("inbound_services") or {}).items()},
                       self_service=metrics.get("self_service") or _metrics.UNKNOWN, mesh_name=metrics.get("mesh") or "")


def _split_hostport(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    return host.strip("[]"), int(port)


def worker_snapshot(snapshot: dict, config_hash: str, identity: dict | None) -> tuple[dict, str]:
    """What the master sends its workers: the snapshot plus `mesh.identity`, with a hash that
    changes when the certificate does (so a renewal recompiles the workers)."""
    if not identity:
        return snapshot, config_hash
    mesh = {**(snapshot.get("mesh") or {}), "identity": identity}
    derived = hashlib.md5(f"{config_hash}:{identity.get('serial')}".encode()).hexdigest()
    return {**snapshot, "mesh": mesh}, derived
