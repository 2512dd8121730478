"""`GET /tags` and `GET /tags/{tag}`: every tagged entity, as Kong lists them."""
from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshway.admin._context import AdminContext
from meshway.admin._http import JSONResponse
from meshway.model import ENTITIES, InvalidOffset
from meshway.store import parse_size


def tag_routes(ctx: AdminContext) -> list[Route]:
    async def handler(request: Request) -> Response:
        rows = await ctx.call(_tag_rows, ctx, request.path_params.get("tag"))
        return JSONResponse(_page(request, rows))

    return [Route("/tags", handler, methods=["GET"]), Route("/tags/{tag}", handler, methods=["GET"])]


def _tag_rows(ctx: AdminContext, only: str | None) -> list[dict[str, Any]]:
    snapshot = ctx.snapshot()
    rows = [{"entity_name": name, "entity_id": e["id"], "tag": tag}
            for name in ENTITIES for e in snapshot.get(name, []) for tag in e.get("tags") or ()
            if only is None or tag == only]
    return sorted(rows, key=lambda r: (r["tag"], r["entity_name"], r["entity_id"]))


def _page(request: Request, rows: list[dict]) -> dict[str, Any]:
    q = request.query_params
    size, start = parse_size(q.get("size")), _decode(q.get("offset"))
    page = rows[start:start + size]
    body: dict[str, Any] = {"data": page, "next": None}
    if start + size < len(rows):
        token = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        args = {k: v for k, v in q.items() if k != "offset"}
        body.update(offset=token, next=f"{request.url.path}?{urlencode({**args, 'offset': token})}")
    return body


def _decode(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.b64decode(token, altchars=b"-_", validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidOffset(f"'{token}' is not a valid offset: bad base64 encoding") from None
