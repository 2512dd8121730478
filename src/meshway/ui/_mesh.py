"""Data planes and mesh pages (Kuma GUI's lists, Kong Manager's data-plane nodes).

Data planes are of two kinds on one page: hybrid gateway data planes (`GET /clustering/data-planes`
on a control plane) and mesh data planes (`GET /meshes/{mesh}/dataplanes+insights`). A hybrid data
plane pings every `cluster_data_plane_heartbeat` seconds; one not seen for 1.5 heartbeats is shown
Offline (Kong lists it until its purge delay, with its last_seen). The table's body is re-read
every 2 s by `static/app.js` (`?fragment=rows`), so a row turns Offline without a reload.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.ui._client import no_cycle_collection
from meshway.ui._edgestats import WINDOW, EdgeTraffic, MeshHistories, sampled
from meshway.ui._graph import SIZE, service_graph

PAGE_SIZE = 100
RECENT = 15  # seconds of traffic that decide how an edge is drawn (3 of the data planes' reports)
SOON = 7 * 24 * 3600  # a certificate expiring within a week is flagged (Kuma's certificate-expires-soon)


def routes(gui: Any) -> list[Route]:
    return [Route("/data-planes", _data_planes(gui), methods=["GET"]),
            Route("/meshes", _meshes(gui), methods=["GET"]),
            Route("/meshes/{mesh}", _mesh(gui), methods=["GET"])]


def _data_planes(gui: Any):
    async def page(request: Request) -> Response:
        token = gui.token(request)
        q = request.query_params.get("q", "").strip().lower()
        text = request.query_params.get("start", "0")
        start = int(text) if text.isdigit() else 0
        with no_cycle_collection():  # the Admin API reads every data plane of the store, a search all their overviews
            found = await (_searched(gui, token, q, start) if q else _paged(gui, token, start))
        if not isinstance(found, tuple):
            return gui.failure(request, found)
        shown, total = found
        context = dict(title="Data planes", rows=shown, total=total, start=start, page=PAGE_SIZE, q=q)
        if request.query_params.get("fragment") == "rows":
            return gui.render(request, "dataplane_rows.html", **context)
        return gui.render(request, "dataplanes.html", **context)

    return page


async def _paged(gui: Any, token: str | None, start: int) -> tuple[list[dict], int] | Any:
    """Rows `start`..`start + PAGE_SIZE` of the hybrid data planes then each mesh's, asking the Admin
    API for those rows only (Kuma's `size`/`offset`): a page of 5,000 data planes costs 100 rows."""
    rows = await _hybrid_rows(gui, token)
    if not isinstance(rows, list):
        return rows
    shown, total = rows[start:start + PAGE_SIZE], len(rows)
    meshes = await gui.admin.get("/meshes", token)
    if meshes.status == 401:
        return meshes
    for mesh in (meshes.body.get("items", []) if meshes.ok else []):
        want = PAGE_SIZE - len(shown)  # 0: only this mesh's total is needed (a page of one)
        found = await gui.admin.get(f"/meshes/{mesh['name']}/dataplanes+insights", token, size=max(want, 1),
                                    offset=max(0, start + len(shown) - total))
        if not found.ok:
            continue
        if want:
            shown += [mesh_row(o) for o in found.body.get("items", [])]
        total += found.body.get("total", 0)
    return shown, total


async def _searched(gui: Any, token: str | None, q: str, start: int) -> tuple[list[dict], int] | Any:
    """The rows matching `q`, searched over every data plane (Kuma GUI's keys: name, mesh, address,
    service tags); the full row is made only for the page shown."""
    rows, overviews, failed = await _listed(gui, token)
    if failed is not None:
        return failed
    rows = [r for r in rows if q in " ".join((r["name"], r["address"])).lower()]
    overviews = [o for o in overviews if q in _search_text(o)]
    return _page(rows, overviews, start), len(rows) + len(overviews)


def _page(rows: list[dict], overviews: list[dict], start: int) -> list[dict]:
    """Rows `start`..`start + PAGE_SIZE` of hybrid rows then mesh overviews; the full row (status,
    inbounds, certificate) is made only for the overviews shown: 100 of 5,000."""
    out = rows[start:start + PAGE_SIZE]
    first = max(0, start - len(rows))
    return out + [mesh_row(o) for o in overviews[first:first + PAGE_SIZE - len(out)]]


def _search_text(overview: dict) -> str:
    networking = (overview.get("dataplane") or {}).get("networking") or {}
    tags = " ".join(str(v) for ib in networking.get("inbound") or () for v in (ib.get("tags") or {}).values())
    return f"{overview.get('name', '')} {overview.get('mesh', '')} {networking.get('address', '')} {tags}".lower()


async def _hybrid_rows(gui: Any, token: str | None) -> list[dict] | Any:
    """A control plane's hybrid data planes as rows (a failed answer when the token is refused)."""
    if gui.settings.role != "control_plane":
        return []
    answer = await gui.admin.get("/clustering/data-planes", token)
    if answer.status == 401:
        return answer
    # 400 without a cluster listener (no cluster_cert: `meshway dp run` data planes only)
    hybrid = answer.body.get("data", []) if answer.ok else []
    rows = [hybrid_row(dp, gui.settings.cluster_data_plane_heartbeat) for dp in hybrid]
    cp_hash = gui.config_hash()
    for row in rows:
        row["behind"] = bool(cp_hash and row["config_hash"] and row["config_hash"] != cp_hash)
    return rows


async def _listed(gui: Any, token: str | None) -> tuple[list[dict], list[dict], Any]:
    """(hybrid data planes as rows, every mesh data plane's overview as the Admin API gives it, a failed answer)."""
    rows = await _hybrid_rows(gui, token)
    if not isinstance(rows, list):
        return [], [], rows
    meshes = await gui.admin.get("/meshes", token)
    if meshes.status == 401:
        return [], [], meshes
    overviews: list[dict] = []
    for mesh in (meshes.body.get("items", []) if meshes.ok else []):
        found = await gui.admin.get(f"/meshes/{mesh['name']}/dataplanes+insights", token)
        overviews += found.body.get("items", []) if found.ok else []
    return rows, overviews, None


def hybrid_row(dp: dict, heartbeat: float) -> dict:
    now = time.time()
    seen = dp.get("last_seen") or 0
    expiry = (dp.get("cert_details") or {}).get("expiry_timestamp")
    return {"kind": "gateway", "name": dp.get("hostname") or dp.get("id"), "id": dp.get("id"), "mesh": "",
            "address": dp.get("ip", ""), "version": dp.get("version", ""), "services": "",
            "status": "Online" if now - seen <= 1.5 * float(heartbeat) else "Offline", "notes": dp.get("last_error") or "",
            "config_hash": dp.get("config_hash") or "", "last_seen": _ago(now - seen),
            "apply_ms": dp.get("last_apply_ms"), "cert_expiry": _when(expiry), "cert_warning": _cert_warning(expiry),
            "inbounds": [], "behind": False}


def mesh_row(item: dict) -> dict:
    from meshway.mesh._insights import status

    spec, insight = item.get("dataplane") or {}, item.get("dataplaneInsight") or {}
    networking = spec.get("networking") or {}
    dataplane = {"mesh": item.get("mesh"), "name": item.get("name"), **spec}
    state, notes = status(dataplane, insight)
    subs = insight.get("subscriptions") or []
    last = subs[-1] if subs else {}
    expiry = _parse_iso((insight.get("mTLS") or {}).get("certificateExpirationTime"))
    inbounds = [{"port": ib.get("port"), "service": (ib.get("tags") or {}).get("kuma.io/service", ""),
                 "ready": (ib.get("health") or {}).get("ready", (insight.get("inboundHealth") or {}).get(str(ib.get("port"))))}
                for ib in networking.get("inbound") or []]
    version = ((last.get("version") or {}).get("kumaDp") or {}).get("version", "") if isinstance(last.get("version"), dict) else ""
    return {"kind": "mesh", "name": item.get("name"), "id": item.get("name"), "mesh": item.get("mesh"),
            "address": networking.get("address", ""), "version": version,
            "services": ", ".join(sorted({i["service"] for i in inbounds if i["service"]})),
            "status": state, "notes": "; ".join(notes), "config_hash": "", "behind": False,
            "last_seen": last.get("disconnectTime") or last.get("connectTime") or "never", "apply_ms": None,
            "cert_expiry": _when(expiry), "cert_warning": _cert_warning(expiry), "inbounds": inbounds}


def _ago(seconds: float) -> str:
    return f"{int(seconds)} s ago" if seconds < 120 else f"{int(seconds // 60)} min ago"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if ts else ""


def _cert_warning(ts: float | None) -> str:
    if not ts:
        return ""
    left = ts - time.time()
    return "certificate expired" if left <= 0 else ("certificate expires soon" if left < SOON else "")


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    import calendar

    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def _meshes(gui: Any):
    async def page(request: Request) -> Response:
        token = gui.token(request)
        answer = await gui.admin.get("/meshes", token)
        if not answer.ok:
            return gui.failure(request, answer)
        return gui.render(request, "meshes.html", title="Meshes", meshes=answer.body.get("items", []))

    return page


def _mesh(gui: Any):
    histories = MeshHistories()

    async def page(request: Request) -> Response:
        with no_cycle_collection():  # it reads every data plane of the mesh
            return await mesh_page(request)

    async def mesh_page(request: Request) -> Response:
        name, token = request.path_params["mesh"], gui.token(request)
        mesh = await gui.admin.get(f"/meshes/{name}", token)
        if not mesh.ok:
            return gui.failure(request, mesh)
        perms = await gui.admin.get(f"/meshes/{name}/meshtrafficpermissions", token)
        policies = perms.body.get("items", []) if perms.ok else []
        edge = request.query_params.get("edge")
        if request.query_params.get("fragment") == "graph":  # the 2 s refresh: the resources, no insights
            dps = await gui.admin.get(f"/meshes/{name}/dataplanes", token)
            section = _section(mesh.body, [], policies, dps.body.get("items", []) if dps.ok else [])
            graph = await _graph_context(gui, token, histories, section, name, edge)
            return gui.render(request, "mesh_graph.html", mesh=mesh.body, **graph)
        dps = await gui.admin.get(f"/meshes/{name}/dataplanes+insights", token)
        overviews = dps.body.get("items", []) if dps.ok else []
        section = _section(mesh.body, overviews, policies)
        graph = await _graph_context(gui, token, histories, section, name, edge)
        zones = await gui.admin.get("/zones", token)
        text = request.query_params.get("services_from", "0")
        services_from = int(text) if text.isdigit() else 0
        return gui.render(request, "mesh.html", title=f"Mesh {name}", mesh=mesh.body,
                          rows=[mesh_row(o) for o in overviews[:PAGE_SIZE]], total=len(overviews),
                          services=_services(section["dataplanes"], overviews), services_from=services_from,
                          page=PAGE_SIZE, permissions=policies, **graph,
                          zones=zones.body.get("items", []) if zones.ok else [],
                          gateways=[mesh_row(o) | {"gateway": _gateway(o)} for o in overviews if _gateway(o)][:PAGE_SIZE])

    return page


async def _graph_context(gui: Any, token: str | None, histories: MeshHistories, section: dict, mesh: str,
                         chosen_key: str | None) -> dict[str, Any]:
    """The graph, its edges with the last minute's traffic (`_edgestats`), and the edge asked about."""
    answer = await gui.admin.call_text("GET", f"/meshes/{mesh}/metrics", token)
    history = sampled(histories, mesh, time.monotonic(), answer.body if answer.ok else None)
    numbers, span = history.window(WINDOW)
    recent, _ = history.window(RECENT)
    nodes, edges = service_graph(section, mesh, seen=numbers)
    edges = [dataclasses.replace(e, traffic=numbers.get((e.source, e.destination)),
                                 state=(recent.get((e.source, e.destination)) or EdgeTraffic()).state) for e in edges]
    drawn = {(e.source, e.destination) for e in edges}
    others = sorted(((pair, t) for pair, t in numbers.items() if pair not in drawn), key=lambda item: item[0])
    return dict(nodes=nodes, edges=edges, size=SIZE, span=span, window=WINDOW, others=others,
                counted=len(history.samples) >= 2, chosen=next((e for e in edges if e.key == chosen_key), None))


def _gateway(overview: dict) -> dict | None:
    """A gateway data plane's `networking.gateway` (Kuma's DELEGATED/BUILTIN, Consul's mesh gateways), else None."""
    gateway = ((overview.get("dataplane") or {}).get("networking") or {}).get("gateway")
    if not gateway:
        return None
    return {"type": gateway.get("type") or "DELEGATED", "service": (gateway.get("tags") or {}).get("kuma.io/service", "")}


def _services(dataplanes: list[dict], overviews: list[dict]) -> list[dict]:
    """Each service of the mesh: its data planes' names and how many are online (no full rows: 5,000 is cheap)."""
    from meshway.mesh._insights import is_online
    from meshway.mesh._resources import services

    out: dict[str, dict] = {}
    for dp, overview in zip(dataplanes, overviews):
        online = is_online(overview.get("dataplaneInsight"))
        for service in services(dp):
            entry = out.setdefault(service, {"name": service, "dataplanes": [], "online": 0})
            entry["dataplanes"].append(dp["name"])
            entry["online"] += online
    return sorted(out.values(), key=lambda e: e["name"])


def _section(mesh: dict, overviews: list[dict], policies: list[dict], dataplanes: list[dict] | None = None) -> dict:
    """The mesh's resources in the snapshot section's shape `meshway explain` reads (as the CLI
    builds it), from the overviews, or from the Dataplanes themselves when given."""
    name = mesh["name"]
    if dataplanes is None:
        dataplanes = [{"type": "Dataplane", "mesh": name, "name": o["name"], **(o.get("dataplane") or {})}
                      for o in overviews]
    return {"meshes": [mesh], "dataplanes": dataplanes,
            "policies": [{"type": "MeshTrafficPermission", "mesh": name, **p} for p in policies]}
