"""Building upstreams, balancers and requests for balancer tests, without a proxy."""
from __future__ import annotations

from typing import Any, Mapping

from meshway.proxy.balancer import Balancer, compile_balancers


def upstream_for_test(name: str = "up", **fields: Any) -> dict[str, Any]:
    upstream = {"id": f"id-{name}", "name": name, "algorithm": "round-robin", "hash_on": "none",
                "hash_fallback": "none", "hash_on_cookie_path": "/", "slots": 10000}
    upstream.update(fields)
    return upstream


def snapshot_for_test(upstream: dict[str, Any], targets: list[Any]) -> dict[str, Any]:
    """`targets` items are "host:port" (weight 100) or ("host:port", weight)."""
    entities = []
    for i, item in enumerate(targets):
        name, weight = (item, 100) if isinstance(item, str) else item
        entities.append({"id": f"t{i}", "target": name, "weight": weight,
                         "upstream": {"id": upstream["id"]}, "tags": None, "created_at": 1})
    return {"upstreams": [upstream], "targets": entities}


def balancer_for_test(targets: list[Any], **fields: Any) -> Balancer:
    upstream = upstream_for_test(**fields)
    return compile_balancers(snapshot_for_test(upstream, targets))[upstream["name"]]


def passive_for_test(**unhealthy: int) -> dict[str, Any]:
    """A healthchecks tree with passive checks only (the given unhealthy thresholds)."""
    return {"passive": {"unhealthy": unhealthy}, "threshold": 0}


class RequestForTest:
    """The parts of a RequestContext the balancer reads."""

    def __init__(self, *, client_ip: str = "10.0.0.1", path: str = "/", query: str = "",
                 headers: Mapping[str, str] | None = None, consumer: Any = None,
                 credential: Any = None, uri_captures: Mapping[str, str] | None = None) -> None:
        self.client_ip = client_ip
        self.path = path
        self.query = query
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.consumer = consumer
        self.credential = credential
        self.uri_captures = dict(uri_captures or {})
        self.shared: dict[str, Any] = {}

    def get_header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def picks_for_test(balancer: Balancer, n: int, request: Any = None) -> list[str]:
    return [balancer.select(request).target for _ in range(n)]
