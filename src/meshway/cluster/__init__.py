"""Hybrid mode: the control plane's push server, the data plane's client, the on-disk cache.

The names load on first use (`meshway._lazy`): every node's master imports `_identity` from
here at start, and a node outside hybrid mode should not pay for the client and server
(websockets, the PKI, cryptography) before its workers serve their first request."""
from typing import TYPE_CHECKING

from meshway._lazy import lazy_attributes

if TYPE_CHECKING:
    from ._admin import refusing_admin_routes
    from ._protocol import EMPTY_HASH, ProtocolError, version_incompatibility
    from .cache import cache_path, load_cache, write_cache
    from .client import ClusterClient
    from .server import ClusterServer

__all__ = [
    "EMPTY_HASH",
    "ClusterClient",
    "ClusterServer",
    "ProtocolError",
    "cache_path",
    "load_cache",
    "refusing_admin_routes",
    "version_incompatibility",
    "write_cache",
]

__getattr__ = lazy_attributes(__name__, globals(), {
    "refusing_admin_routes": "._admin", "EMPTY_HASH": "._protocol", "ProtocolError": "._protocol",
    "version_incompatibility": "._protocol", "cache_path": ".cache", "load_cache": ".cache", "write_cache": ".cache",
    "ClusterClient": ".client", "ClusterServer": ".server"})
