"""Hybrid mode: the control plane's push server, the data plane's client, the on-disk cache."""
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
