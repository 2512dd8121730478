"""Consumer group memberships, with Kong Enterprise's endpoints and answers (kong/api/routes/consumer_groups.lua).

`consumer_group_consumers` has no generated Admin API (as in Kong); memberships are read and written through:
- `/consumer_groups` GET with `?counter=true`: the page of groups, each with `consumers_count` (without
  `counter` the generic page answers);
- `/consumer_groups/{g}` GET: `{consumer_group, consumers, plugins}` (`?list_consumers=false` leaves consumers out;
  `?counter=true` adds `consumers_count` to the group, as the list does);
- `/consumer_groups/{g}/consumers` GET (a page of consumers), POST `{"consumer": name|id|[...]}` (201, all or
  none: 404 for an unknown consumer, 409 for one already a member), DELETE (every membership of the group);
- `/consumer_groups/{g}/consumers/{c}` GET `{consumer}`, DELETE;
- `/consumers/{c}/consumer_groups` GET (a page of groups, each with `consumers_count`, as Kong), POST `{"group": name|id|[...]}`, DELETE;
- `/consumers/{c}/consumer_groups/{g}` GET `{consumer_group}`, DELETE.
Writes are one transaction each (Store.insert_all / delete_ids): a list is added whole or not at all.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.admin._context import AdminContext
from meshway.admin._crud import collection_handler
from meshway.admin._http import JSONResponse, read_body
from meshway.model import EntityError
from meshway.store._query import paginate

MEMBERS = "consumer_group_consumers"


class _Missing(EntityError):
    """404 with Kong's message naming what is missing (`Group 'x' not found`)."""

    status = 404

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class _Conflict(_Missing):
    status = 409


class _BadRequest(_Missing):
    status = 400


def consumer_group_routes(ctx: AdminContext) -> list[Route]:
    h = _Handlers(ctx)
    return [
        Route("/consumer_groups", h.groups, methods=["GET"]),  # POST: the generic collection
        Route("/consumer_groups/{group}", h.group, methods=["GET"]),
        Route("/consumer_groups/{group}/consumers", h.group_consumers, methods=["GET", "POST", "DELETE"]),
        Route("/consumer_groups/{group}/consumers/{consumer}", h.membership, methods=["GET", "DELETE"]),
        Route("/consumers/{consumer}/consumer_groups", h.consumer_groups, methods=["GET", "POST", "DELETE"]),
        Route("/consumers/{consumer}/consumer_groups/{group}", h.membership, methods=["GET", "DELETE"]),
    ]


class _Handlers:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.plain_page = collection_handler(ctx, "consumer_groups")

    async def _counts(self) -> dict[str, int]:
        """group id -> its number of consumers, from one pass over the memberships."""
        counts: dict[str, int] = {}
        for m in await self._all(MEMBERS, None):
            gid = m["consumer_group"]["id"]
            counts[gid] = counts.get(gid, 0) + 1
        return counts

    async def groups(self, request: Request) -> Response:
        """Kong Enterprise's `GET /consumer_groups?counter=true`: each group with `consumers_count`
        (Kong adds it for any value of `counter`; so do we, except `false`)."""
        if not _counter(request):
            return await self.plain_page(request)
        q = request.query_params
        rows, offset = await self.ctx.call(self.ctx.reader().list, "consumer_groups", size=q.get("size"),
                                           offset=q.get("offset"), tags=q.get("tags"))
        counts = await self._counts()
        data = [{**g, "consumers_count": counts.get(g["id"], 0)} for g in rows]
        return JSONResponse(_page_body(request, data, offset))

    async def _find(self, collection: str, key: str) -> dict:
        found = await self.ctx.call(self.ctx.reader().find, collection, key)
        if found is None:
            label = "Group" if collection == "consumer_groups" else "Consumer"
            raise _Missing(f"{label} '{key}' not found")
        return found

    async def _members(self, field: str, own_id: str) -> list[dict]:
        """Every membership row whose `field` (consumer_group or consumer) is `own_id`."""
        return await self._all(MEMBERS, (field, own_id))

    async def _all(self, collection: str, parent: tuple[str, str] | None) -> list[dict]:
        rows, offset = [], None
        for _ in range(10_000):  # bounded: 10 million rows
            page, offset = await self.ctx.call(self.ctx.reader().list, collection, size=1000, offset=offset, parent=parent)
            rows += page
            if not offset:
                break
        return rows

    async def group(self, request: Request) -> Response:
        group = await self._find("consumer_groups", request.path_params["group"])
        plugins = await self._all("plugins", ("consumer_group", group["id"]))
        members = await self._members("consumer_group", group["id"])
        if _counter(request):
            group = {**group, "consumers_count": len(members)}
        body: dict[str, Any] = {"consumer_group": group, "plugins": plugins}
        if request.query_params.get("list_consumers", "true") == "true":
            body["consumers"] = [await self._find("consumers", m["consumer"]["id"]) for m in members]
        return JSONResponse(body)

    async def group_consumers(self, request: Request) -> Response:
        group = await self._find("consumer_groups", request.path_params["group"])
        return await self._side(request, group, "consumer_group", "consumers", "consumer")

    async def consumer_groups(self, request: Request) -> Response:
        consumer = await self._find("consumers", request.path_params["consumer"])
        return await self._side(request, consumer, "consumer", "consumer_groups", "group")

    async def _side(self, request: Request, own: dict, own_field: str, other: str, arg: str) -> Response:
        """One side of the membership: `own` is the group (listing consumers) or the consumer (listing groups)."""
        other_field = "consumer" if own_field == "consumer_group" else "consumer_group"
        members = await self._members(own_field, own["id"])
        if request.method == "GET":
            rows = [await self._find(other, m[other_field]["id"]) for m in members]
            if other == "consumer_groups":  # Kong counts each group's consumers on this listing
                counts = await self._counts()
                rows = [{**g, "consumers_count": counts.get(g["id"], 0)} for g in rows]
            return await self._page(request, rows)
        store = self.ctx.writer(request.method, MEMBERS)
        if request.method == "DELETE":
            if not members:
                raise _Missing(f"Group '{own['id']}' has no consumers" if own_field == "consumer_group"
                               else f"Consumer '{own['id']}' not in group")
            await self.ctx.call(store.delete_ids, MEMBERS, [m["id"] for m in members])
            return Response(status_code=204)
        body = await read_body(request)
        wanted = body.get(arg) if isinstance(body, dict) else None
        if not wanted:
            raise _BadRequest(f"must provide {arg}")
        keys = [wanted] if isinstance(wanted, str) else wanted
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise _BadRequest(f"{arg} must be a string or an array of strings")
        current = {m[other_field]["id"] for m in members}
        found = []
        for key in dict.fromkeys(keys):
            entity = await self._find(other, key)
            if entity["id"] in current:  # Kong's message, from either side
                by_group = own_field == "consumer_group"
                consumer, group = (key, own["id"]) if by_group else (request.path_params["consumer"], key)
                raise _Conflict(f"Consumer '{consumer}' already in group '{group}'")
            found.append(entity)
        await self.ctx.call(store.insert_all, MEMBERS,
                            [{own_field: {"id": own["id"]}, other_field: {"id": e["id"]}} for e in found])
        singular = "consumer_group" if own_field == "consumer_group" else "consumer"
        return JSONResponse({singular: own, other: found}, status_code=201)

    async def _page(self, request: Request, rows: list[dict]) -> Response:
        q = request.query_params
        rows.sort(key=lambda r: r["id"])
        page, offset = paginate(rows, size=q.get("size"), offset=q.get("offset"), tags=q.get("tags"))
        return JSONResponse(_page_body(request, page, offset))

    async def membership(self, request: Request) -> Response:
        group = await self._find("consumer_groups", request.path_params["group"])
        consumer = await self._find("consumers", request.path_params["consumer"])
        found = [m for m in await self._members("consumer_group", group["id"]) if m["consumer"]["id"] == consumer["id"]]
        if not found:
            raise _Missing(f"Consumer '{request.path_params['consumer']}' not found in Group '{request.path_params['group']}'")
        if request.method == "GET":
            by_group = request.url.path.startswith("/consumer_groups/")
            return JSONResponse({"consumer": consumer} if by_group else {"consumer_group": group})
        store = self.ctx.writer("DELETE", MEMBERS)
        await self.ctx.call(store.delete_ids, MEMBERS, [found[0]["id"]])
        return Response(status_code=204)


def _counter(request: Request) -> bool:
    value = request.query_params.get("counter")
    return value is not None and value.lower() != "false"


def _page_body(request: Request, data: list[dict], offset: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data, "next": None}
    if offset:
        args = {k: v for k, v in request.query_params.items() if k != "offset"}
        body["next"] = f"{request.url.path}?{urlencode({**args, 'offset': offset})}"
        body["offset"] = offset
    return body


__all__ = ["consumer_group_routes"]
