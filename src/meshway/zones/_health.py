"""Mesh gateways' TTL checks: a gateway that stops heartbeating leaves routing.

Rules (Consul's TTL check on a registered gateway: `critical` once the TTL passes without an
update; health-filtered queries, which is what Consul's gateways and proxies use, leave it out):
- A gateway re-registers every `_gwrun.HEARTBEAT` (5 s); its record is `passing` while the control
  plane it registers with has heard from it within `GATEWAY_TTL` (15 s).
- Every `SWEEP` s the control plane marks the records it has not heard from within the TTL
  `critical` (a write, so the change reaches the data planes and, through the summary, the other
  zones, as any change does). A control plane that just started gives every gateway a full TTL.
- A heartbeat from a `critical` gateway makes it `passing` again at once; a gateway that stops
  cleanly deregisters (SIGTERM), a killed one (kill -9, a crashed host, a cut link) turns critical.
- Heartbeats are kept per control plane process: a gateway registers with one (`-http-addr`).
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
_seen: dict[str, float] = {}  # gateway id -> monotonic time of its last registration (this process)
_started = [time.monotonic()]


def heard(gid: str) -> None:
    _seen[gid] = time.monotonic()


def forget(gid: str) -> None:
    _seen.pop(gid, None)


def expired(gid: str, now: float | None = None) -> bool:
    now = time.monotonic() if now is None else now
    return now - _seen.get(gid, _started[0]) >= GATEWAY_TTL


def status_of(record: dict[str, Any]) -> str:
    """A registered gateway's check as `get zones` shows it."""
    return CRITICAL if record.get("Status") == CRITICAL or expired(record["ID"]) else PASSING


def sweep(store: Any) -> list[str]:
    """Mark the gateways whose TTL passed `critical`; the ids marked."""
    marked = []
    for record in store.config_entries.records("_gateway"):
        if record.get("Status") != CRITICAL and expired(record["ID"]):
            body = {k: v for k, v in record.items() if k not in ("Kind", "Name")}
            store.config_entries.put_record("_gateway", record["ID"], {**body, "Status": CRITICAL})
            marked.append(record["ID"])
            log.warning("mesh gateway %s: no heartbeat for %.0f s: critical, it takes no traffic until it "
                        "registers again", record["ID"], GATEWAY_TTL)
    return marked


class GatewayHealth:
    """The sweep loop of a control plane with a database."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._task: asyncio.Task | None = None
        _started[0] = time.monotonic()

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
