"""Upstream balancing and health checks (Kong's ring-balancer semantics).

The proxy core and the stream proxy, per request (all on the loop thread, none awaits):
    peer = balancer.select(ctx if balancer.needs_request else None, exclude=tried)
    # None -> answer NO_PEER_STATUS with NO_PEER_BODY; `tried` is any set of Peers
    balancer.on_connect(peer) ... balancer.on_release(peer)
    balancer.report(peer, status=..., tcp_failure=..., timeout=..., latency_ms=...)
and, when `ctx.shared[SET_COOKIE]` is set (hash cookie generated), send it once as a
`Set-Cookie` response header (popping it is safe: retries reuse `ctx.shared[HASH_COOKIE]`).

The node, per config: `balancers = compile_balancers(snapshot)` (pure, any thread), then
`await checker.update(balancers)` (`start` the first time; `update` also works first) before
the new runtime serves, so hostname targets are resolved and health carries over.
`HealthChecker.for_settings(settings)` resolves hostnames as the node's `dns_resolver` and
`dns_order` say (SRV records bring port and weight, record TTLs drive re-resolution).
"""
from ._balancer import Balancer
from ._checker import HealthChecker, carry_over
from ._compile import compile_balancers
from typing import TYPE_CHECKING

from meshway._lazy import lazy_attributes

from ._dns import DnsAnswer, Endpoint, getaddrinfo_resolver
from ._hashkey import HASH_COOKIE, SET_COOKIE
from ._peer import Peer
from ._report import DNS_ERROR, HEALTHCHECKS_OFF, HEALTHY, UNHEALTHY

if TYPE_CHECKING:
    from ._dnsresolver import DnsResolver, resolver_for_settings

# The DNS client (dnslib) loads when first used: most configs name their targets by address.
__getattr__ = lazy_attributes(__name__, globals(), {"DnsResolver": "._dnsresolver",
                                                    "resolver_for_settings": "._dnsresolver"})

NO_PEER_STATUS = 503
NO_PEER_BODY = {"message": "failure to get a peer from the ring-balancer"}

__all__ = [
    "Balancer", "HealthChecker", "Peer", "carry_over", "compile_balancers",
    "getaddrinfo_resolver", "DnsAnswer", "Endpoint", "DnsResolver", "resolver_for_settings",
    "SET_COOKIE", "HASH_COOKIE", "NO_PEER_STATUS", "NO_PEER_BODY",
    "HEALTHY", "UNHEALTHY", "DNS_ERROR", "HEALTHCHECKS_OFF",
]
