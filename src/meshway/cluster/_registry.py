"""What the control plane knows about each data plane: pure bookkeeping behind the status endpoints.

A record outlives its connection (Kong keeps data planes listed until a purge delay passes), so an
operator can see a data plane that went away, or one refused for its version.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

SYNC_UNKNOWN = "unknown"
SYNC_NORMAL = "normal"
SYNC_VERSION_INCOMPATIBLE = "version_incompatible"
PURGE_DELAY = 14 * 24 * 3600  # seconds a silent data plane stays listed (Kong's default)


@dataclasses.dataclass
class DataPlaneRecord:
    """One data plane as `GET /clustering/data-planes` shows it."""

    id: str
    ip: str
    hostname: str
    version: str
    labels: dict[str, str]
    config_hash: str
    cert_expiry: int | None
    sync_status: str = SYNC_UNKNOWN
    last_seen: float = dataclasses.field(default_factory=time.time)
    created_at: float = dataclasses.field(default_factory=time.time)
    last_apply_ms: float | None = None
    last_error: str | None = None
    traffic: str | None = None  # its latest request counters, packed as sent (`_traffic`)

    def as_kong(self) -> dict[str, Any]:
        return {
            "id": self.id, "ip": self.ip, "hostname": self.hostname, "version": self.version,
            "sync_status": self.sync_status, "config_hash": self.config_hash,
            "last_seen": int(self.last_seen), "updated_at": int(self.last_seen),
            "created_at": int(self.created_at), "ttl": PURGE_DELAY,
            "cert_details": {"expiry_timestamp": self.cert_expiry}, "labels": dict(self.labels),
            "last_apply_ms": self.last_apply_ms, "last_error": self.last_error,
        }


class Registry:
    """Data-plane records by node id."""

    def __init__(self, purge_delay: float = PURGE_DELAY) -> None:
        self._records: dict[str, DataPlaneRecord] = {}
        self._purge_delay = purge_delay

    def hello(self, record: DataPlaneRecord) -> DataPlaneRecord:
        """A data plane (re)connected: its new facts replace the old, its history stays."""
        old = self._records.get(record.id)
        if old is not None:
            record.created_at = old.created_at
            record.last_apply_ms, record.last_error = old.last_apply_ms, old.last_error
            record.traffic = old.traffic
        self._records[record.id] = record
        return record

    def seen(self, node_id: str, config_hash: str | None = None, traffic: str | None = None) -> None:
        record = self._records.get(node_id)
        if record is not None:
            record.last_seen = time.time()
            if config_hash is not None:
                record.config_hash = config_hash
            if traffic is not None:
                record.traffic = traffic

    def applied(self, node_id: str, config_hash: str, ms: float) -> None:
        self.seen(node_id, config_hash)
        record = self._records.get(node_id)
        if record is not None:
            record.last_apply_ms, record.last_error = round(float(ms), 3), None

    def rejected(self, node_id: str, config_hash: str, error: str) -> None:
        self.seen(node_id)
        record = self._records.get(node_id)
        if record is not None:
            record.last_error = f"config {config_hash} rejected: {error}"

    def get(self, node_id: str) -> DataPlaneRecord | None:
        return self._records.get(node_id)

    def _purge(self) -> None:
        horizon = time.time() - self._purge_delay
        for node_id in [k for k, r in self._records.items() if r.last_seen < horizon]:
            del self._records[node_id]

    def data_planes(self) -> list[dict[str, Any]]:
        """Kong 3 `/clustering/data-planes` entries, oldest first."""
        self._purge()
        return [r.as_kong() for r in sorted(self._records.values(), key=lambda r: (r.created_at, r.id))]

    def traffic(self) -> list[tuple[str, str]]:
        """(node id, packed request counters) of every listed data plane that reported some."""
        self._purge()
        return [(r.id, r.traffic) for r in self._records.values() if r.traffic is not None]

    def status_map(self) -> dict[str, dict[str, Any]]:
        """Kong 2.0 `/clustering/status`: {id: {config_hash, hostname, ip, last_seen}}."""
        self._purge()
        return {
            r.id: {"config_hash": r.config_hash, "hostname": r.hostname, "ip": r.ip, "last_seen": int(r.last_seen)}
            for r in self._records.values()
        }
