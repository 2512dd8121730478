"""Kuma's `ServiceInsight`: per service of a mesh, how many of its data planes are online.

`GET /meshes/{mesh}/service-insights[/{name}]` serves it, so that a dashboard counting 5,000 data
planes reads one row per service rather than every data plane. Rules (Kuma's insight resyncer):
- a data plane counts once per service it provides (its inbounds, or its gateway's tags);
- it is **online** for a service while it is connected and that service's inbound is ready (an inbound
  it reports not ready counts offline for that service only; a gateway follows the connection);
- `status`: `online` when all are, `offline` when none is, else `partially_degraded`;
- `serviceType`: `internal` for inbounds, `gateway_delegated` / `gateway_builtin` for gateways;
- `addressPort`: `address:port` when all the service's inbounds share one (else left out, as Kuma
  leaves it out for internal services it cannot name by one address).
Computed per call from the data planes and their insights: it is one pass over lists the store already
holds (measured in bench/dashboard_scale.py), not worth a cache to keep in step with every insight write.
"""
from __future__ import annotations

from typing import Any

from ._insights import is_online
from ._resources import SERVICE_TAG, inbounds


def _provided(dataplane: dict, insight: dict | None) -> list[tuple[str, str, bool, str | None]]:
    """(service, serviceType, online, address:port) for each service the data plane provides."""
    connected = is_online(insight)
    reported = (insight or {}).get("inboundHealth") or {}
    out = []
    for inbound in inbounds(dataplane):
        if inbound.get("state") == "Ignored" or not inbound["service"]:
            continue
        ready = (inbound.get("health") or {}).get("ready")
        if ready is None:
            ready = reported.get(str(inbound["port"]))
        out.append((inbound["service"], "internal", connected and ready is not False,
                    f"{inbound['address']}:{inbound['port']}"))
    gateway = (dataplane.get("networking") or {}).get("gateway")
    if gateway and (gateway.get("tags") or {}).get(SERVICE_TAG):
        kind = "gateway_builtin" if gateway.get("type") == "BUILTIN" else "gateway_delegated"
        out.append((gateway["tags"][SERVICE_TAG], kind, connected, None))
    return out


def service_insights(mesh: str, dataplanes: list[dict], insights: dict[str, dict]) -> list[dict]:
    """One `ServiceInsight` item per service, sorted by name (Kuma lists by name)."""
    found: dict[str, dict[str, Any]] = {}
    for dp in dataplanes:
        seen: set[str] = set()
        for service, kind, online, address in _provided(dp, insights.get(dp["name"])):
            if service in seen:  # two inbounds of one service: one data plane, online if any inbound is
                entry = found[service]
                if online and entry["_last_offline"] == dp["name"]:
                    entry["dataplanes"]["online"] += 1
                    entry["dataplanes"]["offline"] -= 1
                    entry["_last_offline"] = None
                continue
            seen.add(service)
            entry = found.setdefault(service, {"type": "ServiceInsight", "mesh": mesh, "name": service,
                                               "serviceType": kind, "_addresses": set(), "_last_offline": None,
                                               "dataplanes": {"online": 0, "offline": 0, "total": 0}})
            counts = entry["dataplanes"]
            counts["total"] += 1
            counts["online" if online else "offline"] += 1
            entry["_last_offline"] = None if online else dp["name"]
            entry["_addresses"].add(address)
    return [_finished(found[name]) for name in sorted(found)]


def _finished(entry: dict) -> dict:
    addresses = entry.pop("_addresses")
    entry.pop("_last_offline")
    counts = entry["dataplanes"]
    entry["status"] = ("online" if counts["online"] == counts["total"] else
                       "offline" if counts["online"] == 0 else "partially_degraded")
    if len(addresses) == 1 and None not in addresses:
        entry["addressPort"] = next(iter(addresses))
    return entry
