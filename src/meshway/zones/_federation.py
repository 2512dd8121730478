"""WAN federation: zones (control planes with a `datacenter`) learn of each other.

Theory of operation (Consul's WAN federation, reduced to what the mesh needs):
- A zone with `retry_join_wan` set exchanges summaries with each listed control plane every
  `retry_interval_wan` seconds: `PUT /v1/zones/federation` with its own summary, the answer is
  the peer's (`_catalog.summary`: datacenter, gateways' WAN addresses, services, the meshes' CA
  certificates, and the primary's config entries). One side configured is enough, as one
  `consul join -wan` is: the peer keeps what it was sent as well.
- What a zone learns is stored as a `_zone/<datacenter>` record, written only when it changed,
  so an unchanged exchange pushes nothing to data planes; a change reaches them as any change.
- Config entries follow the primary (`primary_datacenter`; empty means this zone is the
  primary): a secondary replaces its entries with the primary's after each exchange, and a write
  made at a secondary is forwarded to the primary (`forward_write`), as Consul forwards it.
- A zone that cannot be reached keeps its last summary (its gateways stay routable, each zone
  serves its own traffic), shows `Offline` after three missed exchanges, and is caught up with
  by the next exchange that works.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable

log = logging.getLogger("meshway.zones.federation")

_last: dict[str, float] = {}  # datacenter -> wall time of the last exchange with it (this node)
_interval = [5.0]


def zone_status(datacenter: str) -> tuple[str, str | None]:
    """(Online|Offline, ISO time of the last exchange) of a federated zone."""
    seen = _last.get(datacenter)
    if seen is None:
        return "Offline", None
    status = "Online" if time.time() - seen < 3 * _interval[0] + 1 else "Offline"
    return status, datetime.fromtimestamp(seen, timezone.utc).isoformat()


def peer_url(address: str) -> str:
    """A `retry_join_wan` entry as the URL of a control plane's Admin API (port 8001 by default)."""
    if "://" in address:
        return address.rstrip("/")
    host = address
    if not (address.rsplit(":", 1)[-1].isdigit() and (":" in address and not address.endswith("]"))):
        host = f"{address}:8001"
    return f"http://{host}"


def check_summary(body: Any, own: str) -> dict[str, Any]:
    """A peer's summary, or ValueError naming what is wrong with it."""
    if not isinstance(body, dict) or not isinstance(body.get("datacenter"), str) or not body["datacenter"]:
        raise ValueError("not a zone summary (no datacenter)")
    if body["datacenter"] == own:
        raise ValueError(f"the peer is datacenter {own!r} too (each zone needs its own datacenter name)")
    for key, kind in (("gateways", list), ("services", dict), ("trust", dict), ("config_entries", list)):
        if key in body and not isinstance(body[key], kind):
            raise ValueError(f"{key}: expected a {kind.__name__}")
    return body


def learn(store: Any, summary: dict[str, Any], own: str, primary: str) -> bool:
    """Keep what a peer said (True when something changed); replicate the primary's entries."""
    dc = summary["datacenter"]
    kept = {k: v for k, v in summary.items() if k != "config_entries"}
    changed = store.config_entries.put_record("_zone", dc, kept)
    for mesh, services in (summary.get("services") or {}).items():  # `<service>.mesh` names here too
        if isinstance(services, list):
            changed = store.mesh.reserve_vips(str(mesh), [s for s in services if isinstance(s, str)]) or changed
    _last[dc] = time.time()
    if primary and primary != own and dc == primary and "config_entries" in summary:
        changed = replicate(store, summary["config_entries"]) or changed
    return changed


def replicate(store: Any, entries: list[dict[str, Any]]) -> bool:
    """Make this zone's config entries the primary's (each checked as a local write is)."""
    from . import check_entry, KINDS

    wanted = {}
    for raw in entries:
        try:
            entry = check_entry(raw)
        except ValueError as e:
            log.warning("primary's config entry refused: %s", e)
            continue
        wanted[(entry["Kind"], entry["Name"])] = entry
    changed = False
    for kind in KINDS:
        for row in store.config_entries.list(kind):
            key = (kind, row["entry"]["Name"])
            if key not in wanted:
                store.config_entries.delete(*key)
                changed = True
            elif row["entry"] == wanted[key]:
                del wanted[key]
    for entry in wanted.values():
        store.config_entries.put(entry)
        changed = True
    return changed


class Federation:
    """The exchange loop of one control plane (started by the node when `retry_join_wan` is set)."""

    def __init__(self, settings: Any, store: Any, summary: Callable[[], dict[str, Any]]) -> None:
        self.settings, self.store, self.summary = settings, store, summary
        self.own = settings.datacenter
        self.primary = settings.primary_datacenter or self.own
        self.peers = [peer_url(a) for a in settings.retry_join_wan]
        _interval[0] = max(float(settings.retry_interval_wan), 0.2)
        self._failing: dict[str, str] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=max(_interval[0], 2.0), headers=auth_headers(self.settings)) as client:
            while True:
                for peer in self.peers:
                    await self._exchange(client, peer)
                await asyncio.sleep(_interval[0])

    async def _exchange(self, client: Any, peer: str) -> None:
        try:
            mine = await asyncio.to_thread(self.summary)
            response = await client.put(f"{peer}/v1/zones/federation", json=mine)
            response.raise_for_status()
            theirs = check_summary(response.json(), self.own)
            await asyncio.to_thread(learn, self.store, theirs, self.own, self.primary)
        except Exception as e:  # a zone may be down or cut off: keep what we knew, try again
            if self._failing.get(peer) != str(e):
                log.warning("federation with %s failed: %s (its last known state is kept)", peer, e)
            self._failing[peer] = str(e)
            return
        if self._failing.pop(peer, None) is not None:
            log.info("federation with %s (%s) restored", peer, theirs["datacenter"])


def auth_headers(settings: Any) -> dict[str, str]:
    """What the other zones' Admin APIs get from this one (`acl_replication_token`)."""
    token = getattr(settings, "acl_replication_token", "")
    return {"Kong-Admin-Token": token} if token else {}


def primary_url(store: Any, settings: Any) -> str | None:
    """Where a secondary forwards config entry writes: the primary's control plane, if joined."""
    primary = settings.primary_datacenter
    if not primary or primary == settings.datacenter:
        return None
    for row in store.config_entries.records("_zone"):
        if row.get("datacenter") == primary and row.get("control_plane"):
            return row["control_plane"]
    for address in settings.retry_join_wan:
        return peer_url(address)
    return None
