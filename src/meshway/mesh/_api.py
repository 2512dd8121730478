"""Kuma's resource API on the control plane's Admin API: meshes, dataplanes, overviews.

Paths and shapes as Kuma 2.x's (`kumactl` talks to them):
- `GET /meshes`, `GET|PUT|DELETE /meshes/{mesh}`;
- `GET /dataplanes`, `GET /meshes/{mesh}/dataplanes`, `GET|PUT|DELETE /meshes/{mesh}/dataplanes/{name}`;
- `GET /meshes/{mesh}/dataplanes+insights[/{name}]`, `GET /meshes/{mesh}/dataplanes/{name}/_policies`;
- `GET /meshes/{mesh}/service-insights[/{name}]` (per service counts, see `_serviceinsights.py`);
- `POST /tokens/dataplane` (see `_tokens.py`).
Lists are `{"total", "items", "next"}`; PUT answers 201 when it creates, 200 when it replaces;
errors are Kuma's `{"title", "details", "causes": [{"field", "message"}]}` (400) or 404.
Bodies are JSON or YAML. Without a database (DB-less) the resources are read-only, from the snapshot.
"""
from __future__ import annotations

import asyncio
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.admin._http import JSONResponse

from . import _insights
from ._resources import ResourceError, parse_resource


def _error(status: int, title: str, details: str, causes: list[tuple[str, str]] = ()) -> JSONResponse:
    body: dict[str, Any] = {"title": title, "details": details}
    if causes:
        body["causes"] = [{"field": f, "message": m} for f, m in causes]
    return JSONResponse(body, status_code=status)


def _not_found(kind: str, name: str, mesh: str | None = None) -> JSONResponse:
    where = f" in mesh {mesh}" if mesh else ""
    return _error(404, "Could not retrieve a resource", f"{kind} {name}{where} not found")


MAX_PAGE = 1000


def _page(request: Request, items: list) -> tuple[list, str | None] | JSONResponse:
    """Kuma's paging: `size` items from `offset` (a number), `next` the URL of the following page.
    Without `size` a list is whole, as it always was here (Kuma's default page is 100)."""
    size, offset = request.query_params.get("size"), request.query_params.get("offset", "0")
    if size is None:
        return items, None
    causes = ([("size", f"must be a whole number from 1 to {MAX_PAGE}")]
              if not size.isdigit() or not 1 <= int(size) <= MAX_PAGE else [])
    causes += [] if offset.isdigit() else [("offset", "must be a whole number")]
    if causes:
        return _error(400, "Could not list resources", "invalid page", causes)
    start, end = int(offset), int(offset) + int(size)
    following = str(request.url.include_query_params(offset=end)) if end < len(items) else None
    return items[start:end], following


def _listing(items: list[dict], request: Request) -> JSONResponse:
    """The list as Kuma gives it (`total`, `items`, `next`), paged when asked."""
    paged = _page(request, items)
    if isinstance(paged, JSONResponse):
        return paged
    return JSONResponse({"total": len(items), "items": paged[0], "next": paged[1]})


GATEWAY_FILTERS = {"true", "false", "delegated", "builtin"}


def _gateways(dataplanes: list[dict], wanted: str | None) -> list[dict] | JSONResponse:
    """Kuma's `?gateway=` filter of `dataplanes+insights`: true (any gateway), false (none), delegated, builtin."""
    if wanted is None:
        return dataplanes
    if wanted not in GATEWAY_FILTERS:
        return _error(400, "Could not list resources", "invalid filter",
                      [("gateway", f"must be one of {', '.join(sorted(GATEWAY_FILTERS))}")])

    def kind(dp: dict) -> str | None:
        gateway = (dp.get("networking") or {}).get("gateway")
        return None if not gateway else ("builtin" if gateway.get("type") == "BUILTIN" else "delegated")

    if wanted in ("true", "false"):
        return [dp for dp in dataplanes if (kind(dp) is not None) == (wanted == "true")]
    return [dp for dp in dataplanes if kind(dp) == wanted]


class _Resources:
    """The reads and writes behind the routes: the store, or the DB-less snapshot."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    @property
    def store(self):
        return self.ctx.store

    async def list(self, rtype: str, mesh: str | None = None) -> list[dict]:
        if self.store is None:
            section = (self.ctx.dbless.snapshot or {}).get("mesh_resources") or {}
            rows = section.get({"Mesh": "meshes", "Dataplane": "dataplanes"}.get(rtype, "policies")) or []
            rows = [r for r in rows if r.get("type", rtype) == rtype]
            return [r for r in rows if mesh is None or r.get("mesh", r.get("name")) == mesh]
        return await self.ctx.call(self.store.mesh.list, rtype, mesh)

    async def get(self, rtype: str, mesh: str, name: str) -> dict | None:
        if self.store is None:
            return next((r for r in await self.list(rtype, mesh) if r["name"] == name), None)
        return await self.ctx.call(self.store.mesh.get, rtype, mesh, name)

    async def insights_by_name(self, mesh: str) -> dict[str, dict]:
        if self.store is None:
            return {}
        return {i["name"]: i for i in await self.ctx.call(self.store.mesh.list, "DataplaneInsight", mesh)}

    async def insights(self, mesh: str, dataplanes: list[dict]) -> list[dict]:
        if self.store is None:
            return [_insights.overview(dp, None) for dp in dataplanes]
        found = {i["name"]: i for i in await self.ctx.call(self.store.mesh.list, "DataplaneInsight", mesh)}
        out = []
        for dp in dataplanes:
            insight = found.get(dp["name"])
            if insight:
                insight = {k: v for k, v in insight.items() if k not in ("creationTime", "modificationTime")}
            out.append(_insights.overview(dp, insight))
        return out


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return yaml.safe_load(raw.decode("utf-8")) if raw.strip() else {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ResourceError([("", f"the body is not JSON or YAML: {e}")]) from None


def mesh_routes(ctx: Any) -> list[Route]:
    """The routes, to put in front of the Kong-compatible ones."""
    res = _Resources(ctx)

    async def list_meshes(request: Request) -> Response:
        return _listing(await res.list("Mesh"), request)

    async def list_all_dataplanes(request: Request) -> Response:
        return _listing(await res.list("Dataplane"), request)

    async def list_dataplanes(request: Request) -> Response:
        mesh = request.path_params["mesh"]
        if await res.get("Mesh", mesh, mesh) is None:
            return _not_found("Mesh", mesh)
        return _listing(await res.list("Dataplane", mesh), request)

    async def one(request: Request, rtype: str) -> Response:
        mesh = request.path_params["mesh"]
        name = request.path_params.get("name", mesh)
        if request.method == "GET":
            found = await res.get(rtype, mesh, name)
            return JSONResponse(found) if found else _not_found(rtype, name, None if rtype == "Mesh" else mesh)
        if ctx.store is None:
            return _error(405, "Method not allowed", "resources are read-only without a database")
        if request.method == "DELETE":
            gone = await ctx.call(ctx.store.mesh.delete, rtype, mesh, name)
            return JSONResponse({}) if gone else _not_found(rtype, name, None if rtype == "Mesh" else mesh)
        return await put(request, rtype, mesh, name)

    async def put(request: Request, rtype: str, mesh: str, name: str) -> Response:
        from meshway.store._mesh import MeshNotFound

        try:
            resource = parse_resource(await _body(request), mesh=None if rtype == "Mesh" else mesh, name=name, kind=rtype)
            stored, created = await ctx.call(ctx.store.mesh.put, resource)
        except ResourceError as e:
            return _error(400, "Could not process a resource", "Resource is not valid", e.causes)
        except MeshNotFound as e:
            return _error(400, "Could not process a resource", "Resource is not valid", [("mesh", str(e))])
        return JSONResponse(stored, status_code=201 if created else 200)

    async def mesh_one(request: Request) -> Response:
        return await one(request, "Mesh")

    async def dataplane_one(request: Request) -> Response:
        return await one(request, "Dataplane")

    def policy_routes(rtype: str, collection: str) -> list[Route]:
        async def listing(request: Request) -> Response:
            mesh = request.path_params["mesh"]
            if await res.get("Mesh", mesh, mesh) is None:
                return _not_found("Mesh", mesh)
            return _listing(await res.list(rtype, mesh), request)

        async def single(request: Request) -> Response:
            return await one(request, rtype)

        return [Route(f"/meshes/{{mesh}}/{collection}", listing, methods=["GET"]),
                Route(f"/meshes/{{mesh}}/{collection}/{{name}}", single, methods=["GET", "PUT", "DELETE"])]

    async def overviews(request: Request) -> Response:
        mesh = request.path_params["mesh"]
        if await res.get("Mesh", mesh, mesh) is None:
            return _not_found("Mesh", mesh)
        dataplanes = _gateways(await res.list("Dataplane", mesh), request.query_params.get("gateway"))
        if isinstance(dataplanes, JSONResponse):
            return dataplanes
        paged = _page(request, dataplanes)
        if isinstance(paged, JSONResponse):
            return paged
        # insights for the page's data planes only: a page of 100 of 5,000 costs 100
        return JSONResponse({"total": len(dataplanes), "items": await res.insights(mesh, paged[0]), "next": paged[1]})

    async def overview(request: Request) -> Response:
        mesh, name = request.path_params["mesh"], request.path_params["name"]
        found = await res.get("Dataplane", mesh, name)
        if found is None:
            return _not_found("Dataplane", name, mesh)
        return JSONResponse((await res.insights(mesh, [found]))[0])

    async def service_insights(request: Request) -> Response:
        from ._serviceinsights import service_insights as computed

        mesh = request.path_params["mesh"]
        if await res.get("Mesh", mesh, mesh) is None:
            return _not_found("Mesh", mesh)
        items = computed(mesh, await res.list("Dataplane", mesh), await res.insights_by_name(mesh))
        name = request.path_params.get("name")
        if name is None:
            return _listing(items, request)
        found = next((i for i in items if i["name"] == name), None)
        return JSONResponse(found) if found else _not_found("ServiceInsight", name, mesh)

    async def dataplane_policies(request: Request) -> Response:
        """Kuma's `_policies`: the policies selecting the data plane and their origins (KRIs), as
        `meshway inspect dataplane NAME --type policies -o json` prints them (`_explain.policies_list`)."""
        from ._explain import policies_list

        mesh, name = request.path_params["mesh"], request.path_params["name"]
        if await res.get("Mesh", mesh, mesh) is None:
            return _not_found("Mesh", mesh)
        dataplanes = [{**d, "mesh": d.get("mesh", mesh)} for d in await res.list("Dataplane", mesh)]
        if not any(d["name"] == name for d in dataplanes):
            return _not_found("Dataplane", name, mesh)
        section = {"meshes": [await res.get("Mesh", mesh, mesh)], "dataplanes": dataplanes,
                   "policies": [{"type": rtype, "mesh": mesh, **p}
                                for rtype in ("MeshTrafficPermission", "TrafficPermission")
                                for p in await res.list(rtype, mesh)]}
        zone = getattr(ctx.settings, "datacenter", None) or "default"  # the KRIs' zone, as GET /zones names it
        return JSONResponse(policies_list(section, mesh, name, zone))

    async def mesh_metrics(request: Request) -> Response:
        from ._meshstats import MESH_STATS

        mesh = request.path_params["mesh"]
        if await res.get("Mesh", mesh, mesh) is None:
            return _not_found("Mesh", mesh)
        peers = await asyncio.to_thread(MESH_STATS.peers)
        return Response(MESH_STATS.view(mesh, peers), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/meshes", list_meshes, methods=["GET"]),
        Route("/meshes/{mesh}/metrics", mesh_metrics, methods=["GET"]),
        Route("/dataplanes", list_all_dataplanes, methods=["GET"]),
        Route("/meshes/{mesh}", mesh_one, methods=["GET", "PUT", "DELETE"]),
        Route("/meshes/{mesh}/dataplanes", list_dataplanes, methods=["GET"]),
        Route("/meshes/{mesh}/dataplanes/{name}", dataplane_one, methods=["GET", "PUT", "DELETE"]),
        Route("/meshes/{mesh}/dataplanes/{name}/_policies", dataplane_policies, methods=["GET"]),
        *policy_routes("MeshTrafficPermission", "meshtrafficpermissions"),
        *policy_routes("TrafficPermission", "traffic-permissions"),  # Kuma's legacy one, its path
        Route("/meshes/{mesh}/dataplanes+insights", overviews, methods=["GET"]),
        Route("/meshes/{mesh}/dataplanes+insights/{name}", overview, methods=["GET"]),
        Route("/meshes/{mesh}/service-insights", service_insights, methods=["GET"]),
        Route("/meshes/{mesh}/service-insights/{name}", service_insights, methods=["GET"]),
    ]
    from ._tokens import token_routes

    return routes + token_routes(ctx)
