"""Sidecar mesh: membership, node identities (CA, CSR, certificates) and mutual-TLS hops."""
from typing import TYPE_CHECKING

from meshway._lazy import lazy_attributes

from ._membership import (
    InboundError, MeshEndpoints, check_inbound, compile_endpoints, inbound_entries, mesh_section, normalize_entry,
    remote_endpoints, with_mesh,
)
from ._terminate import MeshSniffer, MeshTransport, sniffing_factory
from ._runtime import (
    MESH_ALPN, MESH_OFF, MESH_SNI, MeshRuntime, client_context, compile_mesh, is_mesh_sni, peer_spiffe_id,
    server_context, worker_snapshot,
)

# Every proxy worker imports this package (MESH_ALPN, compile_mesh...), most of them never
# hold a mesh identity: the CA and identity modules import `cryptography` (~10 MB RSS), so
# their names load on first use; `_runtime` imports it only to read a peer certificate.
_LAZY = {
    "NODE_CERT_HOURS": "._ca", "CsrError": "._ca", "MeshCA": "._ca", "node_spiffe_id": "._ca", "parse_csr": "._ca",
    "MeshCredentials": "._identity", "NodeIdentity": "._identity", "spiffe_ids": "._identity",
}

if TYPE_CHECKING:
    from ._ca import NODE_CERT_HOURS, CsrError, MeshCA, node_spiffe_id, parse_csr
    from ._identity import MeshCredentials, NodeIdentity, spiffe_ids


__getattr__ = lazy_attributes(__name__, globals(), _LAZY)

# The mesh is built on the proxy: importing it plugs it into the proxy's hooks (see meshway.proxy.meshhooks).
from meshway.proxy import meshhooks as _hooks  # noqa: E402

from ._metrics import render_metrics as _render_metrics  # noqa: E402

_hooks.install(compile_mesh, sniffing_factory, _render_metrics)

__all__ = [
    "MESH_ALPN", "MESH_OFF", "MESH_SNI", "NODE_CERT_HOURS", "CsrError", "InboundError", "MeshCA", "MeshCredentials",
    "MeshEndpoints", "MeshRuntime", "MeshSniffer", "MeshTransport", "NodeIdentity", "check_inbound", "client_context", "compile_endpoints",
    "compile_mesh", "inbound_entries", "is_mesh_sni", "mesh_section", "node_spiffe_id", "normalize_entry",
    "parse_csr", "peer_spiffe_id", "remote_endpoints", "server_context", "spiffe_ids", "with_mesh",
    "sniffing_factory", "worker_snapshot",
]
