"""Mesh gateways' TTL checks: a gateway that stops heartbeating leaves routing.

Rules (Consul's TTL check on a registered gateway: `critical` once the TTL passes without an
update; health-filtered queries, which is what Consul's gateways and proxies use, leave it out):
- A gateway re-registers every `_gwrun.HEARTBEAT` (5 s); each heartbeat is kept in the database
  as a `_gwbeat/<id>` record (its wall-clock time), so every control plane on that database (one
  zone may run several) judges it the same, whichever one the gateway talks to. That record is in
  no snapshot: a heartbeat changes no configuration.
- Every `SWEEP` s a control plane marks the gateways whose last heartbeat is older than
  `GATEWAY_TTL` (15 s) `critical`, a change of the `_gateway` record, so it reaches the data planes
  and, through the summary, the other zones, as any change does.
- A heartbeat from a `critical` gateway makes it `passing` again at once; a gateway that stops
  cleanly deregisters (SIGTERM), a killed one (kill -9, a crashed host, a cut link) turns critical.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ._catalog import CRITICAL

log = logging.getLogger("meshway.zones")
GATEWAY_TTL = 15.0  # seconds: three missed heartbeats of `meshway connect envoy` (every 5 s)
SWEEP = 1.0
PASSING = "passing"
BEAT = "_gwbeat"


def heartbeat(store: Any, record: dict[str, Any]) -> None:
    """A gateway (re-)registered: its heartbeat, and its record `passing` (written when it changed)."""
    store.config_entries.put_record(BEAT, record["ID"], {"At": round(time.time(), 3)})
    store.config_entries.put_record("_gateway", record["ID"], {**record, "Status": PASSING})


def deregister(store: Any, gid: str) -> None:
    store.config_entries.delete("_gateway", gid)
    store.config_entries.delete(BEAT, gid)


def status_of(record: dict[str, Any]) -> str:
    """A registered gateway's check as `get zones` shows it (the sweep keeps it current)."""
    return CRITICAL if record.get("Status") == CRITICAL else PASSING


def sweep(store: Any, now: float | None = None) -> list[str]:
    """Mark the gateways whose TTL passed `critical`; the ids marked."""
    now = time.time() if now is None else now
    beats = {b.get("Name"): b.get("At") or 0 for b in store.config_entries.records(BEAT)}
    marked = []
    for record in store.config_entries.records("_gateway"):
        gid = record["ID"]
        if record.get("Status") == CRITICAL or now - beats.get(gid, 0) < GATEWAY_TTL:
            continue
        body = {k: v for k, v in record.items() if k not in ("Kind", "Name")}
        store.config_entries.put_record("_gateway", gid, {**body, "Status": CRITICAL})
        marked.append(gid)
        log.warning("mesh gateway %s: no heartbeat for %.0f s: critical, it takes no traffic until it "
                    "registers again", gid, GATEWAY_TTL)
    return marked


class GatewayHealth:
    """The sweep loop of a control plane with a database."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP)
            try:
                await asyncio.to_thread(sweep, self.store)
            except Exception as e:  # the database may be away for a moment: the next sweep retries
                log.warning("gateway health sweep failed: %s", e)
