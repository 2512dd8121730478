"""Control plane nodes on one database: who is alive, and the connections a dead one leaves behind.

Rules:
- Each node serving `meshway dp run` data planes writes a heartbeat row (a counter, its address,
  the time) every BEAT seconds, as status (no version bump). A node whose counter has not moved
  for DEAD_AFTER seconds, measured on the reader's own clock (no trust in the hosts' clocks
  agreeing), is dead: killed, crashed or cut off from the database.
- A dead node cannot say that its data planes disconnected. The first live node to notice does it
  for it, as Kuma's subscription finalizer does for a proxy without an active xDS stream
  (`metrics.dataplane.idleTimeout`): each insight whose newest subscription is the dead node's and
  still open gets its `disconnectTime` (under the row's lock, so a data plane that reconnected
  meanwhile keeps its new subscription); then the heartbeat row is deleted. The data planes of the
  dead node usually moved to another one long before (they reconnect at once); the others now
  show Offline and `mesh_dataplane_cleanup_age` applies to them.
- A node that finds its own row gone (declared dead while cut off from the database) records its
  connected data planes again (`revived`).
- One data plane per name across nodes: a data plane is `held_elsewhere` when its newest
  subscription is open on another live node under another node id (the same node id is the same
  data plane moving, as after its control plane died: let it in).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from . import _insights

log = logging.getLogger("meshway.mesh")
BEAT = 5.0  # seconds between two heartbeats of a node
DEAD_AFTER = 30.0  # seconds without a heartbeat before a node's connections are closed for it
FRESH = 2 * BEAT + 1  # seconds since a node's counter moved within which what it publishes counts
INSIGHT = "DataplaneInsight"


class Instances:
    """This node's heartbeat and its view of the other nodes (methods run in a thread)."""

    def __init__(self, store: Any, instance_id: str, info: dict[str, Any],
                 status: Callable[[], dict[str, Any]] = dict) -> None:
        self._store = store
        self.id = instance_id
        self._info = info
        self._status = status  # what else each heartbeat publishes (the mesh metrics of our data planes)
        self._beats = 0
        self._seen: dict[str, tuple[Any, float]] = {}  # id -> (its counter, our monotonic time it last moved)
        self._left: dict[str, Any] = {}  # id -> its counter when one of its data planes connected here

    def beat(self) -> tuple[list[str], bool]:
        """Write our heartbeat; (the nodes found dead, whether our own row had been removed)."""
        before = self._store.mesh.instances()
        revived = self._beats > 0 and self.id not in before
        self._beats += 1
        self._store.mesh.beat(self.id, {**self._info, **self._status(), "beats": self._beats,
                                        "time": _insights.now_iso()})
        now, dead = time.monotonic(), []
        for instance, body in before.items():
            if instance == self.id:
                continue
            counter, last = self._seen.get(instance, (None, now))
            if counter != body.get("beats"):
                self._seen[instance] = (body.get("beats"), now)
            elif now - last >= DEAD_AFTER:
                dead.append(instance)
        for instance in set(self._seen) - set(before):
            del self._seen[instance]
        for instance in [i for i, counter in self._left.items() if before.get(i, {}).get("beats") != counter]:
            del self._left[instance]  # it beat since (its sum no longer has the data plane) or is gone
        return dead, revived

    def alive(self, instance: str | None) -> bool:
        """Whether a node counts as alive: ours; one whose heartbeat moved lately; one not watched
        yet but with a row (just started: it gets the benefit of the doubt)."""
        if instance == self.id:
            return True
        if instance in self._seen:
            return time.monotonic() - self._seen[instance][1] < DEAD_AFTER
        return instance is not None and instance in self._store.mesh.instances()

    def moved_here(self, instance: str) -> None:
        """A data plane last connected to `instance` connected here: until that node beats again, its
        published sum still has the data plane's series, which now reports here (a killed node never
        beats again), so `fresh_peers` leaves that heartbeat out rather than count the data plane twice."""
        try:
            body = self._store.mesh.instances().get(instance)
        except Exception as e:  # status only: the heartbeat then counts until it is stale
            log.warning("cannot read control plane %s's heartbeat: %s", instance, e)
            return
        if body is not None:
            self._left[instance] = body.get("beats")

    def fresh_peers(self) -> list[dict[str, Any]]:
        """The other nodes' heartbeats whose counter moved within FRESH seconds on our clock: what they
        publish is current (a killed node's last heartbeat stops counting before it is declared dead),
        except a heartbeat from before one of its data planes moved here (`moved_here`)."""
        now = time.monotonic()
        return [body for instance, body in self._store.mesh.instances().items()
                if instance != self.id and instance in self._seen and now - self._seen[instance][1] < FRESH
                and (instance not in self._left or self._left[instance] != body.get("beats"))]

    def held_elsewhere(self, insight: dict | None, node_id: str) -> str | None:
        """The live node another data plane of this insight's name is connected to, or None (called
        with the insight row locked, so that two nodes admitting one name at once see each other)."""
        sub = _newest(insight)
        if sub is None or sub.get("disconnectTime") or sub.get("nodeId") in (None, node_id):
            return None
        holder = sub.get("controlPlaneInstanceId")
        if holder == self.id or not self.alive(holder):  # ours: the in-memory claim decides
            return None
        return holder

    def finalize(self, dead: str) -> int:
        """Close the open connections the dead node left in the insights; forget it. How many."""
        closed = 0
        for row in self._store.mesh.list(INSIGHT):
            sub = _newest(row)
            if sub is None or sub.get("controlPlaneInstanceId") != dead or sub.get("disconnectTime"):
                continue
            self._store.mesh.update_insight(row["mesh"], row["name"], lambda i: _close_if_held_by(i, dead))
            closed += 1
        self._store.mesh.forget_instance(dead)
        self._seen.pop(dead, None)
        if closed:
            log.warning("control plane %s stopped beating for %.0f s: %d data plane connection(s) it held marked "
                        "disconnected", dead, DEAD_AFTER, closed)
        return closed


def _newest(insight: dict | None) -> dict | None:
    subs = (insight or {}).get("subscriptions") or []
    return subs[-1] if subs else None


def _close_if_held_by(insight: dict | None, dead: str) -> dict:
    """The insight with its newest subscription closed, if it still is the dead node's and open."""
    insight = dict(insight or {})
    sub = _newest(insight)
    if sub is not None and sub.get("controlPlaneInstanceId") == dead and not sub.get("disconnectTime"):
        sub["disconnectTime"] = _insights.now_iso()
    return insight
