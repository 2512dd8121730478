"""Kong's health documents: `GET /upstreams/{u}/health` and its `?balancer_health=1` form."""
from __future__ import annotations

from typing import Any

from ._balancer import Balancer
from ._peer import Address, Target

HEALTHY, UNHEALTHY = "HEALTHY", "UNHEALTHY"
DNS_ERROR, HEALTHCHECKS_OFF = "DNS_ERROR", "HEALTHCHECKS_OFF"


def _number(value: Any) -> int | float:
    # A hostname's weight shared by 3 addresses is not an integer; keep ints looking like ints.
    return int(value) if value == int(value) else round(float(value), 3)


def address_health(balancer: Balancer, target: Target, addr: Address) -> str:
    if not addr.healthy:
        return UNHEALTHY
    if balancer.health_config.off or target.weight == 0:
        return HEALTHCHECKS_OFF
    return HEALTHY


def target_health(balancer: Balancer, target: Target) -> str:
    if not target.addresses:
        return DNS_ERROR
    states = {address_health(balancer, target, a) for a in target.addresses}
    if HEALTHY in states:
        return HEALTHY
    return HEALTHCHECKS_OFF if HEALTHCHECKS_OFF in states else UNHEALTHY


def _address_entry(balancer: Balancer, target: Target, addr: Address) -> dict[str, Any]:
    return {"ip": addr.peer.host, "port": addr.peer.port,
            "health": address_health(balancer, target, addr), "weight": _number(addr.weight)}


def target_entry(balancer: Balancer, target: Target) -> dict[str, Any]:
    entity = target.entity
    return {
        "id": entity.get("id"), "created_at": entity.get("created_at"),
        "updated_at": entity.get("updated_at"), "upstream": entity.get("upstream"),
        "target": target.name, "weight": target.weight, "tags": entity.get("tags"),
        "health": target_health(balancer, target),
        "data": {"addresses": [_address_entry(balancer, target, a) for a in target.addresses]},
    }


def health_document(balancer: Balancer, node_id: str | None) -> dict[str, Any]:
    """The body of `GET /upstreams/{u}/health`."""
    data = [target_entry(balancer, t) for t in balancer.targets]
    return {"data": data, "next": None, "node_id": node_id}


def balancer_health_document(balancer: Balancer, node_id: str | None) -> dict[str, Any]:
    """The body of `GET /upstreams/{u}/health?balancer_health=1`."""
    weighted = [a for a in balancer.addresses if a.weight > 0]
    total = sum(a.weight for a in weighted)
    available = sum(a.weight for a in weighted if a.healthy)
    health = HEALTHCHECKS_OFF if balancer.health_config.off else (
        HEALTHY if balancer.healthy else UNHEALTHY)
    details = {"healthy": balancer.healthy, "weight": {
        "total": _number(total), "available": _number(available),
        "unavailable": _number(total - available)}}
    data = {"id": balancer.upstream.get("id"), "health": health, "details": details}
    return {"data": data, "next": None, "node_id": node_id}
