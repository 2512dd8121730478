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
- In memory of one control plane node: with several nodes, each shows its own data planes.
"""
from __future__ import annotations

import logging

log = logging.getLogger("meshway.mesh")
PERIOD = 5.0
RESEND_EVERY = 12  # periods: unchanged series are sent again once a minute
MAX_TEXT = 60 * 1024  # a control message is at most 64 KiB (`cluster._protocol`)
MAX_DATAPLANES = 20000


class MeshStats:
    def __init__(self) -> None:
        self.reports: dict[tuple[str, str], str] = {}
        self._told = False

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

    def view(self, mesh: str) -> str:
        from meshway.node._metrics import merge_worker_metrics

        texts = [text for (m, _), text in self.reports.items() if m == mesh]
        gauge = ("# HELP meshway_mesh_dataplanes_reporting data planes whose mesh metrics are summed here\n"
                 "# TYPE meshway_mesh_dataplanes_reporting gauge\n"
                 f'meshway_mesh_dataplanes_reporting{{mesh="{mesh}"}} {len(texts)}\n')
        return (merge_worker_metrics(texts) if texts else "") + gauge


MESH_STATS = MeshStats()  # the control plane's (one per process: the master runs the server and the Admin API)


def mesh_series(text: str) -> str:
    """Only the per-service mesh families of a data plane's /metrics text."""
    keep = [line for line in text.splitlines()
            if line.startswith("meshway_mesh_") or line.startswith(("# HELP meshway_mesh_", "# TYPE meshway_mesh_"))]
    return "\n".join(keep) + "\n" if keep else ""
