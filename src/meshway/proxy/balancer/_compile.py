"""Snapshot -> balancers, once per config: pure, no I/O (hostnames resolve in the checker)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from ._balancer import Balancer


def compile_balancers(snapshot: dict[str, Any]) -> dict[str, Balancer]:
    """One `Balancer` per upstream, keyed by upstream name (what `service.host` refers to)."""
    targets: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for target in snapshot.get("targets") or ():
        targets[(target.get("upstream") or {}).get("id")].append(target)
    return {u["name"]: Balancer(u, targets.get(u.get("id"), []))
            for u in snapshot.get("upstreams") or ()}
