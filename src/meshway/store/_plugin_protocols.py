"""Kong's plugins DAO check `check_protocols_match`: a plugin scoped to a route must share a protocol
with it, one scoped to a service (and no route) with at least one of the service's routes (a service
without routes takes any). Written on inserts and updates through the Admin API, as Kong; declarative
loads are not checked (Kong's are not either).

"Share" is the proxy's rule (`meshway.model.plugin_runs_on_route`): on a ws/wss route a plugin naming
neither ws nor wss counts as running for ws where it runs for http and for wss where it runs for
https, so a plugin with the stored HTTP defaults is accepted on WebSocket routes (it runs there).
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select

from meshway.model import SchemaViolation, plugin_runs_on_route

ROUTE = "must match the associated route's protocols"
SERVICE = "must match the protocols of at least one route pointing to this Plugin's service"


def check_plugin_protocols(conn: Connection, tables: Any, plugin: dict) -> None:
    """Raise Kong's schema violation when `plugin` could never run where it is scoped."""
    protocols = plugin.get("protocols")
    if not protocols:
        return
    route, service = plugin.get("route"), plugin.get("service")
    routes = tables["routes"]
    if route:
        body = conn.execute(select(routes.c.body).where(routes.c.id == route["id"]).limit(1)).scalar()
        if body is not None and not plugin_runs_on_route(protocols, json.loads(body).get("protocols")):
            raise SchemaViolation({"protocols": ROUTE})
    elif service:
        bodies = conn.execute(select(routes.c.body).where(routes.c.service_id == service["id"])).scalars().all()
        if bodies and not any(plugin_runs_on_route(protocols, json.loads(b).get("protocols")) for b in bodies):
            raise SchemaViolation({"protocols": SERVICE})
