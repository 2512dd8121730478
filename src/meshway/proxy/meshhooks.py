"""What the proxy knows of a service mesh, and where a mesh plugs in.

The proxy does not import the mesh (`meshway.mesh` is built on the proxy, not inside it). It
knows the wire names of a mesh hop (ALPN, SNI, the peer's SPIFFE id) and asks two hooks:
- `compile_mesh(snapshot, settings)`: the mesh runtime of a snapshot (which hops to upgrade,
  which destinations to terminate, the TLS contexts), `MESH_OFF` while no mesh is installed;
  its `dials` is read once per config: false, the proxy never asks `upgrades` per request;
- `sniffing_factory(factory, get_mesh, original_destination, timeout)`: a plain listener's
  protocol factory wrapped so fronted destinations can be mesh-terminated (unchanged without one);
- `mesh_metrics_text()`: the mesh's per-service series of this worker (Prometheus text, "" without).
A compiled mesh runtime also sees what ends: `observe_session(record, duration)` for a stream
connection, `observe_exchange(ex, now)` for an HTTP request when its `counts` is true (the
access log calls it), `saw_peer(peer, der)` for a verified calling sidecar.
A mesh calls `install(compiler, sniffer)` when it is imported; the node (`meshway.node.worker`)
imports it in every worker, tests and tools that want one do the same.
"""
from __future__ import annotations

from typing import Any, Callable

MESH_ALPN = "meshway-mesh/1"
MESH_SNI = "sidecar.mesh.meshway"
_MESH_SUFFIX = ".mesh.meshway"
SPIFFE_PREFIX = "spiffe://meshway/"


def is_mesh_sni(sni: str | None) -> bool:
    """Whether a ClientHello's SNI asks for the mesh."""
    return bool(sni) and (sni == _MESH_SUFFIX[1:] or sni.endswith(_MESH_SUFFIX))


def spiffe_ids(cert: Any) -> list[str]:
    """The `spiffe://` URIs in a certificate's SAN (a `cryptography` certificate)."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]


def peer_spiffe_id(der: bytes | None) -> str | None:
    """The peer certificate's mesh identity, or None."""
    if not der:
        return None
    # Here, not at module level: only mesh connections get here, and `cryptography` costs
    # every worker ~10 MB (the import is a dict lookup after the first call).
    from cryptography import x509

    try:
        ids = spiffe_ids(x509.load_der_x509_certificate(der))
    except ValueError:
        return None
    return next((i for i in ids if i.startswith(SPIFFE_PREFIX)), None)


class ZoneHop:
    """A hop to a service in another zone (meshway.zones): the SNI the mesh gateways route on, and
    the SPIFFE id the certificate at the end must hold (the gateways in between cannot answer)."""

    __slots__ = ("sni", "identity")

    def __init__(self, sni: str, identity: str) -> None:
        self.sni, self.identity = sni, identity

    def answered_by(self, der: bytes | None) -> bool:
        from cryptography import x509

        try:
            return bool(der) and self.identity in spiffe_ids(x509.load_der_x509_certificate(der))
        except ValueError:
            return False


class NoMesh:
    """The mesh runtime when there is none: nothing upgraded, terminated or refused."""

    mode = "off"
    dials = False  # `upgrades` never answers yes
    client_ctx = server_ctx = spiffe_id = inbound_source = None

    def upgrades(self, ip: str, port: int) -> bool:
        return False

    def fronts(self, ip: str, port: int) -> bool:
        return False

    def wants_preread(self, dst_ip: str, dst_port: int) -> bool:
        return False

    def admits_plain(self, src_ip: str, dst_ip: str, dst_port: int) -> bool:
        return True

    def source_for(self, ip: str, port: int) -> tuple[str, int] | None:
        return None

    def speaks_http(self, ip: str, port: int) -> bool:
        return False

    def serves_http(self, ip: str, port: int) -> bool:
        return False

    def check_peer(self, der: bytes | None, dst_ip: str, dst_port: int) -> Any:
        return None  # no permissions: allowed

    def unreachable_service(self, ip: str, port: int) -> tuple[str, bool] | None:
        return None

    zone_hops: dict = {}  # service name -> ZoneHop (never filled here)

    def zone_hop(self, service_name: str | None) -> ZoneHop | None:
        return None

    counts = False  # no per-service metrics

    def observe_session(self, record: Any, duration: float) -> None:
        pass

    def saw_peer(self, peer: str | None, der: bytes | None) -> None:
        pass


MESH_OFF = NoMesh()
_hooks: dict[str, Callable[..., Any]] = {}


def install(compiler: Callable[[dict, Any], Any], sniffer: Callable[..., Any],
            metrics: Callable[[], str] | None = None) -> None:
    """Plug a mesh in (idempotent): its runtime compiler, its listener wrapper, its metrics."""
    _hooks.update(compiler=compiler, sniffer=sniffer, metrics=metrics)


def mesh_metrics_text() -> str:
    metrics = _hooks.get("metrics")
    return metrics() if metrics is not None else ""


def compile_mesh(snapshot: dict, settings: Any) -> Any:
    compiler = _hooks.get("compiler")
    return compiler(snapshot, settings) if compiler is not None else MESH_OFF


def sniffing_factory(factory: Callable[[], Any], get_mesh: Callable[[], Any],
                     original_destination: Callable[[Any], Any], first_bytes_timeout: float) -> Callable[[], Any]:
    sniffer = _hooks.get("sniffer")
    if sniffer is None:
        return factory
    return sniffer(factory, get_mesh, original_destination, first_bytes_timeout)
