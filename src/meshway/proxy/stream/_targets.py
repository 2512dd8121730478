"""Where a stream service's connections go: its own host:port, or its upstream's balancer.

Balancing is `meshway.proxy.balancer`'s (shared with the HTTP proxy, so health state and
least-connections counts are one); a stream connection is one "request" to the balancer:
`select` at dial time, `on_connect` when connected, `report` on connect failures and
`on_release` when the connection ends. For `hash_on = ip` the client IP is the key.
The node setting `origins` rewrites a hop (`tcp://a:1=tls://b:2`) just before dialling, so a
sidecar can reach its local service directly and change protocol on the way.
"""
from __future__ import annotations

import dataclasses
from typing import Any

TLS_SCHEMES = frozenset({"tls", "https", "grpcs", "wss"})


@dataclasses.dataclass(frozen=True)
class Hop:
    """One address to dial, whether the hop is TLS, and the balancer peer it came from."""

    host: str
    port: int
    tls: bool
    peer: Any = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class _StreamRequest:
    """What a balancer's hash key may read from a stream connection: only the client IP."""

    __slots__ = ("client_ip", "shared")
    consumer = credential = path = query = uri_captures = None

    def __init__(self, client_ip: str) -> None:
        self.client_ip = client_ip
        self.shared: dict = {}

    def get_header(self, name: str) -> None:
        return None


class ServiceTargets:
    """Picks hops for one service; `attempts` bounds how many a connection may try."""

    def __init__(self, scheme: str, host: str, port: int, balancer: Any, origins: dict) -> None:
        self.scheme, self.balancer, self._origins = scheme, balancer, origins
        self._fixed = None if balancer is not None else self._hop(host, port, None)

    def _hop(self, host: str, port: int, peer: Any) -> Hop:
        scheme, host, port = self._origins.get((self.scheme, host, port), (self.scheme, host, port))
        return Hop(host, port, scheme in TLS_SCHEMES, peer)

    @property
    def may_use_tls(self) -> bool:
        if self._fixed is not None:
            return self._fixed.tls
        return self.scheme in TLS_SCHEMES or any(dst[0] in TLS_SCHEMES for dst in self._origins.values())

    def pick(self, client_ip: str, tried: frozenset) -> Hop | None:
        if self.balancer is None:
            return None if tried else self._fixed
        request = _StreamRequest(client_ip) if self.balancer.needs_request else None
        peer = self.balancer.select(request, exclude=tried)
        return None if peer is None else self._hop(peer.host, peer.port, peer)

    def connected(self, hop: Hop) -> None:
        if hop.peer is not None:
            self.balancer.on_connect(hop.peer)

    def released(self, hop: Hop) -> None:
        if hop.peer is not None:
            self.balancer.on_release(hop.peer)

    def failed(self, hop: Hop, timeout: bool) -> None:
        if hop.peer is not None:
            self.balancer.report(hop.peer, tcp_failure=not timeout, timeout=timeout)


def parse_origins(pairs: Any) -> dict[tuple[str, str, int], tuple[str, str, int]]:
    return {_split_url(src): _split_url(dst) for src, dst in pairs or ()}


def _split_url(url: str) -> tuple[str, str, int]:
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    return scheme, host.strip("[]"), int(port)
