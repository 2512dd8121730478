"""Cluster PKI: the shared hybrid-mode certificate, a small CA for `cluster_mtls = pki`, loading checks."""
from ._credentials import ClusterCertError, ClusterCredentials, fingerprint, load_cluster_credentials
from ._files import write_private
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
