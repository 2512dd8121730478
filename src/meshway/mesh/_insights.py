"""Dataplane insights (Kuma's `DataplaneInsight`) and the overview `dataplanes+insights` serves.

Rules (Kuma's `DataplaneOverviewResource.Status` and `inspect dataplanes`):
- A data plane is **Online** while its newest subscription (one connection to the control
  plane) has no `disconnectTime`; else **Offline**.
- An inbound whose `health.ready` is false (in the resource, or as the data plane last reported
  it) adds the note `inbound[port=P,svc=S] is not ready`; an online data plane with such notes
  is **Partially degraded**, and **Offline** when none of its inbounds is ready.
- Times are RFC 3339 strings in UTC; counters are integers.
"""
from __future__ import annotations

import calendar
import time
from typing import Any

from ._resources import inbounds

ONLINE, OFFLINE, DEGRADED = "Online", "Offline", "Partially degraded"
MAX_SUBSCRIPTIONS = 5  # Kuma keeps a short history of connections


def now_iso(ts: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def connected(insight: dict | None, sub_id: str, cp_id: str, versions: dict[str, Any],
              node_id: str | None = None) -> dict:
    """The insight after a new connection: a new subscription, older ones closed. `nodeId` (the
    data plane's node id, beyond Kuma's fields) tells the control plane nodes on one database
    whether a newcomer of that name is the same data plane moving (see `_instances`)."""
    insight = dict(insight or {})
    subs = [dict(s) for s in insight.get("subscriptions") or ()]
    for s in subs:
        s.setdefault("disconnectTime", now_iso())
    subs.append({"id": sub_id, "controlPlaneInstanceId": cp_id, "connectTime": now_iso(),
                 "status": {"lastUpdateTime": None, "total": {"responsesSent": 0, "responsesAcknowledged": 0,
                                                              "responsesRejected": 0}},
                 "version": versions, **({"nodeId": node_id} if node_id else {})})
    insight["subscriptions"] = subs[-MAX_SUBSCRIPTIONS:]
    return insight


def reopened(insight: dict | None, sub_id: str) -> dict:
    """Subscription `sub_id` open again if it is the newest (another node closed it for us while we
    were cut off from the database, see `_instances`)."""
    insight = dict(insight or {})
    sub = _current(insight)
    if sub is not None and sub.get("id") == sub_id:
        sub.pop("disconnectTime", None)
    return insight


def offline_since(insight: dict | None) -> float | None:
    """When the newest connection ended (epoch seconds); None while connected or never connected."""
    sub = _current(insight or {})
    when = (sub or {}).get("disconnectTime")
    if not when:
        return None
    try:
        return float(calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def last_holder(insight: dict | None) -> str | None:
    """The control plane node of the insight's newest subscription, open or closed."""
    subs = (insight or {}).get("subscriptions") or []
    return subs[-1].get("controlPlaneInstanceId") if subs else None


def _current(insight: dict) -> dict | None:
    subs = insight.get("subscriptions") or []
    return subs[-1] if subs else None


def config_events(insight: dict, sub_id: str, counts: dict[str, int]) -> dict:
    """Add counts of pushed (`sent`), applied (`acknowledged`) and rejected configurations to the
    subscription `sub_id` (a connection since replaced keeps its own)."""
    insight = dict(insight)
    for sub in insight.get("subscriptions") or ():
        if sub.get("id") == sub_id:
            total = sub["status"]["total"]
            for kind, n in counts.items():
                key = {"sent": "responsesSent", "acknowledged": "responsesAcknowledged",
                       "rejected": "responsesRejected"}[kind]
                total[key] = int(total.get(key) or 0) + n
            sub["status"]["lastUpdateTime"] = now_iso()
    return insight


def disconnected(insight: dict | None, sub_id: str) -> dict:
    insight = dict(insight or {})
    for s in insight.get("subscriptions") or ():
        if s.get("id") == sub_id and not s.get("disconnectTime"):
            s["disconnectTime"] = now_iso()
    return insight


def certificate(insight: dict | None, not_after: float) -> dict:
    insight = dict(insight or {})
    mtls = dict(insight.get("mTLS") or {})
    mtls.update(certificateExpirationTime=now_iso(not_after), lastCertificateRegeneration=now_iso(),
                certificateRegenerations=int(mtls.get("certificateRegenerations") or 0) + 1,
                issuedBackend="builtin", supportedBackends=["builtin"])
    insight["mTLS"] = mtls
    return insight


def health(insight: dict | None, ready: dict[str, bool]) -> dict:
    """The data plane's last probe of its inbounds ({"<port>": ready})."""
    return {**(insight or {}), "inboundHealth": dict(ready)}


def is_online(insight: dict | None) -> bool:
    sub = _current(insight or {})
    return bool(sub and sub.get("connectTime") and not sub.get("disconnectTime"))


def status(dataplane: dict, insight: dict | None) -> tuple[str, list[str]]:
    """(Online | Offline | Partially degraded, notes)."""
    reported = (insight or {}).get("inboundHealth") or {}
    notes, total = [], 0
    for inbound in inbounds(dataplane):
        if inbound.get("state") == "Ignored":
            continue
        total += 1
        ready = (inbound.get("health") or {}).get("ready")
        if ready is None:
            ready = reported.get(str(inbound["port"]))
        if ready is False:
            notes.append(f"inbound[port={inbound['port']},svc={inbound['service']}] is not ready")
    if not is_online(insight):
        return OFFLINE, notes
    if notes and len(notes) == total:
        return OFFLINE, notes
    return (DEGRADED if notes else ONLINE), notes


def overview(dataplane: dict, insight: dict | None) -> dict:
    """One item of `GET /meshes/{mesh}/dataplanes+insights` (Kuma's `DataplaneOverview`)."""
    spec = {k: v for k, v in dataplane.items() if k not in ("type", "mesh", "name", "creationTime", "modificationTime")}
    insight = {k: v for k, v in (insight or {}).items() if k not in ("type", "mesh", "name")}
    return {"type": "DataplaneOverview", "mesh": dataplane["mesh"], "name": dataplane["name"],
            "creationTime": dataplane.get("creationTime"), "modificationTime": dataplane.get("modificationTime"),
            "dataplane": spec, "dataplaneInsight": insight}
