"""Cluster PKI: the shared hybrid-mode certificate, a small CA for `cluster_mtls = pki`, loading checks."""
from typing import TYPE_CHECKING

from meshway._lazy import lazy_attributes

from ._files import write_private

if TYPE_CHECKING:
    from ._credentials import ClusterCertError, ClusterCredentials, fingerprint, load_cluster_credentials
    from ._generate import ClusterCA, gen_cluster_cert, issue_cert

__all__ = [
    "ClusterCA",
    "ClusterCertError",
    "ClusterCredentials",
    "fingerprint",
    "gen_cluster_cert",
    "issue_cert",
    "load_cluster_credentials",
    "write_private",
]

# cryptography loads with the first name that needs it: a node's first start writes its id with
# `write_private` before it spawns its workers, and importing cryptography there (~0.19G
# instructions) would delay them.
__getattr__ = lazy_attributes(__name__, globals(), {
    "ClusterCertError": "._credentials", "ClusterCredentials": "._credentials", "fingerprint": "._credentials",
    "load_cluster_credentials": "._credentials", "ClusterCA": "._generate", "gen_cluster_cert": "._generate",
    "issue_cert": "._generate",
})
