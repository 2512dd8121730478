"""Entity endpoints generated from the declarations, as Kong's `kong/api/endpoints.lua` does.

For each entity E (admin path `/es`):
- `/es` GET (page) POST (create); `/es/{id|endpoint_key}` GET PUT PATCH DELETE.
- for each reference `E.f -> P`: `/ps/{p}/es` (E's nested path, e.g. `/consumers/{c}/key-auth`)
  with the same methods, scoped to that parent; and `/es/{e}/f` GET/PATCH the referenced entity.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.admin._context import AdminContext
from meshway.admin._http import JSONResponse, read_body
from meshway.model import ENTITIES, Entity, NotFound

Scope = tuple[str, Entity] | None  # (foreign field of E, parent entity) for nested endpoints


def entity_routes(ctx: AdminContext) -> list[Route]:
    routes: list[Route] = []
    for entity in ENTITIES.values():
        if not entity.admin_api:
            continue
        routes += _collection(ctx, entity, f"/{entity.admin_path}", None)
        for fname, field in entity.foreign_fields.items():
            parent = ENTITIES[field.reference]
            nested = entity.nested_path or entity.admin_path
            routes += _collection(ctx, entity, f"/{parent.admin_path}/{{parent_key}}/{nested}", (fname, parent))
            routes.append(_foreign_route(ctx, entity, fname, parent))
    return routes


def collection_handler(ctx: AdminContext, name: str) -> Any:
    """The generic top-level collection handler of entity `name`, for a route that answers some
    requests itself and leaves the others to it (`GET /consumer_groups` without `?counter`)."""
    return _Handlers(ctx, ENTITIES[name], None).collection


def _collection(ctx: AdminContext, entity: Entity, base: str, scope: Scope) -> list[Route]:
    handlers = _Handlers(ctx, entity, scope)
    return [
        Route(base, handlers.collection, methods=["GET", "POST"]),
        Route(base + "/{key}", handlers.item, methods=["GET", "PUT", "PATCH", "DELETE"]),
    ]


class _Handlers:
    """The handlers of one (entity, parent scope) pair."""

    def __init__(self, ctx: AdminContext, entity: Entity, scope: Scope) -> None:
        self.ctx, self.entity, self.scope = ctx, entity, scope

    async def _parent(self, request: Request) -> tuple[str, str] | None:
        if self.scope is None:
            return None
        fname, parent = self.scope
        found = await self.ctx.call(self.ctx.reader().get, parent.name, request.path_params["parent_key"])
        return fname, found["id"]

    async def collection(self, request: Request) -> Response:
        parent = await self._parent(request)
        if request.method == "POST":
            store = self.ctx.writer("POST", self.entity.name)
            body = await read_body(request, self.entity)
            row = await self.ctx.call(store.insert, self.entity.name, body, parent=parent)
            return JSONResponse(await self._shown(row), status_code=201)
        return await self._page(request, parent)

    async def _page(self, request: Request, parent: tuple[str, str] | None) -> Response:
        q = request.query_params
        rows, offset = await self.ctx.call(self.ctx.reader().list, self.entity.name, size=q.get("size"),
                                           offset=q.get("offset"), tags=q.get("tags"), parent=parent)
        body: dict[str, Any] = {"data": [await self._shown(r) for r in rows], "next": None}
        if offset:
            args = {k: v for k, v in q.items() if k != "offset"}
            body["next"] = f"{request.url.path}?{urlencode({**args, 'offset': offset})}"
            body["offset"] = offset
        return JSONResponse(body)

    async def item(self, request: Request) -> Response:
        parent = await self._parent(request)
        key = request.path_params["key"]
        if request.method == "GET":
            return JSONResponse(await self._shown(await self.ctx.call(self.ctx.reader().get, self.entity.name, key, parent=parent)))
        store = self.ctx.writer(request.method, self.entity.name)
        if request.method == "DELETE":
            await self.ctx.call(store.delete, self.entity.name, key, parent=parent)
            return Response(status_code=204)
        body = await read_body(request, self.entity)
        method = store.update if request.method == "PATCH" else store.upsert
        return JSONResponse(await self._shown(await self.ctx.call(method, self.entity.name, key, body, parent=parent)))

    async def _shown(self, row: dict) -> dict:
        """The entity as the API shows it: with its companion lists (a certificate's `snis`)."""
        if not self.entity.companions:
            return row
        return await self.ctx.call(with_companions, self.ctx.reader(), self.entity, row)


def with_companions(reader: Any, entity: Entity, row: dict) -> dict:
    out = dict(row)
    for field, comp in entity.companions.items():
        children, _ = reader.list(comp.collection, size=1000, parent=(comp.parent_field, row["id"]))
        out[field] = sorted(c[comp.key] for c in children)
    return out


def _foreign_route(ctx: AdminContext, entity: Entity, fname: str, parent: Entity) -> Route:
    async def handler(request: Request) -> Response:
        own = await ctx.call(ctx.reader().get, entity.name, request.path_params["key"])
        ref = own.get(fname)
        if not ref:
            raise NotFound()
        if request.method == "GET":
            return JSONResponse(await ctx.call(ctx.reader().get, parent.name, ref["id"]))
        store = ctx.writer("PATCH", parent.name)
        body = await read_body(request, parent)
        return JSONResponse(await ctx.call(store.update, parent.name, ref["id"], body))

    return Route(f"/{entity.admin_path}/{{key}}/{fname}", handler, methods=["GET", "PATCH"])
