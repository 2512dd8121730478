"""The control plane's mesh-wide view of the per-service metrics (`_metrics`).

Rules:
- Each `dp run` data plane sends its mesh series (Prometheus text, its workers' sum) over its
  session every `PERIOD` seconds when they changed since its last report, and once a minute
  anyway, so a control plane that restarted or took over gets them back (`mesh_stats`).
- A report is at most `MAX_TEXT` bytes (a control message's bound): a data plane with more series
  does not send them (one log line) and keeps them on its own `/metrics`.
- The control plane keeps the latest report of each data plane in memory (at most `MAX_TEXT`
  bytes of one report, at most `MAX_DATAPLANES` data planes; what is beyond is refused with one
  log line), and drops it when the data plane says goodbye (its Dataplane is deleted).
- `GET /meshes/{mesh}/metrics` sums the reports of the mesh's data planes, series by series (the
  labels keep `direction`, so the calling and the called side of each call stay apart), plus
  `meshway_mesh_dataplanes_reporting`. A data plane that restarts starts again from zero, as its
  own `/metrics` does; a control plane that restarts knows nothing until the next reports.
- A data plane's report is dropped when its connection ends (it sends one again as soon as it is
  connected, here or to another node), so a data plane that moved is not counted twice.
- Several control plane nodes on one database: each node publishes the sum of its data planes'
  reports, per mesh, in its heartbeat row (`_instances`, every BEAT seconds), and the view adds the
  sums of the other nodes whose heartbeat is fresh. Every node shows the whole mesh, at most a
  heartbeat late for the data planes of the other nodes; a killed node's data planes count again
  once they report to a live node (within PERIOD of their reconnecting). A node's sum stops
  counting on a node where one of its data planes connected, until it beats again
  (`Instances.moved_here`): a moved data plane is never counted twice, at worst its old node's
  other data planes are missing for one heartbeat.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger("meshway.mesh")
PERIOD = 5.0
RESEND_EVERY = 12  # periods: unchanged series are sent again once a minute
MAX_TEXT = 60 * 1024  # a control message is at most 64 KiB (`cluster._protocol`)
MAX_DATAPLANES = 20000


class MeshStats:
    def __init__(self) -> None:
        self.reports: dict[tuple[str, str], str] = {}
        self._told = False
        self.peers: Callable[[], list[dict[str, Any]]] = list  # the other nodes' fresh heartbeats (a DB read)

    def report(self, mesh: str, name: str, text: object) -> None:
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            log.warning("dataplane %s/%s: mesh metrics report refused (not text, or over %d bytes)", mesh, name,
                        MAX_TEXT)
            return
        if (mesh, name) not in self.reports and len(self.reports) >= MAX_DATAPLANES:
            if not self._told:
                self._told = True
                log.warning("mesh metrics: more than %d data planes report; the others are left out", MAX_DATAPLANES)
            return
        self.reports[(mesh, name)] = text

    def forget(self, mesh: str, name: str) -> None:
        self.reports.pop((mesh, name), None)

    def published(self) -> dict[str, Any]:
        """What this node's heartbeat carries: {"meshStats": {mesh: {"text": sum, "dataplanes": n}}}."""
        from meshway.node._metrics import merge_worker_metrics

        by_mesh: dict[str, list[str]] = {}
        for (mesh, _), text in self.reports.items():
            by_mesh.setdefault(mesh, []).append(text)
        return {"meshStats": {mesh: {"text": merge_worker_metrics(texts), "dataplanes": len(texts)}
                              for mesh, texts in by_mesh.items()}}

    def view(self, mesh: str, peers: list[dict[str, Any]] = ()) -> str:
        """The mesh's series: our data planes' reports plus the sums other nodes publish (`peers`:
        their fresh heartbeat bodies)."""
        from meshway.node._metrics import merge_worker_metrics

        texts = [text for (m, _), text in self.reports.items() if m == mesh]
        count = len(texts)
        for body in peers:
            theirs = ((body.get("meshStats") or {}).get(mesh)) or {}
            if isinstance(theirs.get("text"), str) and isinstance(theirs.get("dataplanes"), int):
                texts.append(theirs["text"])
                count += theirs["dataplanes"]
        gauge = ("# HELP meshway_mesh_dataplanes_reporting data planes whose mesh metrics are summed here\n"
                 "# TYPE meshway_mesh_dataplanes_reporting gauge\n"
                 f'meshway_mesh_dataplanes_reporting{{mesh="{mesh}"}} {count}\n')
        return (merge_worker_metrics(texts) if texts else "") + gauge


MESH_STATS = MeshStats()  # the control plane's (one per process: the master runs the server and the Admin API)


def mesh_series(text: str) -> str:
    """Only the per-service mesh families of a data plane's /metrics text."""
    keep = [line for line in text.splitlines()
            if line.startswith("meshway_mesh_") or line.startswith(("# HELP meshway_mesh_", "# TYPE meshway_mesh_"))]
    return "\n".join(keep) + "\n" if keep else ""
